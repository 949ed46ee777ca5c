"""Grains, IPF colour maps and exports of an :class:`~.orientation_results.OrientationMap`.

* :func:`segment_grains`: grains by a misorientation threshold between scan neighbours
  (4-connectivity), grain sizes and the grain-boundary map.
* :func:`ipf_colors`: inverse-pole-figure colours (orix's TSL key) for the scan x, y or z direction.
* :func:`save_ang`: the EDAX/TSL ``.ang`` file through orix's writer (Bunge ZXZ Euler angles).
* :func:`save_maps_png`: IPF x/y/z, phase and reliability maps with the colour key, as one PNG.

Frames: lab x = scan x (Rx), lab y = scan y (Ry), lab z = beam, the frame orientations are
reported in (:mod:`.orientation`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.errors import ParameterError
from .orientation_results import OrientationMap, misorientation_deg

__all__ = ["Grains", "segment_grains", "ipf_colors", "save_ang", "save_maps_png"]

_HALF_TURN = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Grains:
    """Grain segmentation of an orientation map.

    Attributes
    ----------
    labels : (Rx, Ry) int array
        Grain of each position, 0..n-1 (-1: no match).
    sizes : (n,) int array
        Positions per grain.
    boundaries : (Rx, Ry) bool array
        Positions with a 4-neighbour in another grain.
    threshold_deg : float
    """

    labels: np.ndarray
    sizes: np.ndarray
    boundaries: np.ndarray
    threshold_deg: float

    @property
    def count(self) -> int:
        return int(len(self.sizes))

    def statistics(self) -> dict[str, float]:
        """Grain count and size statistics (positions)."""
        s = self.sizes
        return {"count": float(len(s)), "mean": float(s.mean()) if len(s) else 0.0,
                "median": float(np.median(s)) if len(s) else 0.0, "max": float(s.max()) if len(s) else 0.0}

    def to_h5(self, group: Any) -> None:
        group.attrs["threshold_deg"] = self.threshold_deg
        for n in ("labels", "sizes", "boundaries"):
            group.create_dataset(n, data=getattr(self, n))

    @classmethod
    def from_h5(cls, group: Any) -> "Grains":
        return cls(group["labels"][()], group["sizes"][()], group["boundaries"][()],
                   float(group.attrs["threshold_deg"]))


def _symmetry(om: OrientationMap, phase: int) -> np.ndarray:
    return np.asarray(om.crystals[phase].laue_group.proper_subgroup.to_matrix(), float).reshape(-1, 3, 3)


def segment_grains(om: OrientationMap, threshold_deg: float = 5.0, *, match: int = 0) -> Grains:
    """Grains: scan neighbours of one phase closer than ``threshold_deg`` (misorientation) are joined.

    A half-turn about the beam counts as no misorientation (zero-order patterns cannot tell it).

    Examples
    --------
    >>> from fourd_widgets.analysis.crystal import Crystal
    >>> si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)])
    >>> t = np.radians([0, 0, 20, 20])
    >>> U = np.array([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]] for a in t])
    >>> om = OrientationMap(U.reshape(1, 4, 1, 3, 3), np.zeros((1, 4, 1)), np.ones((1, 4, 1)),
    ...                     np.zeros((1, 4, 1, 3)), np.zeros((1, 4, 1)), np.ones((1, 4)), np.ones((1, 4)),
    ...                     np.ones((1, 4, 1)), [si])
    >>> g = segment_grains(om, 5.0)
    >>> g.labels.tolist(), g.sizes.tolist(), g.boundaries.tolist()
    ([[0, 0, 1, 1]], [2, 2], [[False, True, True, False]])
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(om.scan_shape) != 2:
        raise ParameterError("grain segmentation needs a 2-D scan", field="om")
    if not threshold_deg > 0:
        raise ParameterError(f"threshold_deg must be positive, got {threshold_deg!r}", field="threshold_deg")
    Rx, Ry = om.scan_shape
    U = om.matrix[..., match, :, :]
    ph = om.phase[..., match]
    ok = (ph >= 0) & np.isfinite(U).all(axis=(-1, -2))
    idx = np.arange(Rx * Ry).reshape(Rx, Ry)
    rows, cols = [], []
    for a, b in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                 ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        both = ok[a] & ok[b] & (ph[a] == ph[b])
        close = np.zeros(both.shape, bool)
        for k in range(len(om.crystals)):
            sel = both & (ph[a] == k)
            if sel.any():
                sym = _symmetry(om, k)
                Ua, Ub = U[a][sel], U[b][sel]
                d = np.minimum(misorientation_deg(Ua, Ub, sym), misorientation_deg(Ua, _HALF_TURN @ Ub, sym))
                close[sel] = d < threshold_deg
        rows.append(idx[a][close])
        cols.append(idx[b][close])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(Rx * Ry, Rx * Ry))
    _, comp = connected_components(graph, directed=False)
    comp = np.where(ok.ravel(), comp, -1)
    # number grains in scan order
    _, first, inv = np.unique(comp[comp >= 0], return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    labels = np.full(Rx * Ry, -1)
    labels[comp >= 0] = order[inv]
    labels = labels.reshape(Rx, Ry)
    sizes = np.bincount(labels[labels >= 0].ravel(), minlength=len(first)).astype(np.int64)
    bnd = np.zeros((Rx, Ry), bool)
    dx = labels[1:] != labels[:-1]
    dy = labels[:, 1:] != labels[:, :-1]
    bnd[1:] |= dx
    bnd[:-1] |= dx
    bnd[:, 1:] |= dy
    bnd[:, :-1] |= dy
    return Grains(labels, sizes, bnd, float(threshold_deg))


def ipf_colors(om: OrientationMap, direction: Literal["x", "y", "z"] = "z", *, match: int = 0) -> np.ndarray:
    """(*scan, 3) RGB in [0, 1]: orix's TSL inverse-pole-figure key of the scan ``direction`` (black: no match)."""
    from orix.plot import IPFColorKeyTSL
    from orix.vector import Vector3d

    if direction not in ("x", "y", "z"):
        raise ParameterError(f"direction must be 'x', 'y' or 'z', got {direction!r}", field="direction")
    vec = {"x": Vector3d.xvector(), "y": Vector3d.yvector(), "z": Vector3d.zvector()}[direction]
    rgb = np.zeros(om.scan_shape + (3,))
    ph = om.phase[..., match]
    for k, crystal in enumerate(om.crystals):
        sel = ph == k
        if not sel.any():
            continue
        key = IPFColorKeyTSL(crystal.point_group.laue, direction=vec)
        rgb[sel] = key.orientation2color(om.orientations(match, k)[sel])
    return np.clip(rgb, 0, 1)


def save_ang(om: OrientationMap, path: str | os.PathLike, *, match: int = 0) -> str:
    """Write match ``match`` as an EDAX/TSL ``.ang`` file (orix's writer: Bunge ZXZ Euler angles in radians,
    scan x along the file's x; columns phi1 Phi phi2 x y IQ CI phase ...). Returns the path."""
    from orix import io

    path = os.fspath(path)
    xmap = om.to_crystal_map(match)
    io.save(path, xmap, overwrite=True, confidence_index_prop="reliability", image_quality_prop="correlation")
    return path


def save_maps_png(om: OrientationMap, path: str | os.PathLike, *, grains: Grains | None = None,
                  match: int = 0, dpi: int = 120) -> str:
    """IPF x, y, z (with the colour key), phase and reliability maps in one PNG. Returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from orix.plot import IPFColorKeyTSL

    fig = plt.figure(figsize=(15, 3.4))
    for i, d in enumerate("xyz"):
        ax = fig.add_subplot(1, 6, i + 1)
        ax.imshow(np.transpose(ipf_colors(om, d, match=match), (1, 0, 2)), origin="lower")
        if grains is not None:
            ax.contour(grains.boundaries.T.astype(float), levels=[0.5], colors="k", linewidths=0.5)
        ax.set_title(f"IPF {d}")
        ax.set_xlabel("scan x")
    key = IPFColorKeyTSL(om.crystals[0].point_group.laue)
    ax = fig.add_subplot(1, 6, 4, projection="ipf", symmetry=om.crystals[0].point_group.laue)
    ax.plot_ipf_color_key(show_title=False)
    ax.set_title(f"key ({key.symmetry.name})")
    ax = fig.add_subplot(1, 6, 5)
    ax.imshow(om.phase[..., match].T, origin="lower", cmap="tab10", vmin=-1, vmax=9)
    ax.set_title("phase: " + ", ".join(f"{k}={c.name}" for k, c in enumerate(om.crystals)))
    ax = fig.add_subplot(1, 6, 6)
    im = ax.imshow(om.reliability.T, origin="lower", cmap="gray", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("reliability")
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
