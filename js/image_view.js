// anywidget entry of ImageView (bundled to fourd_widgets/static/image_view.js; its styles are
// image_view.css, given to anywidget as _css). The view is put together from its parts:
//   image_view/toolbar.js      colormap, scaling, contrast, fit, PNG, help button
//   image_view/stage.js        canvas: picture, markers, overlays, scale bar, badge; the colorbar
//   image_view/histogram.js    histogram with draggable contrast limits
//   image_view/interaction.js  mouse and keyboard: overlay editing, pan, zoom, readout, keymap
//   image_view/help.js         the '?' panel
// over one shared state object; the maths they use (scaling.js, view_transform.js, overlay_geometry.js,
// keymap_help.js) is pure and unit-tested under node (js/test/).
import { decodeMarkers } from "./markers.js";
import { el } from "./image_view/dom.js";
import { createHelp } from "./image_view/help.js";
import { createHistogram } from "./image_view/histogram.js";
import { createInteraction } from "./image_view/interaction.js";
import { createStage } from "./image_view/stage.js";
import { createToolbar } from "./image_view/toolbar.js";

/** The state the parts share: image, transform, overlays being edited, pending frame and send. */
function createState() {
  return {
    rows: 0, cols: 0, data: new Float32Array(0), sorted: new Float32Array(0), lim: [0, 1],
    s: 1, ox: 0, oy: 0, fitted: false, ovs: [], markers: [], markersDrawn: 0, drag: null, pan: null, renders: 0,
    lastSend: 0, sendTimer: null, dirtyPicture: true, frame: 0, focused: null,
  };
}

// model traits that change the picture's colours, and those that only need a redraw
const LOOK = ["colormap", "scale", "gamma", "contrast", "percentiles", "vmin", "vmax", "luts"];
const REDRAW = ["selected", "title", "status", "badge", "pixel_size", "units", "origin"];

function render({ model, el: host }) {
  const st = createState();
  const root = el("div", { class: "fw-view", tabindex: "0" }, host);
  const title = el("div", { class: "fw-title" }, root);
  const toolbar = createToolbar(root, model, st, {
    fit: () => { stage.fit(); schedule(); },
    savePNG: () => {
      const a = document.createElement("a");
      a.download = `${model.get("title") || "image"}.png`;
      a.href = stage.canvas.toDataURL("image/png");
      a.click();
    },
    toggleHelp: () => { help.toggle(); root.focus(); },
  });
  const stage = createStage(root, model, st);
  const help = createHelp(stage.box, root, model);
  const histogram = createHistogram(root, model, st, schedule);
  const readout = el("div", { class: "fw-readout" }, root);
  const status = el("div", { class: "fw-status" }, root);
  const interaction = createInteraction(model, st, { root, canvas: stage.canvas, readout, stage, help, schedule });

  function resize() {
    stage.size();
    histogram.resize(model.get("size"));
  }

  // what the browser tests read: counters, limits, transform and overlays as drawn
  function publish() {
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

  function draw() {
    st.frame = 0;
    stage.paint();
    histogram.paint();
    toolbar.sync();
    title.textContent = model.get("title");
    title.style.display = model.get("title") ? "" : "none";
    status.textContent = model.get("status");
    st.renders += 1;
    publish();
  }

  /** Draw at the next animation frame (recolouring the picture first when `picture`). */
  function schedule(picture = false) {
    if (picture) st.dirtyPicture = true;
    if (!st.frame) st.frame = requestAnimationFrame(draw);
  }

  const pullMarkers = () => { st.markers = (model.get("markers") || []).map(decodeMarkers); };
  const onImage = () => { stage.loadImage(); schedule(true); };
  const listeners = [
    ["image_version", onImage], ["image", onImage],
    ["overlays", () => { interaction.pullOverlays(); schedule(); }],
    ["size", () => { resize(); schedule(); }],
    ["markers", () => { pullMarkers(); schedule(); }],
    ...LOOK.map((k) => [k, () => schedule(true)]),
    ...REDRAW.map((k) => [k, () => schedule()]),
  ];
  for (const [k, fn] of listeners) model.on(`change:${k}`, fn);

  stage.loadImage();
  interaction.pullOverlays();
  pullMarkers();
  resize();
  schedule(true);

  return () => {
    for (const [k, fn] of listeners) model.off(`change:${k}`, fn);
    if (st.frame) cancelAnimationFrame(st.frame);
    interaction.dispose();
  };
}

export default { render };
