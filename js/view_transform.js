// Where the image sits on the canvas: fit, zoom, screen <-> image coordinates, the scale bar's length
// (pure: no DOM, unit-tested under node).
// Image coordinates as in overlay_geometry.js: x = first array axis (screen rows), y = second (columns),
// pixel (i, j) centred at (i, j). A transform {s, ox, oy}: s canvas px per image px, (ox, oy) the canvas
// position of the image's top-left corner.
import { niceLength } from "./scaling.js";

/** Canvas height for a canvas `width` px wide showing rows x cols (tall images capped at twice the width). */
export function canvasHeight(width, rows, cols) {
  const aspect = cols > 0 ? rows / cols : 1;
  return Math.max(16, Math.round(width * Math.min(aspect, 2)));
}

/** The transform showing the whole image, centred, as large as the canvas allows. */
export function fitTransform(width, height, rows, cols) {
  const s = Math.min(width / cols, height / rows);
  return { s, ox: (width - cols * s) / 2, oy: (height - rows * s) / 2 };
}

/** Canvas [X, Y] of the image point (x, y). */
export function toScreen(t, x, y) {
  return [(y + 0.5) * t.s + t.ox, (x + 0.5) * t.s + t.oy];
}

/** Image point [x, y] under the canvas point (X, Y). */
export function toData(t, X, Y) {
  return [(Y - t.oy) / t.s - 0.5, (X - t.ox) / t.s - 0.5];
}

/** The transform zoomed by `factor` about the canvas point (X, Y), which stays over the same image point. */
export function zoomAt(t, X, Y, factor) {
  return { s: t.s * factor, ox: X - (X - t.ox) * factor, oy: Y - (Y - t.oy) * factor };
}

/** Zoom factor of one wheel step: in for a negative deltaY (wheel pushed away), out otherwise. */
export function wheelFactor(deltaY) {
  return deltaY < 0 ? 1.2 : 1 / 1.2;
}

/** The pixel [i, j] nearest the image point (x, y), or null outside a rows x cols image. */
export function pixelAt(x, y, rows, cols) {
  const i = Math.round(x) + 0, j = Math.round(y) + 0; // + 0: Math.round(-0.4) is -0
  return i >= 0 && j >= 0 && i < rows && j < cols ? [i, j] : null;
}

/**
 * The scale bar for a canvas `width` px wide at `s` canvas px per image px, one image px being `pixelSize`
 * units: a nice length (1, 2 or 5 times a power of ten) near a fifth of the visible width, and how many
 * canvas px it spans.
 */
export function scaleBar(pixelSize, s, width) {
  const length = niceLength(((width / s) * pixelSize) / 5);
  return { length, pixels: (length / pixelSize) * s };
}
