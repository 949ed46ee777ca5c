// Small DOM helpers shared by the parts of the image view.

/** A new `tag` element with attributes (`text` sets its text), appended to `parent` when given. */
export function el(tag, attrs = {}, parent = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}

/** A <select> of `options` with class `cls`, appended to `parent`. */
export function select(options, parent, cls) {
  const s = el("select", { class: cls }, parent);
  for (const o of options) el("option", { value: o, text: o }, s);
  return s;
}

/** Canvas coordinates of a pointer event on `canvas` (its CSS size may differ from its pixel size). */
export function canvasPoint(canvas, e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height)];
}
