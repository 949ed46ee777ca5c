// The stage of the image view: the canvas with the coloured picture, markers, overlays and scale bar,
// the corner badge, and the colorbar under it. Zoom and pan change the transform kept in `st`
// (st.s, st.ox, st.oy); pointer handling is in interaction.js.
import { asFloat32, fmt, limits, paintRGBA, sortedFinite } from "../scaling.js";
import { canvasHeight, fitTransform, scaleBar, toScreen } from "../view_transform.js";
import { drawOverlays } from "../overlay_drawing.js";
import { drawMarkers } from "../markers.js";
import { el } from "./dom.js";

/**
 * Build the stage (appended to `root`) over the shared view state `st`. Returns
 * {box, canvas, loadImage, size, fit, paint}; `box` holds the canvas, the badge and (help.js) the help panel.
 */
export function createStage(root, model, st) {
  const box = el("div", { class: "fw-stage" }, root);
  const canvas = el("canvas", { class: "fw-canvas" }, box);
  const badge = el("div", { class: "fw-badge" }, box);
  const cbar = el("canvas", { class: "fw-colorbar", height: "14" }, root);
  const ctx = canvas.getContext("2d");
  const off = document.createElement("canvas"); // the picture at one canvas px per image px
  const offCtx = off.getContext("2d");
  const screen = (x, y) => toScreen(st, x, y);
  const lut = () => model.get("luts")[model.get("colormap")] || model.get("luts").gray;

  function loadImage() {
    const [rows, cols] = model.get("image_shape");
    const resized = rows !== st.rows || cols !== st.cols;
    st.rows = rows; st.cols = cols;
    st.data = asFloat32(model.get("image"), rows, cols);
    st.sorted = sortedFinite(st.data);
    if (resized) { st.fitted = false; size(); }
    st.dirtyPicture = true;
  }

  function size() {
    const width = model.get("size");
    canvas.width = width;
    canvas.height = canvasHeight(width, st.rows, st.cols);
    cbar.width = width;
    fit();
  }

  function fit() {
    if (!st.rows) return;
    Object.assign(st, fitTransform(canvas.width, canvas.height, st.rows, st.cols));
    st.fitted = true;
  }

  function repaintPicture() {
    st.lim = limits(st.sorted, { contrast: model.get("contrast"), percentiles: model.get("percentiles"),
                                 vmin: model.get("vmin"), vmax: model.get("vmax") });
    if (!st.rows) return;
    off.width = st.cols; off.height = st.rows;
    const img = offCtx.createImageData(st.cols, st.rows);
    paintRGBA(st.data, img.data, lut(), st.lim[0], st.lim[1], model.get("scale"), model.get("gamma"));
    offCtx.putImageData(img, 0, 0);
    st.dirtyPicture = false;
  }

  function drawScaleBar() {
    const ps = model.get("pixel_size");
    if (!ps || !st.rows) return;
    const bar = scaleBar(ps, st.s, canvas.width);
    const x = 10, y = canvas.height - 12;
    ctx.save();
    ctx.fillStyle = "rgba(0,0,0,0.5)";
    ctx.fillRect(x - 4, y - 16, Math.max(bar.pixels, 40) + 8, 24);
    ctx.fillStyle = "#fff";
    ctx.fillRect(x, y, bar.pixels, 4);
    ctx.font = "11px sans-serif";
    ctx.fillText(`${fmt(bar.length)} ${model.get("units")}`, x, y - 4);
    ctx.restore();
  }

  function drawColorbar() {
    const c = cbar.getContext("2d");
    const table = lut();
    const w = cbar.width, h = cbar.height;
    const img = c.createImageData(w, h);
    for (let i = 0; i < w; i++) {
      const k = 3 * Math.round((i / Math.max(1, w - 1)) * 255);
      for (let j = 0; j < h; j++) {
        const p = 4 * (j * w + i);
        img.data[p] = table[k]; img.data[p + 1] = table[k + 1]; img.data[p + 2] = table[k + 2]; img.data[p + 3] = 255;
      }
    }
    c.putImageData(img, 0, 0);
    c.font = "10px sans-serif";
    c.fillStyle = "#fff"; c.strokeStyle = "#000"; c.lineWidth = 2;
    const lo = fmt(st.lim[0]), hi = fmt(st.lim[1]);
    c.strokeText(lo, 2, 11); c.fillText(lo, 2, 11);
    const tw = c.measureText(hi).width;
    c.strokeText(hi, w - tw - 2, 11); c.fillText(hi, w - tw - 2, 11);
  }

  /** Repaint everything on the stage (the picture itself only when st.dirtyPicture). */
  function paint() {
    if (st.dirtyPicture) repaintPicture();
    if (!st.fitted) fit();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    if (st.rows) ctx.drawImage(off, st.ox, st.oy, st.cols * st.s, st.rows * st.s);
    // markers are data (peaks), drawn under the editable overlays so handles stay visible
    st.markersDrawn = drawMarkers(ctx, st.markers, screen, st.s, model.get("luts"));
    drawOverlays(ctx, st.ovs, model.get("selected"), screen, st.s, st.rows, st.cols, st.focused);
    drawScaleBar();
    drawColorbar();
    badge.textContent = model.get("badge");
    badge.style.display = model.get("badge") ? "" : "none";
  }

  return { box, canvas, loadImage, size, fit, paint };
}
