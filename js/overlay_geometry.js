// Overlay geometry: handles, hit testing and editing (pure: no DOM, unit-tested under node).
// Geometry is in image pixels: x = first array axis (screen rows), y = second (screen columns);
// pixel (i, j) has its centre at x = i, y = j. See fourd_widgets/widgets/overlays.py.

/** Half size of a handle square, screen px. */
export const HANDLE = 5;

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

/** Lattice sites x + i a + j b (|i|, |j| <= 200) inside a rows x cols image; just x when a, b are parallel. */
export function latticePoints(ov, rows, cols) {
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

/** Is `hit` ({id, part} from hitTest) a vertex of a polygon among `ovs`? */
export function isVertexHit(ovs, hit) {
  if (!hit || !/^v\d+$/.test(hit.part)) return false;
  const ov = ovs.find((o) => o.id === hit.id);
  return Boolean(ov) && ov.kind === "polygon";
}

/**
 * A click on pixel (i, j) moves a point or rectangle so that its centre lands on that pixel (a rectangle
 * keeps whole-pixel edges); null for other kinds, which a click does not move.
 */
export function clickMoveTo(ov, i, j) {
  if (ov.kind !== "point" && ov.kind !== "rectangle") return null;
  const cx = ov.kind === "rectangle" ? (ov.x0 + ov.x1 - 1) / 2 : ov.x;
  const cy = ov.kind === "rectangle" ? (ov.y0 + ov.y1 - 1) / 2 : ov.y;
  return translate(ov, Math.round(i - cx), Math.round(j - cy));
}
