// Overlay shapes: drawing, handles, hit testing and editing.
// Geometry is in image pixels: x = first array axis (screen rows), y = second (screen columns);
// pixel (i, j) has its centre at x = i, y = j. See fourd_widgets/widgets/overlays.py.

const HANDLE = 5; // half size of a handle square, screen px

/** Handles of an overlay: [{part, x, y}] in data coordinates. */
export function handles(ov) {
  switch (ov.kind) {
    case "point":
      return [{ part: "move", x: ov.x, y: ov.y }];
    case "circle":
      return [{ part: "move", x: ov.x, y: ov.y }, { part: "r", x: ov.x, y: ov.y + ov.r }];
    case "annulus":
      return [{ part: "move", x: ov.x, y: ov.y }, { part: "r_out", x: ov.x, y: ov.y + ov.r_out },
              { part: "r_in", x: ov.x, y: ov.y - ov.r_in }];
    case "rectangle": {
      const a = ov.x0 - 0.5, b = ov.x1 - 0.5, c = ov.y0 - 0.5, d = ov.y1 - 0.5;
      return [{ part: "c00", x: a, y: c }, { part: "c01", x: a, y: d }, { part: "c10", x: b, y: c },
              { part: "c11", x: b, y: d }];
    }
    case "polygon":
      return ov.vertices.map((v, i) => ({ part: `v${i}`, x: v[0], y: v[1] }));
    case "lattice":
      return [{ part: "move", x: ov.x, y: ov.y }, { part: "a", x: ov.x + ov.ax, y: ov.y + ov.ay },
              { part: "b", x: ov.x + ov.bx, y: ov.y + ov.by }, { part: "r", x: ov.x, y: ov.y + ov.r }];
    default:
      return [];
  }
}

function insidePolygon(verts, x, y) {
  let inside = false;
  for (let i = 0, j = verts.length - 1; i < verts.length; j = i++) {
    const [ax, ay] = verts[i];
    const [bx, by] = verts[j];
    if ((ay > y) !== (by > y) && x < ax + ((y - ay) * (bx - ax)) / (by - ay)) inside = !inside;
  }
  return inside;
}

/** Is the data point (x, y) on the body of the overlay (within `tol` data px)? */
function onBody(ov, x, y, tol) {
  const d = Math.hypot(x - (ov.x ?? 0), y - (ov.y ?? 0));
  switch (ov.kind) {
    case "point": return d <= tol * 2;
    case "circle": return d <= Math.max(ov.r, tol);
    case "annulus": return d <= Math.max(ov.r_out, tol) && (d >= ov.r_in - tol || ov.r_in <= tol);
    case "rectangle":
      return x >= ov.x0 - 0.5 - tol && x <= ov.x1 - 0.5 + tol && y >= ov.y0 - 0.5 - tol && y <= ov.y1 - 0.5 + tol;
    case "polygon": return ov.vertices.length >= 3 && insidePolygon(ov.vertices, x, y);
    case "lattice": return d <= Math.max(ov.r, tol);
    default: return false;
  }
}

/** Find what is under the cursor: {id, part} or null. Handles win over bodies; the selected overlay first. */
export function hitTest(ovs, selected, x, y, scale) {
  const tol = (HANDLE + 2) / scale;
  const order = [...ovs].reverse().filter((o) => o.editable !== false);
  order.sort((a, b) => (b.id === selected) - (a.id === selected));
  for (const ov of order) {
    for (const h of handles(ov)) {
      if (h.part !== "move" && Math.abs(h.x - x) <= tol && Math.abs(h.y - y) <= tol) return { id: ov.id, part: h.part };
    }
  }
  for (const ov of order) if (onBody(ov, x, y, tol)) return { id: ov.id, part: "move" };
  return null;
}

const r2 = (v) => Math.round(v * 100) / 100;

/** Minimum vertex count of a polygon: fewer would enclose nothing. */
export const MIN_VERTICES = 3;

/**
 * The edge of an editable polygon under (x, y), within `tol` data px: {id, index, x, y}, where the new
 * vertex (x, y) is the nearest point of the edge and goes in at `index`. The selected overlay first.
 */
