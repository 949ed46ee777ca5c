// Display scaling, contrast limits, histogram and the RGBA picture of a float image
// (pure: no DOM, unit-tested under node).
// Mirrors fourd_widgets/widgets/colormaps.py: same formulas, same nearest-rank percentiles.

export const LOG_STRETCH = 1000.0;

/** Wrap the synced bytes (DataView or ArrayBuffer) as a Float32Array (copying when unaligned). */
export function asFloat32(bytes, rows, cols) {
  const n = rows * cols;
  if (!bytes || n === 0) return new Float32Array(0);
  const buffer = bytes.buffer ? bytes.buffer : bytes;
  const offset = bytes.byteOffset || 0;
  const length = bytes.byteLength;
  if (length !== n * 4) throw new Error(`image has ${length} bytes, expected ${n * 4} for ${rows}x${cols} float32`);
  if (offset % 4 === 0) return new Float32Array(buffer, offset, n);
  return new Float32Array(buffer.slice(offset, offset + length));
}

/** Sorted copy of the finite values (for percentile limits and the histogram range). */
export function sortedFinite(data) {
  const out = new Float32Array(data.length);
  let k = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (Number.isFinite(v)) out[k++] = v;
  }
  return out.subarray(0, k).sort();
}

/**
 * Round to the nearest integer, halves to the even one, as Python's round() and numpy's np.round do in
 * colormaps.py (Math.round takes halves up: rank 0.5 would be 1 here and 0 there).
 */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Nearest-rank percentile of sorted values, as colormaps.percentile_limits. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const q = Math.min(100, Math.max(0, p));
  return sorted[roundHalfEven((q / 100) * (sorted.length - 1))];
}

/** Contrast limits [vmin, vmax] for the view's settings. */
export function limits(sorted, settings) {
  if (sorted.length === 0) return [0, 1];
  let lo = percentile(sorted, settings.percentiles[0]);
  let hi = percentile(sorted, settings.percentiles[1]);
  if (settings.contrast === "absolute") {
    if (settings.vmin !== null && settings.vmin !== undefined) lo = settings.vmin;
    if (settings.vmax !== null && settings.vmax !== undefined) hi = settings.vmax;
  }
  return [lo, hi];
}

/** Map one value to [0, 1] (NaN for NaN). */
export function scaleValue(v, lo, hi, scale, gamma) {
  if (Number.isNaN(v)) return NaN;
  const span = hi - lo;
  let u = span > 0 ? (v - lo) / span : (v > lo ? 1 : 0);
  u = u < 0 ? 0 : u > 1 ? 1 : u;
  if (scale === "sqrt") return Math.sqrt(u);
  if (scale === "power") return Math.pow(u, gamma);
  if (scale === "log") return Math.log1p(LOG_STRETCH * u) / Math.log1p(LOG_STRETCH);
  return u;
}

/** Fill an ImageData-sized Uint8ClampedArray with the coloured picture (NaN transparent). */
export function paintRGBA(data, out, lut, lo, hi, scale, gamma) {
  for (let i = 0, j = 0; i < data.length; i++, j += 4) {
    const s = scaleValue(data[i], lo, hi, scale, gamma);
    if (Number.isNaN(s)) { out[j + 3] = 0; continue; }
    const idx = 3 * roundHalfEven(s * 255);
    out[j] = lut[idx];
    out[j + 1] = lut[idx + 1];
    out[j + 2] = lut[idx + 2];
    out[j + 3] = 255;
  }
}

/** Histogram of the finite values in `bins` bins over [sorted[0], sorted[last]]. */
export function histogram(sorted, bins) {
  const counts = new Float64Array(bins);
  if (sorted.length === 0) return { counts, lo: 0, hi: 1 };
  const lo = sorted[0];
  const hi = sorted[sorted.length - 1];
  const w = hi > lo ? (hi - lo) / bins : 1;
  for (let i = 0; i < sorted.length; i++) {
    let b = Math.floor((sorted[i] - lo) / w);
    if (b >= bins) b = bins - 1;
    counts[b] += 1;
  }
  return { counts, lo, hi };
}

/** Canvas x of value `v` on a histogram `width` px wide over [H.lo, H.hi] (kept 1 px inside the edges). */
export function histogramX(H, v, width) {
  const span = H.hi - H.lo || 1;
  return Math.min(width - 1, Math.max(1, ((v - H.lo) / span) * width));
}

/** The value at canvas x `X` of a histogram `width` px wide over [H.lo, H.hi]. */
export function histogramValue(H, X, width) {
  return H.lo + (X / width) * (H.hi - H.lo);
}

/** Which contrast limit (0 = low, 1 = high) a press at canvas x `X` grabs: the nearer line, low on a tie. */
export function nearerLimit(H, X, lim, width) {
  return Math.abs(X - histogramX(H, lim[0], width)) <= Math.abs(X - histogramX(H, lim[1], width)) ? 0 : 1;
}

/** A "nice" length (1, 2 or 5 times a power of ten) close to `x`. */
export function niceLength(x) {
  if (!(x > 0)) return 0;
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  const m = x / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/** Short number formatting for readouts and labels. */
export function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
  return Number(v.toPrecision(5)).toString();
}
