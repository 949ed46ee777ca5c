"""Colormaps and display scaling, shared by the browser and the Python exports.

The lookup tables are built here, from a few anchor colours each, and sent to
the front end once per view; the browser then maps values to colours itself,
so changing the colormap, scaling or contrast costs no round trip. The same
functions render the PNG exports on the Python side, so a saved PNG matches
what the canvas showed.

Display mapping (browser and Python alike)::

    u = clip((x - vmin) / (vmax - vmin), 0, 1)
    linear: u    sqrt: sqrt(u)    power: u ** gamma    log: log1p(1000 u) / log1p(1000)
    colour = lut[round(255 * scaled)]; NaN is transparent

Examples
--------
>>> lut("gray")[[0, 255]].tolist()
[[0, 0, 0], [255, 255, 255]]
>>> sorted(COLORMAPS)
['cyclic', 'gray', 'inferno', 'magma', 'rdbu', 'viridis']
>>> scale_values(np.array([0.0, 0.25, 1.0]), 0, 1, "sqrt").tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

__all__ = ["COLORMAPS", "SCALINGS", "LOG_STRETCH", "lut", "all_luts", "scale_values", "percentile_limits",
           "to_rgba", "png_bytes"]

#: Anchor colours (hex), evenly spaced from 0 to 1; 256-entry tables are interpolated from them.
COLORMAPS: dict[str, tuple[str, ...]] = {
    "gray": ("#000000", "#ffffff"),
    "viridis": ("#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863", "#aadc32",
                "#fde725"),
    "magma": ("#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55964", "#fb8761", "#fec287",
              "#fcfdbf"),
    "inferno": ("#000004", "#1f0c48", "#550f6d", "#88226a", "#ba3655", "#e35933", "#f98e09", "#f9cb35",
                "#fcffa4"),
    # diverging, for signed maps (centre the limits on zero): blue - white - red
    "rdbu": ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d",
             "#b2182b"),
    # cyclic, for angles: the first and last colours are the same
    "cyclic": ("#e2d9e2", "#a3b5d2", "#6580bf", "#4a4393", "#2f1436", "#6b1f46", "#ae4848", "#cf9a7f",
               "#e2d9e2"),
}
#: Display scalings understood by the browser and :func:`scale_values`.
SCALINGS = ("linear", "log", "sqrt", "power")
#: Stretch of the log scaling: ``log1p(LOG_STRETCH * u) / log1p(LOG_STRETCH)``.
LOG_STRETCH = 1000.0


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    anchors = np.array([_rgb(c) for c in COLORMAPS[name]], dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(t, x, anchors[:, k]) for k in range(3)], axis=1)
    out = np.round(table).astype(np.uint8)
    out.setflags(write=False)
    return out


def lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 lookup table of colormap ``name``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(sorted(COLORMAPS))}")
    return _lut(name)


def all_luts() -> dict[str, list[int]]:
    """Every table as a flat ``[r, g, b, r, g, b, ...]`` list (what the front end receives)."""
    return {name: lut(name).ravel().tolist() for name in COLORMAPS}


def scale_values(x: np.ndarray, vmin: float, vmax: float, scale: str = "linear", gamma: float = 0.5) -> np.ndarray:
    """Map values to [0, 1] for display (NaN stays NaN); see the module docstring."""
    if scale not in SCALINGS:
        raise ValueError(f"unknown scaling {scale!r}; choose one of {', '.join(SCALINGS)}")
    span = float(vmax) - float(vmin)
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.clip((x - vmin) / span, 0.0, 1.0) if span > 0 else np.where(np.isnan(x), np.nan, (x > vmin) * 1.0)
        if scale == "sqrt":
            return np.sqrt(u)
        if scale == "power":
            return u ** float(gamma)
        if scale == "log":
            return np.log1p(LOG_STRETCH * u) / np.log1p(LOG_STRETCH)
    return u


def percentile_limits(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Contrast limits at the ``low`` and ``high`` percentiles of the finite values (0, 1 if none).

    The browser uses the same rule: nearest rank in the sorted finite values.
    """
    v = np.sort(np.asarray(x, dtype=np.float32)[np.isfinite(x)], axis=None)
    if v.size == 0:
        return 0.0, 1.0
    n = v.size - 1
    lo = v[int(round(np.clip(low, 0, 100) / 100 * n))]
    hi = v[int(round(np.clip(high, 0, 100) / 100 * n))]
    return float(lo), float(hi)


def to_rgba(x: np.ndarray, vmin: float, vmax: float, cmap: str = "gray", scale: str = "linear",
            gamma: float = 0.5) -> np.ndarray:
    """(M, N, 4) uint8 picture of ``x`` as the canvas paints it (NaN transparent)."""
    s = scale_values(x, vmin, vmax, scale, gamma)
    nan = np.isnan(s)
    idx = np.round(np.nan_to_num(s) * 255).astype(np.intp)
    out = np.empty(s.shape + (4,), dtype=np.uint8)
    out[..., :3] = lut(cmap)[idx]
    out[..., 3] = np.where(nan, 0, 255)
    return out


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an (M, N, 4) uint8 array as a PNG file (no Pillow needed)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    raw = b"".join(b"\x00" + rgba[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
