// Unit tests of the over/under-range logic in js/scaling.js: with absolute contrast, values beyond the
// limits are clipped to the colormap's ends, and the view must say how much is clipped.
import { test } from "node:test";
import assert from "node:assert/strict";
import { outOfRange, rangeBadge, sortedFinite } from "../scaling.js";

const sorted = (xs) => sortedFinite(Float32Array.from(xs));

test("outOfRange counts values strictly below lo and strictly above hi", () => {
  // 10 values 0..9, limits [2, 6]: 0 and 1 are under (2/10), 7, 8, 9 over (3/10); 2 and 6 are in range
  assert.deepEqual(outOfRange(sorted([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 2, 6), { under: 0.2, over: 0.3 });
});

test("outOfRange is zero when the limits hold every value", () => {
  assert.deepEqual(outOfRange(sorted([3, 3, 4]), 3, 4), { under: 0, over: 0 });
});

test("a flat image entirely above vmax is all over range (the 'flat yellow' case)", () => {
  assert.deepEqual(outOfRange(sorted([50, 50, 50, 50]), 0, 10), { under: 0, over: 1 });
});

test("NaNs are not counted, empty images and inverted limits give nothing", () => {
  assert.deepEqual(outOfRange(sorted([NaN, 1, 20]), 0, 10), { under: 0, over: 0.5 });
  assert.deepEqual(outOfRange(sorted([]), 0, 1), { under: 0, over: 0 });
  assert.deepEqual(outOfRange(sorted([1, 2]), 5, 1), { under: 0, over: 0 });
});

test("rangeBadge words the fractions, with a floor below one percent", () => {
  assert.equal(rangeBadge({ under: 0, over: 0 }), "");
  assert.equal(rangeBadge({ under: 0, over: 1 }), "▲ 100 % over range");
  assert.equal(rangeBadge({ under: 0.004, over: 0.25 }), "▲ 25 % over range · ▼ < 1 % under range");
});