export function edgeHit(ovs, selected, x, y, scale) {
  const tol = (HANDLE + 2) / scale;
  const order = ovs.filter((o) => o.kind === "polygon" && o.editable !== false);
  order.sort((a, b) => (b.id === selected) - (a.id === selected));
  for (const ov of order) {
    const v = ov.vertices;
    for (let i = 0; i < v.length; i++) {
      const [ax, ay] = v[i];
      const [bx, by] = v[(i + 1) % v.length];
      const len2 = (bx - ax) ** 2 + (by - ay) ** 2;
      const t = len2 > 0 ? Math.min(1, Math.max(0, ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / len2)) : 0;
      const px = ax + t * (bx - ax), py = ay + t * (by - ay);
      if (Math.hypot(x - px, y - py) <= tol) return { id: ov.id, index: i + 1, x: r2(px), y: r2(py) };
    }
  }
  return null;
}

/** A copy of polygon `ov` with vertex (x, y) inserted at `index`. */
export function insertVertex(ov, index, x, y) {
  const vertices = ov.vertices.map((p) => [...p]);
  vertices.splice(index, 0, [x, y]);
  return { ...ov, vertices };
}

/** A copy of polygon `ov` without vertex `index`, or null when that would leave fewer than three. */
export function removeVertex(ov, index) {
  if (ov.kind !== "polygon" || ov.vertices.length <= MIN_VERTICES) return null;
  return { ...ov, vertices: ov.vertices.filter((_, k) => k !== index) };
}

/** Translate an overlay by (dx, dy) data px (returns a new object). */
export function translate(ov, dx, dy) {
  const o = { ...ov };
  if (o.kind === "rectangle") {
    o.x0 = r2(o.x0 + dx); o.x1 = r2(o.x1 + dx); o.y0 = r2(o.y0 + dy); o.y1 = r2(o.y1 + dy);
  } else if (o.kind === "polygon") {
    o.vertices = o.vertices.map(([a, b]) => [r2(a + dx), r2(b + dy)]);
  } else {
    o.x = r2(o.x + dx); o.y = r2(o.y + dy);
  }
  return o;
}

/** Apply a drag of `part` from the geometry `orig` to the data point (x, y), moved by (dx, dy). */
export function dragTo(orig, part, x, y, dx, dy) {
  if (part === "move") return translate(orig, dx, dy);
  const o = { ...orig };
  const dist = Math.hypot(x - o.x, y - o.y);
  switch (o.kind) {
    case "circle": o.r = r2(dist); break;
    case "annulus":
      if (part === "r_out") o.r_out = r2(Math.max(dist, o.r_in));
      else o.r_in = r2(Math.min(dist, o.r_out));
      break;
    case "rectangle": {
      // corner parts: c<row><col>, 0 = start edge, 1 = stop edge; edges snap to whole pixels
      const ex = Math.round(x + 0.5), ey = Math.round(y + 0.5);
      if (part[1] === "0") o.x0 = ex; else o.x1 = ex;
      if (part[2] === "0") o.y0 = ey; else o.y1 = ey;
      if (o.x0 > o.x1) [o.x0, o.x1] = [o.x1, o.x0];
      if (o.y0 > o.y1) [o.y0, o.y1] = [o.y1, o.y0];
      break;
    }
    case "polygon": {
      const i = Number(part.slice(1));
      o.vertices = o.vertices.map((v, k) => (k === i ? [r2(x), r2(y)] : v));
      break;
    }
    case "lattice":
      if (part === "a") { o.ax = r2(x - o.x); o.ay = r2(y - o.y); }
      else if (part === "b") { o.bx = r2(x - o.x); o.by = r2(y - o.y); }
      else if (part === "r") o.r = r2(dist);
      break;
    default: break;
  }
  return o;
}

function latticePoints(ov, rows, cols) {
  const pts = [];
  const det = ov.ax * ov.by - ov.ay * ov.bx;
  if (Math.abs(det) < 1e-9) return [[ov.x, ov.y]];
  const minLen = Math.max(1e-9, Math.min(Math.hypot(ov.ax, ov.ay), Math.hypot(ov.bx, ov.by)));
  const n = Math.min(200, Math.ceil((2 * Math.max(rows, cols)) / minLen) + 1);
  for (let i = -n; i <= n; i++) {
    for (let j = -n; j <= n; j++) {
      const px = ov.x + i * ov.ax + j * ov.bx;
      const py = ov.y + i * ov.ay + j * ov.by;
      if (px >= -0.5 && px < rows - 0.5 && py >= -0.5 && py < cols - 0.5) pts.push([px, py]);
    }
  }
  return pts;
}

