// The image view: canvas, colormap/scaling/contrast in the browser, histogram, colorbar,
// zoom and pan, cursor readout, scale bar, PNG export and editable overlays.
import { asFloat32, fmt, histogram, limits, niceLength, paintRGBA, sortedFinite } from "./scaling.js";
import { dragTo, drawOverlays, edgeHit, hitTest, insertVertex, removeVertex, translate } from "./overlays.js";
import { decodeMarkers, drawMarkers } from "./markers.js";

const STYLE = `
.fw-view { font: 12px sans-serif; color: #222; display: inline-flex; flex-direction: column; gap: 3px; align-items: flex-start;
  outline: none; padding: 3px; border: 1px solid transparent; border-radius: 3px; }
.fw-view:focus { border-color: #7aa7d8; }
.fw-title { font-weight: bold; }
.fw-toolbar { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; }
.fw-toolbar select, .fw-toolbar input, .fw-toolbar button { font-size: 11px; padding: 0 2px; }
.fw-toolbar input { width: 58px; }
.fw-stage { position: relative; background: #333; cursor: crosshair; width: fit-content; }
.fw-stage canvas { display: block; }
.fw-help { position: absolute; left: 6px; top: 6px; right: 6px; padding: 6px 8px; border-radius: 4px;
  background: rgba(255, 255, 255, 0.95); color: #222; font-size: 11px; line-height: 1.45; z-index: 2; }
.fw-help b { display: inline-block; min-width: 86px; }
.fw-badge { position: absolute; top: 4px; right: 4px; padding: 1px 5px; border-radius: 3px; font-size: 11px;
  background: rgba(255, 170, 0, 0.9); color: #000; pointer-events: none; }
.fw-readout, .fw-status { font-family: monospace; font-size: 11px; min-height: 14px; white-space: pre; }
`;

function el(tag, attrs = {}, parent = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}

function select(options, parent, cls) {
  const s = el("select", { class: cls }, parent);
  for (const o of options) el("option", { value: o, text: o }, s);
  return s;
}

