// Unit tests of decodeMarkers in js/markers.js (node --test): marker sets as synced by ImageView.set_markers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeMarkers } from "../markers.js";

const f32 = (values) => new Float32Array(values).buffer;

test("positions, sizes and values become float32 arrays", () => {
  const set = decodeMarkers({ id: "peaks", n: 2, xy: f32([1, 2, 3, 4]), sizes: f32([5, 6]), values: null,
                              vmin: null, vmax: null });
  assert.deepEqual([...set.xy], [1, 2, 3, 4]);
  assert.deepEqual([...set.sizes], [5, 6]);
  assert.equal(set.values, null);
  assert.equal(set.id, "peaks");
});

test("the colour range is the values' finite range unless vmin or vmax is given", () => {
  const base = { id: "v", n: 3, xy: f32([0, 0, 1, 1, 2, 2]), values: f32([7, NaN, -2]) };
  const auto = decodeMarkers({ ...base, vmin: null, vmax: null });
  assert.deepEqual([auto.lo, auto.hi], [-2, 7]);
  const fixed = decodeMarkers({ ...base, vmin: 0, vmax: null });
  assert.deepEqual([fixed.lo, fixed.hi], [0, 7]);
});

test("an unaligned buffer is copied, an empty set has no positions", () => {
  const buffer = new ArrayBuffer(2 + 8);
  const view = new DataView(buffer, 2, 8);
  view.setFloat32(0, 1.5, true);
  view.setFloat32(4, -2.5, true);
  assert.deepEqual([...decodeMarkers({ id: "u", n: 1, xy: view }).xy], [1.5, -2.5]);
  assert.equal(decodeMarkers({ id: "e", n: 0, xy: null }).xy.length, 0);
});

test("a count that does not match the positions is refused, naming the set", () => {
  assert.throws(() => decodeMarkers({ id: "bad", n: 3, xy: f32([1, 2, 3, 4]) }),
                /marker set bad: 2 positions for n = 3/);
});
