// The lines of the '?' help panel, from the view's keymap (pure: no DOM, unit-tested under node).

const ARROW_ORDER = ["-1,0", "0,-1", "1,0", "0,1"]; // up, left, down, right: W A S D, I J K L
const ARROWS = { ArrowUp: "↑", ArrowDown: "↓", ArrowLeft: "←", ArrowRight: "→" };

/**
 * [[keys, what they do]] for a keymap {key: [overlay id or "", dx, dy]}: the keys moving one overlay on
 * one line in up-left-down-right order (letters and arrows apart), then the mouse gestures; the click
 * line only when `clickMoves` names an overlay.
 */
export function helpLines(keymap, clickMoves) {
  const groups = new Map();
  for (const [key, [id, dx, dy]] of Object.entries(keymap)) {
    if (!groups.has(id)) groups.set(id, []);
    groups.get(id).push([key, ARROW_ORDER.indexOf(`${Math.sign(dx)},${Math.sign(dy)}`)]);
  }
  const name = (k) => ARROWS[k] || k.toUpperCase();
  const lines = [];
  for (const [id, keys] of groups) {
    const letters = keys.filter(([k]) => !k.startsWith("Arrow"));
    const arrows = keys.filter(([k]) => k.startsWith("Arrow"));
    const what = id ? `move ${id === "selector" ? "the real-space selector" : id}` : "move the selected shape";
    for (const set of [letters, arrows]) {
      if (set.length) lines.push([set.sort((a, b) => a[1] - b[1]).map(([k]) => name(k)).join(" "), what]);
    }
  }
  lines.push(["Shift + key", "move 5 pixels"]);
  lines.push(["drag", "a shape or its handles; the background pans"]);
  lines.push(["wheel / dbl-click", "zoom / fit the image"]);
  lines.push(["dbl-click edge", "insert a polygon vertex"]);
  lines.push(["Alt-click vertex", "remove it (or click it, then Delete)"]);
  if (clickMoves) lines.push(["click", "move the real-space selector there"]);
  lines.push(["?  /  Esc", "show / hide this help"]);
  return lines;
}
