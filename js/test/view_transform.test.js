// Unit tests of js/view_transform.js (node --test): where image pixels land on the canvas.
import { test } from "node:test";
import assert from "node:assert/strict";
import { canvasHeight, fitTransform, pixelAt, scaleBar, toData, toScreen, wheelFactor, zoomAt }
  from "../view_transform.js";

const close = (a, b, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol, `${a} is not within ${tol} of ${b}`);

test("canvasHeight follows the image's aspect, at most twice the width, at least 16 px", () => {
  assert.equal(canvasHeight(300, 100, 200), 150);
  assert.equal(canvasHeight(300, 400, 100), 600); // 4:1 tall image capped at 2:1
  assert.equal(canvasHeight(300, 1, 1000), 16);
  assert.equal(canvasHeight(300, 0, 0), 300); // no image yet: square
});

test("fitTransform shows the whole image centred, as large as fits", () => {
  assert.deepEqual(fitTransform(300, 150, 100, 200), { s: 1.5, ox: 0, oy: 0 });
  // 50 x 50 image on a 400 x 100 canvas: height limits, 2 px per pixel, 150 px margins left and right
  assert.deepEqual(fitTransform(400, 100, 50, 50), { s: 2, ox: 150, oy: 0 });
  // 10 rows x 40 columns on 100 x 100: width limits, 2.5 px per pixel, image 25 px high, centred
  assert.deepEqual(fitTransform(100, 100, 10, 40), { s: 2.5, ox: 0, oy: 37.5 });
});

test("the first array axis runs down the canvas, pixel centres half a pixel in", () => {
  const t = { s: 4, ox: 10, oy: 20 };
  assert.deepEqual(toScreen(t, -0.5, -0.5), [10, 20]); // the image's top-left corner is (ox, oy)
  assert.deepEqual(toScreen(t, 0, 0), [12, 22]);
  assert.deepEqual(toScreen(t, 3, 0), [12, 34]); // x = row: moves Y only
  assert.deepEqual(toScreen(t, 0, 3), [24, 22]); // y = column: moves X only
});

test("toData undoes toScreen", () => {
  const t = { s: 2.7, ox: -13.2, oy: 41 };
  for (const [x, y] of [[0, 0], [3.25, -1], [127.9, 64.1]]) {
    const [X, Y] = toScreen(t, x, y);
    const [x2, y2] = toData(t, X, Y);
    close(x2, x);
    close(y2, y);
  }
});

test("zoomAt keeps the image point under the cursor where it was", () => {
  const t = { s: 2, ox: 5, oy: 7 };
  const X = 123, Y = 45;
  const before = toData(t, X, Y);
  for (const f of [1.2, 1 / 1.2, 3]) {
    const z = zoomAt(t, X, Y, f);
    close(z.s, 2 * f);
    const after = toData(z, X, Y);
    close(after[0], before[0]);
    close(after[1], before[1]);
  }
});

test("a wheel step away zooms in, towards zooms out, and the two cancel", () => {
  assert.ok(wheelFactor(-100) > 1);
  assert.ok(wheelFactor(100) < 1);
  close(wheelFactor(-1) * wheelFactor(1), 1);
});

test("pixelAt rounds to the nearest pixel and is null outside the image", () => {
  assert.deepEqual(pixelAt(2.4, 3.6, 5, 6), [2, 4]);
  assert.deepEqual(pixelAt(4.4, 5.4, 5, 6), [4, 5]);
  assert.equal(pixelAt(4.6, 0, 5, 6), null); // nearest row would be 5 of 0..4
  assert.equal(pixelAt(0, -0.6, 5, 6), null);
  assert.deepEqual(pixelAt(-0.4, 0, 5, 6), [0, 0]);
});

test("scaleBar: a nice length near a fifth of the visible width", () => {
  // 400 canvas px at 2 px per pixel show 200 pixels of 0.5 nm: 100 nm, a fifth is 20 nm = 80 canvas px
  assert.deepEqual(scaleBar(0.5, 2, 400), { length: 20, pixels: 80 });
  // 300 px at 1 px per pixel of 0.37 nm: 111 nm, a fifth 22.2 -> 20 nm, 20 / 0.37 pixels
  const bar = scaleBar(0.37, 1, 300);
  assert.equal(bar.length, 20);
  close(bar.pixels, 20 / 0.37);
  // zooming in shortens the length shown, never the bar below a fifth of it
  for (const s of [1, 3, 10, 40]) {
    const b = scaleBar(0.37, s, 300);
    const visible = (300 / s) * 0.37;
    assert.ok(b.length >= visible / 5 / 1.5 && b.length <= (visible / 5) * 1.5, `${b.length} for ${visible}`);
    close(b.pixels / s * 0.37, b.length); // the bar spans exactly `length` units
  }
});
