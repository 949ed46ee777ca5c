// Drawing the overlays on a 2-D canvas context (geometry in overlay_geometry.js).
import { HANDLE, handles, latticePoints } from "./overlay_geometry.js";

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
