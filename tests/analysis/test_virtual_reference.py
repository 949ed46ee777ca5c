"""Plain numpy / pure-Python references for virtual detectors (slow, obvious, independent)."""

from __future__ import annotations

import math

import numpy as np


def ref_mask(kind: str, geom: dict, shape: tuple[int, int]) -> np.ndarray:
    """Pixel-centre membership, one pixel at a time."""
    m = np.zeros(shape, dtype=bool)
    for i in range(shape[0]):
        for j in range(shape[1]):
            if kind == "point":
                m[i, j] = (i == math.floor(geom["qx"] + 0.5) and j == math.floor(geom["qy"] + 0.5))
            elif kind == "circle":
                cx, cy = geom["center"]
                m[i, j] = math.hypot(i - cx, j - cy) ** 2 < geom["radius"] ** 2
            elif kind == "annulus":
                cx, cy = geom["center"]
                d2 = (i - cx) ** 2 + (j - cy) ** 2
                m[i, j] = geom["inner"] ** 2 < d2 < geom["outer"] ** 2
            elif kind == "rectangle":
                (x0, x1), (y0, y1) = geom["qx_range"], geom["qy_range"]
                m[i, j] = x0 <= i < x1 and y0 <= j < y1
            elif kind == "polygon":
                m[i, j] = _inside(geom["vertices"], i, j)
    return m


def _inside(vertices, x: float, y: float) -> bool:
    inside = False
    n = len(vertices)
    if n < 3:
        return False
    for k in range(n):
        (ax, ay), (bx, by) = vertices[k], vertices[(k + 1) % n]
        if (ay > y) != (by > y):
            if x < ax + (y - ay) * (bx - ax) / (by - ay):
                inside = not inside
    return inside


def shift_zero(m: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[q] = m[q - d], zero where q - d is off the grid."""
    out = np.zeros_like(m)
    Qx, Qy = m.shape
    for i in range(Qx):
        for j in range(Qy):
            si, sj = i - dx, j - dy
            if 0 <= si < Qx and 0 <= sj < Qy:
                out[i, j] = m[si, sj]
    return out


def shifted_mask(m: np.ndarray, s: tuple[float, float], subpixel: bool) -> np.ndarray:
    """The mask moved by ``s`` (rounded, or bilinear between the four whole-pixel moves)."""
    m = m.astype(np.float64)
    if not subpixel:
        return shift_zero(m, int(np.round(s[0])), int(np.round(s[1])))
    ix, iy = math.floor(s[0]), math.floor(s[1])
    fx, fy = s[0] - ix, s[1] - iy
    return ((1 - fx) * (1 - fy) * shift_zero(m, ix, iy) + (1 - fx) * fy * shift_zero(m, ix, iy + 1)
            + fx * (1 - fy) * shift_zero(m, ix + 1, iy) + fx * fy * shift_zero(m, ix + 1, iy + 1))


def ref_sum(pattern: np.ndarray, m: np.ndarray) -> float:
    p = pattern.astype(np.float64)
    sel = m != 0
    return float(np.sum(p[sel] * m[sel]))


def ref_max(pattern: np.ndarray, m: np.ndarray) -> float:
    sel = m != 0
    return float(np.max(pattern[sel].astype(np.float64))) if sel.any() else 0.0


# --- the references themselves are checked against facts, not against the package ---------
def test_shift_zero_moves_a_pixel():
    m = np.zeros((4, 5))
    m[1, 2] = 1
    assert shift_zero(m, 2, -1)[3, 1] == 1 and shift_zero(m, 2, -1).sum() == 1
    assert shift_zero(m, 3, 0).sum() == 0


def test_subpixel_shift_splits_weight_and_keeps_total():
    m = np.zeros((6, 6))
    m[2, 2] = 1
    s = shifted_mask(m, (0.25, 0.5), True)
    assert np.isclose(s.sum(), 1) and np.isclose(s[2, 2], 0.75 * 0.5) and np.isclose(s[3, 3], 0.25 * 0.5)


def test_reference_masks_known_counts():
    assert ref_mask("circle", {"center": (5, 5), "radius": 1.0}, (11, 11)).sum() == 1  # d < r excludes the 4 at d=1
    assert ref_mask("rectangle", {"qx_range": (1, 3), "qy_range": (0, 4)}, (5, 5)).sum() == 8
    assert ref_mask("polygon", {"vertices": [(0, 0), (4, 0), (0, 4)]}, (6, 6)).sum() > 0
