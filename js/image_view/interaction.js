// What the mouse and keyboard do on the image view: drag overlays and their handles, pan, zoom, click to
// move, insert and remove polygon vertices, keymap moves, the cursor readout, the help keys. Overlays
// are edited in a local copy (st.ovs) while dragging and sent to Python throttled.
import { fmt } from "../scaling.js";
import { pixelAt, toData, wheelFactor, zoomAt } from "../view_transform.js";
import { clickMoveTo, dragTo, edgeHit, hitTest, insertVertex, isVertexHit, removeVertex, translate }
  from "../overlay_geometry.js";
import { canvasPoint } from "./dom.js";

const PAN_SLOP = 3; // canvas px a press may move and still count as a click

/**
 * Wire the pointer and keyboard handlers. `parts` are {root, canvas, readout, stage, help, schedule}.
 * Returns {pullOverlays, dispose}: take the model's overlays (keeping the one being dragged), and stop
 * the pending throttled send.
 */
export function createInteraction(model, st, { root, canvas, readout, stage, help, schedule }) {
  const here = (e) => canvasPoint(canvas, e);
  const find = (id) => st.ovs.find((o) => o.id === id);
  const hitAt = (x, y) => hitTest(st.ovs, model.get("selected"), x, y, st.s);

  function pullOverlays() {
    const incoming = model.get("overlays").map((o) => ({ ...o }));
    if (st.drag) {
      const mine = find(st.drag.id);
      st.ovs = incoming.map((o) => (mine && o.id === mine.id ? mine : o));
    } else {
      st.ovs = incoming;
    }
  }

  function send(final) {
    clearTimeout(st.sendTimer);
    st.sendTimer = null;
    st.lastSend = performance.now();
    model.set("overlays", st.ovs.map((o) => ({ ...o })));
    if (final) model.set("dragging", "");
    model.save_changes();
  }

  function sendThrottled() {
    const wait = model.get("throttle_ms") - (performance.now() - st.lastSend);
    if (wait <= 0) send(false);
    else if (!st.sendTimer) st.sendTimer = setTimeout(() => send(false), wait);
  }

  function replaceOverlay(ov) {
    st.ovs = st.ovs.map((o) => (o.id === ov.id ? ov : o));
  }

  /** Remove vertex `part` ('v<k>') of polygon `id` (never below three vertices); true if removed. */
  function dropVertex(id, part) {
    const ov = find(id);
    const out = ov && removeVertex(ov, Number(part.slice(1)));
    if (!out) return false;
    replaceOverlay(out);
    st.focused = null;
    model.set("selected", id);
    send(true);
    schedule();
    return true;
  }

  function showReadout(X, Y) {
    const [x, y] = toData(st, X, Y);
    const pixel = pixelAt(x, y, st.rows, st.cols);
    if (!pixel) { readout.textContent = ""; return; }
    const [i, j] = pixel;
    const v = st.data[i * st.cols + j];
    const names = model.get("axis_names");
    let text = `${names[0]},${names[1]} = ${i}, ${j}   value ${fmt(v)}`;
    const ps = model.get("pixel_size");
    if (ps) {
      const o = model.get("origin");
      text += `   (${fmt((x - o[0]) * ps)}, ${fmt((y - o[1]) * ps)}) ${model.get("units")}`;
    }
    readout.textContent = text;
  }

  canvas.addEventListener("pointerdown", (e) => {
    root.focus();
    const [X, Y] = here(e);
    const [x, y] = toData(st, X, Y);
    canvas.setPointerCapture(e.pointerId);
    const hit = hitAt(x, y);
    const onVertex = isVertexHit(st.ovs, hit);
    // alt-click or right-click on a polygon vertex removes it
    if (onVertex && (e.altKey || e.button === 2)) {
      dropVertex(hit.id, hit.part);
      return;
    }
    st.focused = onVertex && e.button === 0 ? hit : null;
    if (hit && e.button === 0) {
      st.drag = { id: hit.id, part: hit.part, x0: x, y0: y, orig: { ...find(hit.id) } };
      model.set("selected", hit.id);
      model.set("dragging", hit.id);
      model.save_changes();
    } else {
      st.pan = { X, Y, ox: st.ox, oy: st.oy, moved: false };
    }
    schedule();
  });

  canvas.addEventListener("pointermove", (e) => {
    const [X, Y] = here(e);
    showReadout(X, Y);
    if (st.drag) {
      const [x, y] = toData(st, X, Y);
      const d = st.drag;
      replaceOverlay(dragTo(d.orig, d.part, x, y, x - d.x0, y - d.y0));
      schedule();
      sendThrottled();
    } else if (st.pan) {
      const dX = X - st.pan.X, dY = Y - st.pan.Y;
      if (Math.abs(dX) + Math.abs(dY) > PAN_SLOP) st.pan.moved = true;
      if (st.pan.moved) { st.ox = st.pan.ox + dX; st.oy = st.pan.oy + dY; schedule(); }
    }
  });

  /** A click (no pan) moves the `click_moves` overlay (a point or rectangle) onto the pixel clicked. */
  function clickMove(e) {
    const ov = find(model.get("click_moves"));
    if (!ov) return;
    const pixel = pixelAt(...toData(st, ...here(e)), st.rows, st.cols);
    const moved = pixel && clickMoveTo(ov, ...pixel);
    if (!moved) return;
    replaceOverlay(moved);
    model.set("selected", ov.id);
    send(true);
  }

  function endPointer(e) {
    if (st.drag) {
      st.drag = null;
      send(true);
    } else if (st.pan && !st.pan.moved && e.type === "pointerup") {
      clickMove(e);
    }
    st.pan = null;
    schedule();
  }
  canvas.addEventListener("pointerup", endPointer);
  canvas.addEventListener("pointercancel", endPointer);
  canvas.addEventListener("pointerleave", () => { readout.textContent = ""; });

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [X, Y] = here(e);
    Object.assign(st, zoomAt(st, X, Y, wheelFactor(e.deltaY)));
    schedule();
  }, { passive: false });
  // double-click on a polygon edge inserts a vertex there; anywhere else it fits the image
  canvas.addEventListener("dblclick", (e) => {
    const [x, y] = toData(st, ...here(e));
    if (isVertexHit(st.ovs, hitAt(x, y))) return; // no coincident duplicate
    const edge = edgeHit(st.ovs, model.get("selected"), x, y, st.s);
    if (!edge) { stage.fit(); schedule(); return; }
    replaceOverlay(insertVertex(find(edge.id), edge.index, edge.x, edge.y));
    st.focused = { id: edge.id, part: `v${edge.index}` };
    model.set("selected", edge.id);
    send(true);
    schedule();
  });
  canvas.addEventListener("contextmenu", (e) => {
    // right-click is vertex removal on the canvas, not the notebook's context menu
    e.preventDefault();
    e.stopPropagation();
  });

  const forView = (e) => e.target === root || e.target === canvas; // not typing in the toolbar
  root.addEventListener("keydown", (e) => {
    if (!forView(e)) return;
    if ((e.key === "Delete" || e.key === "Backspace") && st.focused) {
      e.preventDefault();
      e.stopPropagation();
      dropVertex(st.focused.id, st.focused.part);
      return;
    }
    const keymap = model.get("keymap");
    const entry = keymap[e.key] || keymap[e.key.toLowerCase()];
    if (!entry) return;
    e.preventDefault();
    e.stopPropagation(); // keep JupyterLab's command-mode shortcuts (a, b, d, j, k...) away
    const id = entry[0] || model.get("selected");
    const ov = find(id);
    if (!ov || ov.editable === false) return;
    const step = e.shiftKey ? 5 : 1;
    replaceOverlay(translate(ov, entry[1] * step, entry[2] * step));
    model.set("selected", id);
    schedule();
    send(true);
  });
  root.addEventListener("keydown", (e) => {
    if (!forView(e)) return;
    if (e.key === "?" || (e.key === "Escape" && help.isOpen())) {
      e.preventDefault();
      e.stopPropagation(); // Esc would leave JupyterLab's edit mode, '?' nothing else should see
      help.toggle(e.key === "?" ? undefined : false);
    }
  });
  root.addEventListener("keyup", (e) => { if (e.target === root) e.stopPropagation(); });
  root.addEventListener("keypress", (e) => { if (e.target === root) e.stopPropagation(); });

  return {
    pullOverlays,
    dispose: () => clearTimeout(st.sendTimer),
  };
}
