// The toolbar above the image: colormap, scaling, contrast mode and limits, fit, PNG export, help.
import { fmt } from "../scaling.js";
import { el, select } from "./dom.js";

export const SCALES = ["linear", "log", "sqrt", "power"];
export const CONTRASTS = ["percentile", "absolute"];

/**
 * Build the toolbar (appended to `root`). `actions` are {fit, savePNG, toggleHelp}, called on the buttons.
 * Returns {sync}: bring the controls in line with the model (not the one being typed in).
 */
export function createToolbar(root, model, st, actions) {
  const bar = el("div", { class: "fw-toolbar" }, root);
  const cmapSel = select(Object.keys(model.get("luts")), bar, "fw-cmap");
  const scaleSel = select(SCALES, bar, "fw-scale");
  const modeSel = select(CONTRASTS, bar, "fw-contrast");
  const lowIn = el("input", { type: "number", step: "any", class: "fw-low", title: "low limit" }, bar);
  const highIn = el("input", { type: "number", step: "any", class: "fw-high", title: "high limit" }, bar);
  const fitBtn = el("button", { class: "fw-reset", title: "reset zoom (double-click)", text: "fit" }, bar);
  const pngBtn = el("button", { class: "fw-png", title: "save the view as PNG", text: "PNG" }, bar);
  const helpBtn = el("button", { class: "fw-help-button", title: "keyboard and mouse (?)", text: "?" }, bar);

  cmapSel.addEventListener("change", () => { model.set("colormap", cmapSel.value); model.save_changes(); });
  scaleSel.addEventListener("change", () => { model.set("scale", scaleSel.value); model.save_changes(); });
  modeSel.addEventListener("change", () => {
    // switching to absolute keeps the picture: the limits shown become vmin, vmax
    if (modeSel.value === "absolute") { model.set("vmin", st.lim[0]); model.set("vmax", st.lim[1]); }
    model.set("contrast", modeSel.value);
    model.save_changes();
  });

  function limitInput(which) {
    const v = parseFloat(which === 0 ? lowIn.value : highIn.value);
    if (!Number.isFinite(v)) return;
    if (model.get("contrast") === "absolute") {
      model.set(which === 0 ? "vmin" : "vmax", v);
    } else {
      const p = [...model.get("percentiles")];
      p[which] = Math.min(100, Math.max(0, v));
      model.set("percentiles", p);
    }
    model.save_changes();
  }
  lowIn.addEventListener("change", () => limitInput(0));
  highIn.addEventListener("change", () => limitInput(1));
  fitBtn.addEventListener("click", () => actions.fit());
  pngBtn.addEventListener("click", () => actions.savePNG());
  helpBtn.addEventListener("click", () => actions.toggleHelp());

  function sync() {
    cmapSel.value = model.get("colormap");
    scaleSel.value = model.get("scale");
    modeSel.value = model.get("contrast");
    const absolute = model.get("contrast") === "absolute";
    if (document.activeElement !== lowIn) lowIn.value = absolute ? fmt(st.lim[0]) : model.get("percentiles")[0];
    if (document.activeElement !== highIn) highIn.value = absolute ? fmt(st.lim[1]) : model.get("percentiles")[1];
    lowIn.title = absolute ? "vmin" : "low percentile";
    highIn.title = absolute ? "vmax" : "high percentile";
  }

  return { sync };
}
