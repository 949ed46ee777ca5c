// The '?' help panel over the stage: the shortcuts of this view's keymap, as py4D-browser users look for them.
import { helpLines } from "../keymap_help.js";
import { el } from "./dom.js";

/** Build the (hidden) panel inside the stage `box`; returns {toggle(show), isOpen()}. */
export function createHelp(box, root, model) {
  const panel = el("div", { class: "fw-help" }, box);
  panel.style.display = "none";
  const isOpen = () => panel.style.display !== "none";

  /** Show (true), hide (false) or flip (no argument) the panel; `root.dataset.help` says which. */
  function toggle(show = !isOpen()) {
    panel.replaceChildren();
    if (show) {
      for (const [keys, what] of helpLines(model.get("keymap"), model.get("click_moves"))) {
        const row = el("div", {}, panel);
        el("b", { text: keys }, row);
        row.appendChild(document.createTextNode(what));
      }
    }
    panel.style.display = show ? "" : "none";
    root.dataset.help = show ? "open" : "";
  }

  return { toggle, isOpen };
}