/** Add a line from (X0, Y0) to (X1, Y1) with an arrowhead at the end to the current path. */
function arrow(ctx, X0, Y0, X1, Y1) {
  const len = Math.hypot(X1 - X0, Y1 - Y0);
  ctx.moveTo(X0, Y0); ctx.lineTo(X1, Y1);
  if (len < 1) return;
  const head = Math.min(10, len / 3), ux = (X1 - X0) / len, uy = (Y1 - Y0) / len;
  ctx.moveTo(X1 - head * (ux - 0.5 * uy), Y1 - head * (uy + 0.5 * ux));
  ctx.lineTo(X1, Y1);
  ctx.lineTo(X1 - head * (ux + 0.5 * uy), Y1 - head * (uy - 0.5 * ux));
}

/** Draw every overlay; `toScreen(x, y)` gives canvas [X, Y]; `scale` is canvas px per data px. */
export function drawOverlays(ctx, ovs, selected, toScreen, scale, rows, cols, focused = null) {
  for (const ov of ovs) {
    const sel = ov.id === selected;
    ctx.save();
    ctx.strokeStyle = ov.color || "#ff4d4d";
    ctx.fillStyle = ov.color || "#ff4d4d";
    ctx.lineWidth = sel ? 2.5 : 1.5;
    ctx.beginPath();
    const [X, Y] = ov.x !== undefined ? toScreen(ov.x, ov.y) : [0, 0];
    switch (ov.kind) {
      case "point":
        ctx.moveTo(X - 7, Y); ctx.lineTo(X + 7, Y); ctx.moveTo(X, Y - 7); ctx.lineTo(X, Y + 7);
        break;
      case "circle":
        ctx.arc(X, Y, ov.r * scale, 0, 2 * Math.PI);
        break;
      case "annulus":
        ctx.arc(X, Y, ov.r_out * scale, 0, 2 * Math.PI);
        ctx.moveTo(X + ov.r_in * scale, Y);
        ctx.arc(X, Y, ov.r_in * scale, 0, 2 * Math.PI);
        break;
      case "rectangle": {
        const [a, b] = toScreen(ov.x0 - 0.5, ov.y0 - 0.5);
        const [c, d] = toScreen(ov.x1 - 0.5, ov.y1 - 0.5);
        ctx.rect(a, b, c - a, d - b);
        break;
      }
      case "polygon":
        ov.vertices.forEach(([vx, vy], i) => {
          const [a, b] = toScreen(vx, vy);
          if (i === 0) ctx.moveTo(a, b); else ctx.lineTo(a, b);
        });
        if (ov.vertices.length > 2) ctx.closePath();
        break;
      case "lattice":
        for (const [px, py] of latticePoints(ov, rows, cols)) {
          const [a, b] = toScreen(px, py);
          ctx.moveTo(a + ov.r * scale, b);
          ctx.arc(a, b, ov.r * scale, 0, 2 * Math.PI);
        }
        for (const [vx, vy, name] of [[ov.ax, ov.ay, "a"], [ov.bx, ov.by, "b"]]) {
          const [a, b] = toScreen(ov.x + vx, ov.y + vy);
          arrow(ctx, X, Y, a, b);
          ctx.font = "11px sans-serif";
          ctx.fillText(name, a + 4, b - 4);
        }
        break;
      default: break;
    }
    ctx.stroke();
    if (ov.label) {
      ctx.font = "11px sans-serif";
      ctx.fillText(ov.label, X + 6, Y - 6);
    }
    if (sel && ov.editable !== false) {
      for (const h of handles(ov)) {
        const [a, b] = toScreen(h.x, h.y);
        ctx.fillRect(a - HANDLE + 1, b - HANDLE + 1, 2 * HANDLE - 2, 2 * HANDLE - 2);
        if (focused && focused.id === ov.id && focused.part === h.part) {
          // the vertex Delete / Backspace would remove
          ctx.strokeRect(a - HANDLE - 2, b - HANDLE - 2, 2 * HANDLE + 4, 2 * HANDLE + 4);
        }
      }
    }
    ctx.restore();
  }
}
