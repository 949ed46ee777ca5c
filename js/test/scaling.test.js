// Unit tests of js/scaling.js (node --test). Expected values are worked out by hand from the rules in
// fourd_widgets/widgets/colormaps.py, which the browser must reproduce.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  asFloat32, fmt, histogram, histogramValue, histogramX, limits, nearerLimit, niceLength, paintRGBA,
  percentile, roundHalfEven, scaleValue, sortedFinite,
} from "../scaling.js";

const close = (a, b, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} is not within ${tol} of ${b}`);
const range = (n) => Float32Array.from({ length: n }, (_, i) => i);

test("asFloat32 reads the synced bytes as row-major float32", () => {
  const bytes = new Float32Array([1, 2, 3, 4, 5, 6]).buffer;
  assert.deepEqual([...asFloat32(bytes, 2, 3)], [1, 2, 3, 4, 5, 6]);
  assert.equal(asFloat32(null, 0, 0).length, 0);
});

test("asFloat32 copies an unaligned view instead of failing", () => {
  const buffer = new ArrayBuffer(1 + 16);
  const view = new DataView(buffer, 1, 16);
  [1.5, -2, 3.25, 4].forEach((v, k) => view.setFloat32(4 * k, v, true));
  assert.deepEqual([...asFloat32(view, 2, 2)], [1.5, -2, 3.25, 4]);
});

test("asFloat32 refuses a byte count that does not match the shape", () => {
  assert.throws(() => asFloat32(new ArrayBuffer(12), 2, 2), /12 bytes, expected 16/);
});

test("sortedFinite drops NaN and infinities and sorts numerically", () => {
  const data = Float32Array.from([10, NaN, 9, Infinity, 100, -Infinity, -1]);
  assert.deepEqual([...sortedFinite(data)], [-1, 9, 10, 100]); // not "10" < "100" < "9"
});

test("roundHalfEven rounds halves to the even neighbour, like Python's round()", () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, -1.5, -2.5].map(roundHalfEven), [0, 2, 2, 4, -2, -2]);
  assert.deepEqual([2.4, 2.6, -2.6, 7].map(roundHalfEven), [2, 3, -3, 7]);
});

test("percentile is the nearest rank of the sorted values, clamped to 0..100", () => {
  const s = range(101); // value k at rank k: the p-th percentile is p itself
  assert.equal(percentile(s, 37), 37);
  assert.equal(percentile(s, 0), 0);
  assert.equal(percentile(s, 100), 100);
  assert.equal(percentile(s, -5), 0);
  assert.equal(percentile(s, 250), 100);
  assert.ok(Number.isNaN(percentile(new Float32Array(0), 50)));
});

test("percentile ranks at exactly one half round as numpy does (colormaps.percentile_limits)", () => {
  // Python: round(0.5 / 100 * 100) = round(0.5) = 0 and round(99.5) = 100; JS Math.round would give 1
  assert.equal(percentile(range(101), 0.5), 0);
  assert.equal(percentile(range(101), 99.5), 100);
  assert.equal(percentile(range(101), 2.5), 2);
  assert.equal(percentile(range(5), 37.5), 2); // rank 1.5 -> 2
  assert.equal(percentile(range(5), 62.5), 2); // rank 2.5 -> 2
});

test("limits: percentiles unless the contrast is absolute, then vmin and vmax where given", () => {
  const s = range(11).map((v) => v * 10); // 0, 10, ..., 100
  const base = { percentiles: [10, 90], vmin: -7, vmax: 700 };
  assert.deepEqual(limits(s, { ...base, contrast: "percentile" }), [10, 90]);
  assert.deepEqual(limits(s, { ...base, contrast: "absolute" }), [-7, 700]);
  assert.deepEqual(limits(s, { ...base, contrast: "absolute", vmax: null }), [-7, 90]);
  assert.deepEqual(limits(new Float32Array(0), { ...base, contrast: "absolute" }), [0, 1]);
});

test("scaleValue: linear maps [lo, hi] onto [0, 1] and clips outside", () => {
  assert.equal(scaleValue(2, 2, 6, "linear"), 0);
  assert.equal(scaleValue(6, 2, 6, "linear"), 1);
  assert.equal(scaleValue(3, 2, 6, "linear"), 0.25);
  assert.equal(scaleValue(-10, 2, 6, "linear"), 0);
  assert.equal(scaleValue(99, 2, 6, "linear"), 1);
  assert.ok(Number.isNaN(scaleValue(NaN, 2, 6, "linear")));
});

test("scaleValue: sqrt, power and log of the clipped fraction", () => {
  close(scaleValue(0.25, 0, 1, "sqrt"), 0.5);
  close(scaleValue(0.5, 0, 1, "power", 2), 0.25);
  close(scaleValue(0.5, 0, 1, "power", 0.5), Math.SQRT1_2);
  // log: log(1 + 1000 u) / log(1001); at u = 1/1000 that is log 2 / log 1001
  close(scaleValue(0.001, 0, 1, "log"), Math.LN2 / Math.log(1001));
  assert.equal(scaleValue(0, 0, 1, "log"), 0);
  close(scaleValue(1, 0, 1, "log"), 1);
  // log lifts the faint end: a tenth of the range is already two thirds of the colours
  assert.ok(scaleValue(0.1, 0, 1, "log") > 0.66 && scaleValue(0.1, 0, 1, "log") < 0.67);
});

test("scaleValue with equal limits splits at the limit instead of dividing by zero", () => {
  assert.equal(scaleValue(5, 5, 5, "linear"), 0);
  assert.equal(scaleValue(5.1, 5, 5, "linear"), 1);
  assert.equal(scaleValue(4, 5, 5, "sqrt"), 0);
});

test("paintRGBA looks colours up in the table, NaN transparent, index halves to even", () => {
  // table entry k is (k, 255 - k, 7), so the colour says which entry was used
  const lut = new Uint8Array(768);
  for (let k = 0; k < 256; k++) lut.set([k, 255 - k, 7], 3 * k);
  const out = new Uint8ClampedArray(5 * 4).fill(9);
  paintRGBA(Float32Array.from([0, 255, NaN, 2.5, 1000]), out, lut, 0, 255, "linear", 0.5);
  assert.deepEqual([...out.subarray(0, 4)], [0, 255, 7, 255]);
  assert.deepEqual([...out.subarray(4, 8)], [255, 0, 7, 255]);
  assert.equal(out[11], 0); // NaN: alpha 0
  assert.deepEqual([...out.subarray(12, 16)], [2, 253, 7, 255]); // 2.5 -> entry 2, as np.round
  assert.deepEqual([...out.subarray(16, 20)], [255, 0, 7, 255]); // above vmax: clipped to the top
});

test("histogram counts equal-width bins over [min, max], the maximum in the last bin", () => {
  const H = histogram(Float32Array.from([0, 0, 1, 2, 3, 4]), 4);
  assert.deepEqual([...H.counts], [2, 1, 1, 2]);
  assert.equal(H.lo, 0);
  assert.equal(H.hi, 4);
  const flat = histogram(Float32Array.from([5, 5, 5]), 3);
  assert.deepEqual([...flat.counts], [3, 0, 0]);
  const none = histogram(new Float32Array(0), 2);
  assert.deepEqual([[...none.counts], none.lo, none.hi], [[0, 0], 0, 1]);
});

test("histogram axis: value <-> canvas x, kept one pixel inside the canvas", () => {
  const H = { lo: 0, hi: 10 };
  assert.equal(histogramX(H, 5, 100), 50);
  assert.equal(histogramX(H, -3, 100), 1);
  assert.equal(histogramX(H, 20, 100), 99);
  assert.equal(histogramValue(H, 50, 100), 5);
  for (const v of [1.25, 3, 7.5]) close(histogramValue(H, histogramX(H, v, 200), 200), v);
});

test("nearerLimit grabs the closer contrast line, the low one on a tie", () => {
  const H = { lo: 0, hi: 10 };
  assert.equal(nearerLimit(H, 30, [2, 8], 100), 0);
  assert.equal(nearerLimit(H, 70, [2, 8], 100), 1);
  assert.equal(nearerLimit(H, 50, [2, 8], 100), 0);
});

test("niceLength picks 1, 2 or 5 times a power of ten near the length", () => {
  assert.equal(niceLength(1.2), 1);
  assert.equal(niceLength(2.9), 2);
  assert.equal(niceLength(3.6), 5);
  assert.equal(niceLength(8), 10);
  assert.equal(niceLength(12345), 10000);
  close(niceLength(0.07), 0.05);
  assert.equal(niceLength(0), 0);
  assert.equal(niceLength(-3), 0);
});

test("fmt: five significant digits, exponents for very large and very small", () => {
  assert.equal(fmt(1234.56789), "1234.6");
  assert.equal(fmt(0.5), "0.5");
  assert.equal(fmt(0), "0");
  assert.equal(fmt(123456), "1.235e+5");
  assert.equal(fmt(0.000123), "1.230e-4");
  assert.deepEqual([NaN, null, undefined, Infinity, -Infinity].map(fmt), ["NaN", "NaN", "NaN", "inf", "-inf"]);
});
