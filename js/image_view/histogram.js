// The histogram under the image: log-scaled counts of the finite values with the contrast limits as red
// lines. Dragging near a line moves that limit; the contrast becomes absolute.
import { histogram, histogramValue, histogramX, nearerLimit } from "../scaling.js";
import { canvasPoint, el } from "./dom.js";

const BINS = 128;
const NO_HISTOGRAM = { lo: 0, hi: 1 };

/** Build the histogram canvas (appended to `root`); returns {canvas, resize, paint}. */
export function createHistogram(root, model, st, schedule) {
  const canvas = el("canvas", { class: "fw-hist", height: "46" }, root);
  let H = null; // the histogram last painted: what a drag maps back to values
  let dragging = null; // 0 or 1 while a limit line is dragged

  function paint() {
    const c = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    c.clearRect(0, 0, w, h);
    c.fillStyle = "#f3f3f3"; c.fillRect(0, 0, w, h);
    H = histogram(st.sorted, BINS);
    let peak = 0;
    for (const v of H.counts) peak = Math.max(peak, Math.log1p(v));
    c.fillStyle = "#8a8a8a";
    const bw = w / H.counts.length;
    H.counts.forEach((v, i) => {
      const bh = peak > 0 ? (Math.log1p(v) / peak) * (h - 2) : 0;
      c.fillRect(i * bw, h - bh, Math.max(1, bw - 0.5), bh);
    });
    c.strokeStyle = "#d62728"; c.lineWidth = 2;
    for (const v of st.lim) {
      const X = histogramX(H, v, w);
      c.beginPath(); c.moveTo(X, 0); c.lineTo(X, h); c.stroke();
    }
  }

  function resize(width) {
    canvas.width = width;
  }

  canvas.addEventListener("pointerdown", (e) => {
    dragging = nearerLimit(H || NO_HISTOGRAM, canvasPoint(canvas, e)[0], st.lim, canvas.width);
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (dragging === null) return;
    const lim = [...st.lim];
    lim[dragging] = histogramValue(H || NO_HISTOGRAM, canvasPoint(canvas, e)[0], canvas.width);
    model.set("contrast", "absolute");
    model.set("vmin", Math.min(lim[0], lim[1]));
    model.set("vmax", Math.max(lim[0], lim[1]));
    schedule(true);
  });
  canvas.addEventListener("pointerup", () => {
    if (dragging !== null) { dragging = null; model.save_changes(); }
  });

  return { canvas, resize, paint };
}
