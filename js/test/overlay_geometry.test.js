// Unit tests of js/overlay_geometry.js (node --test): hit testing, handles and editing of overlays.
// Coordinates in image pixels, x the first array axis; pixel (i, j) is centred on (i, j).
// At scale 10 (canvas px per image px) the pick tolerance is (HANDLE + 2) / 10 = 0.7 image px.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  HANDLE, MIN_VERTICES, clickMoveTo, dragTo, edgeHit, handles, hitTest, insertVertex, isVertexHit,
  latticePoints, removeVertex, translate,
} from "../overlay_geometry.js";

const SCALE = 10;
const TOL = (HANDLE + 2) / SCALE;
const circle = (id, x, y, r, extra = {}) => ({ id, kind: "circle", x, y, r, ...extra });
const annulus = { id: "ring", kind: "annulus", x: 20, y: 20, r_in: 3, r_out: 6 };
const rect = { id: "box", kind: "rectangle", x0: 2, x1: 6, y0: 3, y1: 8 }; // pixels 2..5 x 3..7
const triangle = { id: "tri", kind: "polygon", vertices: [[0, 0], [10, 0], [0, 10]] };
// an L: the square 0..10 without its 4..10 x 4..10 corner
const ell = { id: "L", kind: "polygon", vertices: [[0, 0], [10, 0], [10, 4], [4, 4], [4, 10], [0, 10]] };
const square = { id: "sq", kind: "polygon", vertices: [[0, 0], [0, 10], [10, 10], [10, 0]] };
const hit = (ovs, x, y, selected = "") => hitTest(ovs, selected, x, y, SCALE);

test("the pick tolerance is 0.7 image px at scale 10", () => {
  assert.ok(Math.abs(TOL - 0.7) < 1e-12);
});

test("circle: inside moves it, the radius handle resizes it, outside misses", () => {
  const c = circle("c", 10, 10, 5);
  assert.deepEqual(hit([c], 10, 13), { id: "c", part: "move" });
  assert.deepEqual(hit([c], 12.9, 6.2), { id: "c", part: "move" }); // distance 4.3
  assert.deepEqual(hit([c], 10.3, 15.5), { id: "c", part: "r" }); // the handle sits at (x, y + r)
  assert.equal(hit([c], 17, 10), null);
  assert.equal(hit([c], 13.6, 13.6), null); // distance 5.09: just outside, no handle there
});

test("annulus: the ring moves it, the hole lets clicks through, each radius has a handle", () => {
  assert.deepEqual(hit([annulus], 20, 24.5), { id: "ring", part: "move" });
  assert.deepEqual(hit([annulus], 24, 20), { id: "ring", part: "move" });
  assert.equal(hit([annulus], 20, 20), null);
  assert.equal(hit([annulus], 21, 21), null); // distance 1.4, well inside the 3 px hole
  assert.deepEqual(hit([annulus], 20, 26), { id: "ring", part: "r_out" });
  assert.deepEqual(hit([annulus], 20, 17), { id: "ring", part: "r_in" });
});

test("rectangle: the body spans its pixels' outer edges, corners are handles", () => {
  assert.deepEqual(hit([rect], 4, 5), { id: "box", part: "move" });
  assert.deepEqual(hit([rect], 5.4, 3.5), { id: "box", part: "move" }); // inside pixel (5, 3)
  assert.equal(hit([rect], 7, 5), null);
  assert.equal(hit([rect], 4, 1.5), null);
  const corners = Object.fromEntries(handles(rect).map((h) => [h.part, [h.x, h.y]]));
  assert.deepEqual(corners, { c00: [1.5, 2.5], c01: [1.5, 7.5], c10: [5.5, 2.5], c11: [5.5, 7.5] });
  assert.deepEqual(hit([rect], 5.6, 7.4), { id: "box", part: "c11" });
  assert.deepEqual(hit([rect], 1.2, 2.8), { id: "box", part: "c00" });
});

