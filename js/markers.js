// Point sets (peak markers): thousands of points from raw float32 buffers, drawn in a few paths.
// decodeMarkers is pure (unit-tested under node); drawMarkers needs a canvas context and Path2D.
// Geometry as in overlay_geometry.js: x = first array axis (screen rows), y = second (screen columns).

const COLOR_BINS = 32; // values are coloured in this many steps: one canvas path per step, not per point

/** A Float32Array over a synced buffer (DataView, ArrayBuffer or nothing), copying when unaligned. */
function floats(buf) {
  if (!buf || !buf.byteLength) return null;
  const buffer = buf.buffer ? buf.buffer : buf;
  const offset = buf.byteOffset || 0;
  if (offset % 4 === 0) return new Float32Array(buffer, offset, buf.byteLength / 4);
  return new Float32Array(buffer.slice(offset, offset + buf.byteLength));
}

/** Decode one synced marker set into typed arrays (done when the set changes, not per frame). */
export function decodeMarkers(set) {
  const n = set.n || 0;
  const xy = floats(set.xy) || new Float32Array(0);
  if (xy.length !== 2 * n) throw new Error(`marker set ${set.id}: ${xy.length / 2} positions for n = ${n}`);
  const sizes = floats(set.sizes);
  const values = floats(set.values);
  let lo = set.vmin, hi = set.vmax;
  if (values && (lo === null || lo === undefined || hi === null || hi === undefined)) {
    let a = Infinity, b = -Infinity;
    for (const v of values) if (Number.isFinite(v)) { if (v < a) a = v; if (v > b) b = v; }
    if (lo === null || lo === undefined) lo = a;
    if (hi === null || hi === undefined) hi = b;
  }
  return { ...set, n, xy, sizes, values, lo, hi };
}

function markerPath(ctx, style, X, Y, R) {
  switch (style) {
    case "dot":
    case "circle":
      ctx.moveTo(X + R, Y);
      ctx.arc(X, Y, R, 0, 2 * Math.PI);
      break;
    case "square":
      ctx.rect(X - R, Y - R, 2 * R, 2 * R);
      break;
    case "cross":
      ctx.moveTo(X - R, Y - R); ctx.lineTo(X + R, Y + R); ctx.moveTo(X - R, Y + R); ctx.lineTo(X + R, Y - R);
      break;
    default: // plus
      ctx.moveTo(X - R, Y); ctx.lineTo(X + R, Y); ctx.moveTo(X, Y - R); ctx.lineTo(X, Y + R);
  }
}

/**
 * Draw decoded marker sets. `toScreen(x, y)` gives canvas [X, Y]; `scale` is canvas px per image px;
 * `luts` maps colormap names to 768-entry RGB tables. Returns how many markers were drawn.
 */
export function drawMarkers(ctx, sets, toScreen, scale, luts) {
  const W = ctx.canvas.width, H = ctx.canvas.height;
  let drawn = 0;
  for (const set of sets) {
    if (set.visible === false || !set.n) continue;
    const lut = set.values ? (luts[set.colormap] || luts.gray) : null;
    const bins = lut ? COLOR_BINS : 1;
    const paths = Array.from({ length: bins }, () => new Path2D());
    const span = set.hi - set.lo || 1;
    for (let i = 0; i < set.n; i++) {
      const x = set.xy[2 * i], y = set.xy[2 * i + 1];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      const [X, Y] = toScreen(x, y);
      const r = set.sizes ? set.sizes[i] : set.radius;
      const R = Math.max(2, (Number.isFinite(r) ? r : set.radius) * scale);
      if (X < -R || Y < -R || X > W + R || Y > H + R) continue; // off screen when zoomed in
      let b = 0;
      if (lut) {
        const v = set.values[i];
        if (!Number.isFinite(v)) continue;
        b = Math.min(bins - 1, Math.max(0, Math.floor(((v - set.lo) / span) * bins)));
      }
      markerPath(paths[b], set.style, X, Y, R);
      drawn += 1;
    }
    ctx.save();
    ctx.lineWidth = 1.5;
    paths.forEach((p, b) => {
      let color = set.color;
      if (lut) {
        const k = 3 * Math.round(((b + 0.5) / bins) * 255);
        color = `rgb(${lut[k]},${lut[k + 1]},${lut[k + 2]})`;
      }
      if (set.style === "dot") { ctx.fillStyle = color; ctx.fill(p); } else { ctx.strokeStyle = color; ctx.stroke(p); }
    });
    ctx.restore();
  }
  return drawn;
}