export function renderView({ model, el: host }) {
  if (!document.getElementById("fw-style")) {
    const st = document.createElement("style");
    st.id = "fw-style";
    st.textContent = STYLE;
    document.head.appendChild(st);
  }
  const root = el("div", { class: "fw-view", tabindex: "0" }, host);
  const title = el("div", { class: "fw-title" }, root);
  const bar = el("div", { class: "fw-toolbar" }, root);
  const cmapSel = select(Object.keys(model.get("luts")), bar, "fw-cmap");
  const scaleSel = select(["linear", "log", "sqrt", "power"], bar, "fw-scale");
  const modeSel = select(["percentile", "absolute"], bar, "fw-contrast");
  const lowIn = el("input", { type: "number", step: "any", class: "fw-low", title: "low limit" }, bar);
  const highIn = el("input", { type: "number", step: "any", class: "fw-high", title: "high limit" }, bar);
  const resetBtn = el("button", { class: "fw-reset", title: "reset zoom (double-click)", text: "fit" }, bar);
  const pngBtn = el("button", { class: "fw-png", title: "save the view as PNG", text: "PNG" }, bar);
  const helpBtn = el("button", { class: "fw-help-button", title: "keyboard and mouse (?)", text: "?" }, bar);
  const stage = el("div", { class: "fw-stage" }, root);
  const canvas = el("canvas", { class: "fw-canvas" }, stage);
  const badge = el("div", { class: "fw-badge" }, stage);
  const help = el("div", { class: "fw-help" }, stage);
  help.style.display = "none";
  const cbar = el("canvas", { class: "fw-colorbar", height: "14" }, root);
  const hist = el("canvas", { class: "fw-hist", height: "46" }, root);
  const readout = el("div", { class: "fw-readout" }, root);
  const status = el("div", { class: "fw-status" }, root);
  const ctx = canvas.getContext("2d");
  const off = document.createElement("canvas");
  const offCtx = off.getContext("2d");

  const st = {
    rows: 0, cols: 0, data: new Float32Array(0), sorted: new Float32Array(0), lim: [0, 1],
    s: 1, ox: 0, oy: 0, fitted: false, ovs: [], markers: [], markersDrawn: 0, drag: null, pan: null, renders: 0,
    lastSend: 0, sendTimer: null, dirtyPicture: true, frame: 0, focused: null,
  };

  const toScreen = (x, y) => [(y + 0.5) * st.s + st.ox, (x + 0.5) * st.s + st.oy];
  const toData = (X, Y) => [(Y - st.oy) / st.s - 0.5, (X - st.ox) / st.s - 0.5];

  function settings() {
    return { contrast: model.get("contrast"), percentiles: model.get("percentiles"),
             vmin: model.get("vmin"), vmax: model.get("vmax") };
  }

  function loadImage() {
    const [rows, cols] = model.get("image_shape");
    const resized = rows !== st.rows || cols !== st.cols;
    st.rows = rows; st.cols = cols;
    st.data = asFloat32(model.get("image"), rows, cols);
    st.sorted = sortedFinite(st.data);
    if (resized) { st.fitted = false; sizeCanvas(); }
    st.dirtyPicture = true;
  }

  function sizeCanvas() {
    const size = model.get("size");
    const aspect = st.cols > 0 ? st.rows / st.cols : 1;
    canvas.width = size;
    canvas.height = Math.max(16, Math.round(size * Math.min(aspect, 2)));
    cbar.width = size;
    hist.width = size;
    fit();
  }

  function fit() {
    if (!st.rows) return;
    st.s = Math.min(canvas.width / st.cols, canvas.height / st.rows);
    st.ox = (canvas.width - st.cols * st.s) / 2;
    st.oy = (canvas.height - st.rows * st.s) / 2;
    st.fitted = true;
  }

  function repaintPicture() {
    st.lim = limits(st.sorted, settings());
    if (!st.rows) return;
    off.width = st.cols; off.height = st.rows;
    const img = offCtx.createImageData(st.cols, st.rows);
    const lut = model.get("luts")[model.get("colormap")] || model.get("luts").gray;
    paintRGBA(st.data, img.data, lut, st.lim[0], st.lim[1], model.get("scale"), model.get("gamma"));
    offCtx.putImageData(img, 0, 0);
    st.dirtyPicture = false;
  }

  function drawScaleBar() {
    const ps = model.get("pixel_size");
    if (!ps || !st.rows) return;
    const visible = (canvas.width / st.s) * ps;
    const len = niceLength(visible / 5);
    const w = (len / ps) * st.s;
    const x = 10, y = canvas.height - 12;
    ctx.save();
    ctx.fillStyle = "rgba(0,0,0,0.5)";
    ctx.fillRect(x - 4, y - 16, Math.max(w, 40) + 8, 24);
    ctx.fillStyle = "#fff";
    ctx.fillRect(x, y, w, 4);
    ctx.font = "11px sans-serif";
    ctx.fillText(`${fmt(len)} ${model.get("units")}`, x, y - 4);
    ctx.restore();
  }

  function drawColorbar() {
    const c = cbar.getContext("2d");
    const lut = model.get("luts")[model.get("colormap")] || model.get("luts").gray;
    const w = cbar.width, h = cbar.height;
    const img = c.createImageData(w, h);
    for (let i = 0; i < w; i++) {
      const k = 3 * Math.round((i / Math.max(1, w - 1)) * 255);
      for (let j = 0; j < h; j++) {
        const p = 4 * (j * w + i);
        img.data[p] = lut[k]; img.data[p + 1] = lut[k + 1]; img.data[p + 2] = lut[k + 2]; img.data[p + 3] = 255;
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

  function drawHistogram() {
    const c = hist.getContext("2d");
    const w = hist.width, h = hist.height;
    c.clearRect(0, 0, w, h);
    c.fillStyle = "#f3f3f3"; c.fillRect(0, 0, w, h);
    const H = histogram(st.sorted, 128);
    st.hist = H;
    let peak = 0;
    for (const v of H.counts) peak = Math.max(peak, Math.log1p(v));
    c.fillStyle = "#8a8a8a";
    const bw = w / H.counts.length;
    H.counts.forEach((v, i) => {
      const bh = peak > 0 ? (Math.log1p(v) / peak) * (h - 2) : 0;
      c.fillRect(i * bw, h - bh, Math.max(1, bw - 0.5), bh);
    });
    c.strokeStyle = "#d62728"; c.lineWidth = 2;
    for (const v of st.lim) {
      const X = histX(v);
      c.beginPath(); c.moveTo(X, 0); c.lineTo(X, h); c.stroke();
    }
  }

  const histX = (v) => {
    const H = st.hist || { lo: 0, hi: 1 };
    const span = H.hi - H.lo || 1;
    return Math.min(hist.width - 1, Math.max(1, ((v - H.lo) / span) * hist.width));
  };
  const histValue = (X) => {
    const H = st.hist || { lo: 0, hi: 1 };
    return H.lo + (X / hist.width) * (H.hi - H.lo);
  };

  function syncControls() {
    title.textContent = model.get("title");
    title.style.display = model.get("title") ? "" : "none";
    cmapSel.value = model.get("colormap");
    scaleSel.value = model.get("scale");
    modeSel.value = model.get("contrast");
    const absolute = model.get("contrast") === "absolute";
    if (document.activeElement !== lowIn) lowIn.value = absolute ? fmt(st.lim[0]) : model.get("percentiles")[0];
    if (document.activeElement !== highIn) highIn.value = absolute ? fmt(st.lim[1]) : model.get("percentiles")[1];
    lowIn.title = absolute ? "vmin" : "low percentile";
    highIn.title = absolute ? "vmax" : "high percentile";
    status.textContent = model.get("status");
    badge.textContent = model.get("badge");
    badge.style.display = model.get("badge") ? "" : "none";
  }

  function draw() {
    st.frame = 0;
    if (st.dirtyPicture) repaintPicture();
    if (!st.fitted) fit();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    if (st.rows) ctx.drawImage(off, st.ox, st.oy, st.cols * st.s, st.rows * st.s);
    // markers are data (peaks), drawn under the editable overlays so handles stay visible
    st.markersDrawn = drawMarkers(ctx, st.markers, toScreen, st.s, model.get("luts"));
    drawOverlays(ctx, st.ovs, model.get("selected"), toScreen, st.s, st.rows, st.cols, st.focused);
    drawScaleBar();
    drawColorbar();
    drawHistogram();
    syncControls();
    st.renders += 1;
    const ds = root.dataset;
    ds.imageVersion = String(model.get("image_version"));
    ds.renderCount = String(st.renders);
    ds.vmin = String(st.lim[0]);
    ds.vmax = String(st.lim[1]);
    ds.colormap = model.get("colormap");
    ds.transform = JSON.stringify({ s: st.s, ox: st.ox, oy: st.oy, rows: st.rows, cols: st.cols });
    ds.overlays = JSON.stringify(st.ovs);
    ds.markersDrawn = String(st.markersDrawn);
    ds.badge = model.get("badge");
    ds.paintedAt = String(performance.now());
  }

  function schedule(picture = false) {
    if (picture) st.dirtyPicture = true;
    if (!st.frame) st.frame = requestAnimationFrame(draw);
  }

  // --- overlays: local copy edited while dragging, sent throttled -------------------------
  function pullOverlays() {
    const incoming = model.get("overlays").map((o) => ({ ...o }));
    if (st.drag) {
      const mine = st.ovs.find((o) => o.id === st.drag.id);
      st.ovs = incoming.map((o) => (mine && o.id === mine.id ? mine : o));
    } else {
      st.ovs = incoming;
    }
  }

  function pullMarkers() {
    st.markers = (model.get("markers") || []).map(decodeMarkers);
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
    const ov = st.ovs.find((o) => o.id === id);
    const out = ov && removeVertex(ov, Number(part.slice(1)));
    if (!out) return false;
    replaceOverlay(out);
    st.focused = null;
    model.set("selected", id);
    send(true);
    schedule();
    return true;
  }

  const isVertex = (hit) => hit && /^v\d+$/.test(hit.part)
    && (st.ovs.find((o) => o.id === hit.id) || {}).kind === "polygon";

  function eventPoint(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height)];
  }

  function showReadout(X, Y) {
    const [x, y] = toData(X, Y);
    const i = Math.round(x), j = Math.round(y);
    if (i < 0 || j < 0 || i >= st.rows || j >= st.cols) { readout.textContent = ""; return; }
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
    const [X, Y] = eventPoint(e);
    const [x, y] = toData(X, Y);
    canvas.setPointerCapture(e.pointerId);
    const hit = hitTest(st.ovs, model.get("selected"), x, y, st.s);
    // alt-click or right-click on a polygon vertex removes it
    if (isVertex(hit) && (e.altKey || e.button === 2)) {
      dropVertex(hit.id, hit.part);
      return;
    }
    st.focused = isVertex(hit) && e.button === 0 ? hit : null;
    if (hit && e.button === 0) {
      const orig = st.ovs.find((o) => o.id === hit.id);
      st.drag = { id: hit.id, part: hit.part, x0: x, y0: y, orig: { ...orig } };
      model.set("selected", hit.id);
      model.set("dragging", hit.id);
      model.save_changes();
    } else {
      st.pan = { X, Y, ox: st.ox, oy: st.oy, moved: false };
    }
    schedule();
  });

  canvas.addEventListener("pointermove", (e) => {
    const [X, Y] = eventPoint(e);
    showReadout(X, Y);
    if (st.drag) {
      const [x, y] = toData(X, Y);
      const d = st.drag;
      replaceOverlay(dragTo(d.orig, d.part, x, y, x - d.x0, y - d.y0));
      schedule();
      sendThrottled();
    } else if (st.pan) {
      const dX = X - st.pan.X, dY = Y - st.pan.Y;
      if (Math.abs(dX) + Math.abs(dY) > 3) st.pan.moved = true;
      if (st.pan.moved) { st.ox = st.pan.ox + dX; st.oy = st.pan.oy + dY; schedule(); }
    }
  });

  function endPointer(e) {
    if (st.drag) {
      st.drag = null;
      send(true);
    } else if (st.pan && !st.pan.moved && e.type === "pointerup") {
      const target = model.get("click_moves");
      const ov = st.ovs.find((o) => o.id === target);
      if (ov) {
        const [X, Y] = eventPoint(e);
        const [x, y] = toData(X, Y);
        const i = Math.round(x), j = Math.round(y);
        if (i >= 0 && j >= 0 && i < st.rows && j < st.cols) {
          const cx = ov.kind === "rectangle" ? (ov.x0 + ov.x1 - 1) / 2 : ov.x;
          const cy = ov.kind === "rectangle" ? (ov.y0 + ov.y1 - 1) / 2 : ov.y;
          if (ov.kind === "point" || ov.kind === "rectangle") {
            replaceOverlay(translate(ov, Math.round(i - cx), Math.round(j - cy)));
            model.set("selected", ov.id);
            send(true);
          }
        }
      }
    }
    st.pan = null;
    schedule();
  }
  canvas.addEventListener("pointerup", endPointer);
  canvas.addEventListener("pointercancel", endPointer);
  canvas.addEventListener("pointerleave", () => { readout.textContent = ""; });

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [X, Y] = eventPoint(e);
    const f = e.deltaY < 0 ? 1.2 : 1 / 1.2;
    st.ox = X - (X - st.ox) * f;
    st.oy = Y - (Y - st.oy) * f;
    st.s *= f;
    schedule();
  }, { passive: false });
  // double-click on a polygon edge inserts a vertex there; anywhere else it fits the image
  canvas.addEventListener("dblclick", (e) => {
    const [x, y] = toData(...eventPoint(e));
    if (isVertex(hitTest(st.ovs, model.get("selected"), x, y, st.s))) return; // no coincident duplicate
    const edge = edgeHit(st.ovs, model.get("selected"), x, y, st.s);
    if (!edge) { fit(); schedule(); return; }
    const ov = st.ovs.find((o) => o.id === edge.id);
    replaceOverlay(insertVertex(ov, edge.index, edge.x, edge.y));
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
  resetBtn.addEventListener("click", () => { fit(); schedule(); });

  root.addEventListener("keydown", (e) => {
    if (e.target !== root && e.target !== canvas) return; // typing in the toolbar
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
    const ov = st.ovs.find((o) => o.id === id);
    if (!ov || ov.editable === false) return;
    const step = e.shiftKey ? 5 : 1;
    replaceOverlay(translate(ov, entry[1] * step, entry[2] * step));
    model.set("selected", id);
    schedule();
    send(true);
  });
  root.addEventListener("keyup", (e) => { if (e.target === root) e.stopPropagation(); });
  root.addEventListener("keypress", (e) => { if (e.target === root) e.stopPropagation(); });

  // --- help: '?' lists the shortcuts of this view's keymap, as py4D-browser users look for them ---
  const ARROW_ORDER = ["-1,0", "0,-1", "1,0", "0,1"]; // up, left, down, right: W A S D, I J K L

  function helpLines() {
    const groups = new Map();
    for (const [key, [id, dx, dy]] of Object.entries(model.get("keymap"))) {
      if (!groups.has(id)) groups.set(id, []);
      groups.get(id).push([key, ARROW_ORDER.indexOf(`${Math.sign(dx)},${Math.sign(dy)}`)]);
    }
    const ARROWS = { ArrowUp: "↑", ArrowDown: "↓", ArrowLeft: "←", ArrowRight: "→" };
    const name = (k) => ARROWS[k] || k.toUpperCase();
    const lines = [];
    for (const [id, keys] of groups) {
      const letters = keys.filter(([k]) => !k.startsWith("Arrow"));
      const arrows = keys.filter(([k]) => k.startsWith("Arrow"));
      const what = id ? `move ${id === "selector" ? "the real-space selector" : id}` : "move the selected shape";
      for (const set of [letters, arrows]) {
        if (set.length) lines.push([set.sort((a, b) => a[1] - b[1]).map(([k]) => name(k)).join(" "), what]);
      }
    }
    lines.push(["Shift + key", "move 5 pixels"]);
    lines.push(["drag", "a shape or its handles; the background pans"]);
    lines.push(["wheel / dbl-click", "zoom / fit the image"]);
    lines.push(["dbl-click edge", "insert a polygon vertex"]);
    lines.push(["Alt-click vertex", "remove it (or click it, then Delete)"]);
    if (model.get("click_moves")) lines.push(["click", "move the real-space selector there"]);
    lines.push(["?  /  Esc", "show / hide this help"]);
    return lines;
  }

  function toggleHelp(show = help.style.display === "none") {
    help.replaceChildren();
    if (show) {
      for (const [keys, what] of helpLines()) {
        const row = el("div", {}, help);
        el("b", { text: keys }, row);
        row.appendChild(document.createTextNode(what));
      }
    }
    help.style.display = show ? "" : "none";
    root.dataset.help = show ? "open" : "";
  }
  helpBtn.addEventListener("click", () => { toggleHelp(); root.focus(); });
  root.addEventListener("keydown", (e) => {
    if (e.target !== root && e.target !== canvas) return;
    if (e.key === "?" || (e.key === "Escape" && help.style.display !== "none")) {
      e.preventDefault();
      e.stopPropagation(); // Esc would leave JupyterLab's edit mode, '?' nothing else should see
      toggleHelp(e.key === "?" ? undefined : false);
    }
  });

  // --- toolbar ----------------------------------------------------------------------------
  cmapSel.addEventListener("change", () => { model.set("colormap", cmapSel.value); model.save_changes(); });
  scaleSel.addEventListener("change", () => { model.set("scale", scaleSel.value); model.save_changes(); });
  modeSel.addEventListener("change", () => {
    if (modeSel.value === "absolute") { model.set("vmin", st.lim[0]); model.set("vmax", st.lim[1]); }
    model.set("contrast", modeSel.value);
    model.save_changes();
  });
  function limitInput(which) {
    const v = parseFloat(which === 0 ? lowIn.value : highIn.value);
    if (!Number.isFinite(v)) return;
    if (model.get("contrast") === "absolute") {
      model.set(which === 0 ? "vmin" : "vmax", v);
    } else {
      const p = [...model.get("percentiles")];
      p[which] = Math.min(100, Math.max(0, v));
      model.set("percentiles", p);
    }
    model.save_changes();
  }
  lowIn.addEventListener("change", () => limitInput(0));
  highIn.addEventListener("change", () => limitInput(1));
  pngBtn.addEventListener("click", () => {
    const a = document.createElement("a");
    a.download = `${model.get("title") || "image"}.png`;
    a.href = canvas.toDataURL("image/png");
    a.click();
  });

  // histogram: drag the nearer limit line; the contrast becomes absolute
  let histDrag = null;
  hist.addEventListener("pointerdown", (e) => {
    const r = hist.getBoundingClientRect();
    const X = (e.clientX - r.left) * (hist.width / r.width);
    histDrag = Math.abs(X - histX(st.lim[0])) <= Math.abs(X - histX(st.lim[1])) ? 0 : 1;
    hist.setPointerCapture(e.pointerId);
  });
  hist.addEventListener("pointermove", (e) => {
    if (histDrag === null) return;
    const r = hist.getBoundingClientRect();
    const v = histValue((e.clientX - r.left) * (hist.width / r.width));
    const lim = [...st.lim];
    lim[histDrag] = v;
    model.set("contrast", "absolute");
    model.set("vmin", Math.min(lim[0], lim[1]));
    model.set("vmax", Math.max(lim[0], lim[1]));
    schedule(true);
  });
  hist.addEventListener("pointerup", () => { if (histDrag !== null) { histDrag = null; model.save_changes(); } });

  // --- model events -------------------------------------------------------------------------
  const onImage = () => { loadImage(); schedule(true); };
  const onLook = () => schedule(true);
  const onOverlays = () => { pullOverlays(); schedule(); };
  const onSize = () => { sizeCanvas(); schedule(); };
  const onOther = () => schedule();
  const onMarkers = () => { pullMarkers(); schedule(); };
  const listeners = [["image_version", onImage], ["image", onImage], ["overlays", onOverlays], ["size", onSize],
                     ["markers", onMarkers]];
  for (const k of ["colormap", "scale", "gamma", "contrast", "percentiles", "vmin", "vmax", "luts"]) {
    listeners.push([k, onLook]);
  }
  for (const k of ["selected", "title", "status", "badge", "pixel_size", "units", "origin"]) {
    listeners.push([k, onOther]);
  }
  for (const [k, fn] of listeners) model.on(`change:${k}`, fn);

  loadImage();
  pullOverlays();
  pullMarkers();
  sizeCanvas();
  schedule(true);

  return () => {
    for (const [k, fn] of listeners) model.off(`change:${k}`, fn);
    if (st.frame) cancelAnimationFrame(st.frame);
    clearTimeout(st.sendTimer);
  };
}