test("polygon: inside by ray casting, concave notch outside, vertices are handles", () => {
  assert.deepEqual(hit([triangle], 2, 2), { id: "tri", part: "move" });
  assert.equal(hit([triangle], 6, 6), null); // x + y > 10: beyond the hypotenuse
  assert.deepEqual(hit([triangle], 10.2, -0.3), { id: "tri", part: "v1" });
  assert.deepEqual(hit([ell], 2, 8), { id: "L", part: "move" });
  assert.deepEqual(hit([ell], 8, 2), { id: "L", part: "move" });
  assert.equal(hit([ell], 8, 8), null); // the missing corner
  assert.equal(hit([ell], 5, 5), null);
  assert.deepEqual(hit([ell], 4, 4), { id: "L", part: "v3" }); // the inner corner vertex
});

test("point: picked within twice the tolerance of its centre", () => {
  const p = { id: "p", kind: "point", x: 3, y: 3 };
  assert.deepEqual(hit([p], 3 + 1.3, 3), { id: "p", part: "move" });
  assert.equal(hit([p], 3 + 1.5, 3), null);
});

test("the tolerance is in screen pixels: zoomed out, the same distance picks", () => {
  const c = circle("c", 10, 10, 5);
  // (10, 4) is 6 image px from the centre, 1 outside the rim: 10 screen px at scale 10, 1 at scale 1
  assert.equal(hitTest([c], "", 10, 4, 10), null);
  assert.deepEqual(hitTest([c], "", 10, 4, 1), { id: "c", part: "move" });
});

test("overlapping shapes: the selected one first, else the one drawn last", () => {
  const a = circle("a", 10, 10, 5), b = circle("b", 11, 11, 5);
  assert.equal(hit([a, b], 10.5, 10.5).id, "b");
  assert.equal(hit([a, b], 10.5, 10.5, "a").id, "a");
  assert.equal(hit([b, a], 10.5, 10.5).id, "a");
});

test("a handle wins over another shape's body, even the selected one's", () => {
  const a = circle("a", 10, 10, 3); // r handle at (10, 13)
  const b = circle("b", 10, 14, 4); // (10, 13) is inside b
  assert.deepEqual(hit([a, b], 10, 13, "b"), { id: "a", part: "r" });
});

test("shapes that are not editable cannot be picked", () => {
  assert.equal(hit([circle("c", 10, 10, 5, { editable: false })], 10, 10), null);
});

test("edgeHit finds the polygon edge near the cursor and where the new vertex goes", () => {
  assert.deepEqual(edgeHit([square], "", 0.3, 5, SCALE), { id: "sq", index: 1, x: 0, y: 5 });
  assert.deepEqual(edgeHit([square], "", 9.6, 2.5, SCALE), { id: "sq", index: 3, x: 10, y: 2.5 });
  // the closing edge, from the last vertex back to the first
  assert.deepEqual(edgeHit([square], "", 5, 0.2, SCALE), { id: "sq", index: 4, x: 5, y: 0 });
  assert.equal(edgeHit([square], "", 5, 5, SCALE), null);
  assert.equal(edgeHit([square], "", 0.3, 12, SCALE), null); // past the end of the edge
  assert.equal(edgeHit([{ ...square, editable: false }], "", 0.3, 5, SCALE), null);
});

test("insertVertex and removeVertex return new polygons and keep at least three vertices", () => {
  const five = insertVertex(square, 1, 0, 5);
  assert.deepEqual(five.vertices, [[0, 0], [0, 5], [0, 10], [10, 10], [10, 0]]);
  assert.equal(square.vertices.length, 4); // the original is untouched
  assert.deepEqual(removeVertex(five, 1).vertices, square.vertices);
  assert.deepEqual(removeVertex(square, 0).vertices, [[0, 10], [10, 10], [10, 0]]);
  assert.equal(MIN_VERTICES, 3);
  assert.equal(removeVertex(triangle, 0), null);
  assert.equal(removeVertex(rect, 0), null);
});

test("translate moves every coordinate of a shape, to a hundredth of a pixel", () => {
  assert.deepEqual(translate(rect, 1, -2), { ...rect, x0: 3, x1: 7, y0: 1, y1: 6 });
  assert.deepEqual(translate(triangle, 0.5, 0.25).vertices, [[0.5, 0.25], [10.5, 0.25], [0.5, 10.25]]);
  const c = translate(circle("c", 1, 2, 3), 0.123, -0.456);
  assert.deepEqual([c.x, c.y, c.r], [1.12, 1.54, 3]);
});

