// Unit tests of js/keymap_help.js (node --test): the '?' panel's lines from a keymap.
import { test } from "node:test";
import assert from "node:assert/strict";
import { helpLines } from "../keymap_help.js";

// ImageView.DEFAULT_KEYMAP: the arrows move the selected overlay (x = rows: up is dx = -1)
const ARROWS = { ArrowUp: ["", -1, 0], ArrowDown: ["", 1, 0], ArrowLeft: ["", 0, -1], ArrowRight: ["", 0, 1] };

test("arrows moving the selected shape read up, left, down, right", () => {
  const lines = helpLines(ARROWS, "");
  assert.deepEqual(lines[0], ["↑ ← ↓ →", "move the selected shape"]);
});

test("letters and arrows for one overlay are separate lines, letters first, in WASD order", () => {
  // given in a scrambled order on purpose
  const keymap = { d: ["selector", 0, 1], w: ["selector", -1, 0], ArrowDown: ["selector", 1, 0],
                   s: ["selector", 1, 0], a: ["selector", 0, -1], ArrowUp: ["selector", -1, 0] };
  const lines = helpLines(keymap, "");
  assert.deepEqual(lines[0], ["W A S D", "move the real-space selector"]);
  assert.deepEqual(lines[1], ["↑ ↓", "move the real-space selector"]);
});

test("other overlays are named by id; the gestures follow the keys, the help keys come last", () => {
  const lines = helpLines({ i: ["probe", -1, 0], ...ARROWS }, "");
  assert.deepEqual(lines[0], ["I", "move probe"]);
  assert.deepEqual(lines[1], ["↑ ← ↓ →", "move the selected shape"]);
  assert.deepEqual(lines[2], ["Shift + key", "move 5 pixels"]);
  assert.deepEqual(lines.at(-1), ["?  /  Esc", "show / hide this help"]);
});

test("the click line appears only when a click moves something", () => {
  const has = (lines) => lines.some(([keys]) => keys === "click");
  assert.equal(has(helpLines(ARROWS, "")), false);
  assert.equal(has(helpLines(ARROWS, "selector")), true);
});