test("dragTo: radii follow the cursor's distance, annulus radii cannot cross", () => {
  assert.equal(dragTo(circle("c", 10, 10, 5), "r", 13, 14, 0, 0).r, 5);
  assert.equal(dragTo(circle("c", 10, 10, 5), "r", 10, 12.5, 0, 0).r, 2.5);
  assert.equal(dragTo(annulus, "r_out", 20, 21, 0, 0).r_out, 3); // stops at r_in
  assert.equal(dragTo(annulus, "r_in", 20, 30, 0, 0).r_in, 6); // stops at r_out
  assert.equal(dragTo(annulus, "r_in", 20, 24, 0, 0).r_in, 4);
});

test("dragTo: rectangle corners snap to pixel edges and flip past each other", () => {
  // the stop edge is the first pixel edge past the cursor's pixel: x 7.2 is in pixel 7, edge 8
  assert.deepEqual(dragTo(rect, "c11", 7.2, 9.9, 0, 0), { ...rect, x1: 8, y1: 10 });
  // c00 dragged beyond the opposite edges: start and stop swap
  const flipped = dragTo(rect, "c00", 8.2, 0.1, 0, 0);
  assert.deepEqual([flipped.x0, flipped.x1, flipped.y0, flipped.y1], [6, 9, 1, 8]);
});

test("dragTo: polygon vertices, lattice vectors and whole-shape moves", () => {
  assert.deepEqual(dragTo(triangle, "v1", 3.456, 7.891, 0, 0).vertices, [[0, 0], [3.46, 7.89], [0, 10]]);
  const lat = { id: "lat", kind: "lattice", x: 5, y: 5, ax: 2, ay: 0, bx: 0, by: 2, r: 1 };
  const moved = dragTo(lat, "a", 8, 9, 0, 0);
  assert.deepEqual([moved.ax, moved.ay, moved.bx, moved.by], [3, 4, 0, 2]);
  assert.deepEqual(dragTo(rect, "move", 0, 0, 2, 1), translate(rect, 2, 1));
});

test("latticePoints: the sites inside the image; just the origin when a, b are parallel", () => {
  const lat = { kind: "lattice", x: 5, y: 5, ax: 2, ay: 0, bx: 0, by: 2, r: 1 };
  const pts = latticePoints(lat, 10, 10);
  const odd = [1, 3, 5, 7, 9];
  const expected = odd.flatMap((x) => odd.map((y) => `${x},${y}`)).sort();
  assert.deepEqual(pts.map(([x, y]) => `${x},${y}`).sort(), expected);
  assert.deepEqual(latticePoints({ ...lat, bx: 4, by: 0 }, 10, 10), [[5, 5]]);
});

test("isVertexHit: only vertices of polygons", () => {
  assert.equal(isVertexHit([triangle, rect], { id: "tri", part: "v2" }), true);
  assert.equal(isVertexHit([triangle, rect], { id: "tri", part: "move" }), false);
  assert.equal(isVertexHit([triangle, rect], { id: "box", part: "c00" }), false);
  assert.equal(isVertexHit([triangle, rect], null), false);
  assert.equal(isVertexHit([rect], { id: "tri", part: "v0" }), false); // no such overlay
});

test("clickMoveTo centres a point or rectangle on the pixel clicked", () => {
  const p = clickMoveTo({ id: "p", kind: "point", x: 3, y: 7 }, 10, 2);
  assert.deepEqual([p.x, p.y], [10, 2]);
  // a 3 x 3 rectangle over pixels 2..4 x 0..2 (centre (3, 1)) clicked at (8, 8): pixels 7..9 x 7..9
  const r = clickMoveTo({ id: "r", kind: "rectangle", x0: 2, x1: 5, y0: 0, y1: 3 }, 8, 8);
  assert.deepEqual([r.x0, r.x1, r.y0, r.y1], [7, 10, 7, 10]);
  assert.equal(clickMoveTo(circle("c", 1, 1, 2), 5, 5), null);
});
