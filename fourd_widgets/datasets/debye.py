"""Orientation-averaged diffraction of atom clusters by the Debye equation (for PDF tests and tutorials).

For N identical atoms with scattering factor f(k) (k = 1/d, in 1/Å)::

    I(k) = f(k)² [ N + 2 Σ_{i<j} sin(2π k r_ij) / (2π k r_ij) · exp(-(2π k)² u²) ]

where ``u`` is the rms displacement of an atom along one axis (a Debye-Waller
factor on each pair, whose distance spreads by ``√2 u``). Pair distances are
histogrammed in 1e-4 Å bins first, so the sum costs O(bins x k) whatever N is.

Structures, built with numpy (no ASE needed):

* :func:`si_nanocrystal`: diamond-cubic Si (a = 5.431 Å) cut to a sphere;
* :func:`amorphous_cluster`: a dense random packing in a sphere (random
  sequential addition at a minimum distance, then relaxed under a pair
  potential with its minimum at the bond length), amorphous-Si-like density.

Examples
--------
>>> xyz = si_nanocrystal(12.0)
>>> k = np.linspace(0.05, 2.0, 5)
>>> I = debye_intensity(xyz, k)
>>> I.shape, bool(np.all(I > 0))
((5,), True)
>>> round(float(np.sort(pair_distances(xyz))[0]), 3)
2.352
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import ParameterError

__all__ = ["si_nanocrystal", "amorphous_cluster", "pair_distances", "debye_intensity", "si_scattering_factor",
           "debye_pattern", "SI_LATTICE_A"]

SI_LATTICE_A = 5.431
#: Doyle & Turner (1968) electron scattering factor of Si, f(s) = Σ a exp(-b s²), s = k / 2, Å.
_SI_A = np.array([2.1293, 2.5333, 0.8349, 0.3216])
_SI_B = np.array([57.7748, 16.4756, 2.8796, 0.3860])


def si_scattering_factor(k: np.ndarray) -> np.ndarray:
    """Electron scattering factor of Si (Å) at ``k = 1/d`` (1/Å), Doyle-Turner parametrisation."""
    s2 = (np.asarray(k, float) / 2) ** 2
    return (_SI_A[:, None] * np.exp(-_SI_B[:, None] * s2.ravel()[None, :])).sum(axis=0).reshape(np.shape(k))


def si_nanocrystal(diameter_A: float = 30.0, lattice_A: float = SI_LATTICE_A) -> np.ndarray:
    """Atom positions (N, 3), Å, of diamond-cubic Si inside a sphere of ``diameter_A`` about an atom."""
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0],
                      [0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75], [0.75, 0.75, 0.25]])
    n = int(np.ceil(diameter_A / (2 * lattice_A))) + 1
    cells = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    xyz = ((cells + basis[None]) * lattice_A).reshape(-1, 3)
    return xyz[np.linalg.norm(xyz, axis=1) <= diameter_A / 2]


def amorphous_cluster(diameter_A: float = 30.0, density: float = 0.05, bond_A: float = 2.35,
                      seed: int = 0, relax_steps: int = 300) -> np.ndarray:
    """A dense random cluster (N, 3), Å: random sequential addition at 0.9 x bond, then relaxation.

    The relaxation moves atoms down the gradient of a Morse-like pair energy with
    its minimum at ``bond_A`` (cut off at 1.6 x bond), so nearest neighbours settle
    about the bond length.
    """
    rng = np.random.default_rng(seed)
    R = diameter_A / 2
    target = int(round(density * 4 / 3 * np.pi * R**3))
    dmin = 0.9 * bond_A
    pts = np.empty((target, 3))
    n, tries = 0, 0
    while n < target and tries < 200 * target:
        p = rng.uniform(-R, R, 3)
        tries += 1
        if p @ p > R * R:
            continue
        if n and np.min(np.sum((pts[:n] - p) ** 2, axis=1)) < dmin * dmin:
            continue
        pts[n] = p
        n += 1
    pts = pts[:n]
    cut = 1.6 * bond_A
    for _ in range(relax_steps):
        ij = cKDTree(pts).query_pairs(cut, output_type="ndarray")
        d = pts[ij[:, 0]] - pts[ij[:, 1]]
        r = np.linalg.norm(d, axis=1)
        e = np.exp(-2.0 * (r - bond_A))
        f = (4.0 * (e * e - e) / r)[:, None] * d  # -dU/dr of U = (1 - e)² - 1, along i - j
        step = np.zeros_like(pts)
        np.add.at(step, ij[:, 0], f)
        np.add.at(step, ij[:, 1], -f)
        pts += 0.02 * step
        out = np.linalg.norm(pts, axis=1) > R
        pts[out] *= (R / np.linalg.norm(pts[out], axis=1))[:, None]
    return pts


def pair_distances(xyz: np.ndarray) -> np.ndarray:
    """All distances ``r_ij`` with i < j, Å."""
    xyz = np.asarray(xyz, float)
    d = np.sqrt(((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1))
    return d[np.triu_indices(len(xyz), 1)]


def debye_intensity(xyz: np.ndarray, k: np.ndarray, u_rms_A: float = 0.0,
                    scattering_factor=si_scattering_factor) -> np.ndarray:
    """Orientation-averaged intensity I(k) of a cluster (see the module docstring).

    Parameters
    ----------
    xyz : (N, 3) array
        Atom positions, Å.
    k : (M,) array
        Spatial frequencies 1/d, 1/Å (> 0).
    u_rms_A : float
        Rms displacement per axis (Debye-Waller), Å.
    scattering_factor : callable
        f(k) in Å.

    Returns
    -------
    (M,) array, Å² per cluster.
    """
    k = np.asarray(k, float)
    if np.any(k <= 0):
        raise ParameterError("debye_intensity: k must be positive (1/Å)", field="k")
    r = pair_distances(xyz)
    if r.size == 0:
        return scattering_factor(k) ** 2 * len(xyz)
    edges = np.arange(0, r.max() + 2e-4, 1e-4)
    h, _ = np.histogram(r, edges)
    rb = 0.5 * (edges[1:] + edges[:-1])[h > 0]
    h = h[h > 0].astype(float)
    x = 2 * np.pi * k[:, None] * rb[None, :]
    pairs = (np.sin(x) / x) @ h * np.exp(-((2 * np.pi * k) ** 2) * u_rms_A**2)
    return scattering_factor(k) ** 2 * (len(xyz) + 2 * pairs)


def debye_pattern(xyz: np.ndarray, detector_shape: tuple[int, int] = (160, 160), reciprocal_step: float = 0.03,
                  origin: tuple[float, float] | None = None, u_rms_A: float = 0.0, samples: int = 3) -> DataCube:
    """A (1, 1, Qx, Qy) cube of the orientation-averaged pattern, pixel-integrated, calibrated in 1/Å."""
    sx, sy = detector_shape
    o = ((sx - 1) / 2, (sy - 1) / 2) if origin is None else tuple(float(v) for v in origin)
    sub = (np.arange(samples) + 0.5) / samples - 0.5
    i, j, a, b = np.meshgrid(np.arange(sx), np.arange(sy), sub, sub, indexing="ij")
    k = np.hypot(i + a - o[0], j + b - o[1]) * reciprocal_step
    kmax = k.max()
    grid = np.linspace(reciprocal_step * 0.05, kmax + reciprocal_step, 4000)
    prof = debye_intensity(xyz, grid, u_rms_A)
    img = np.interp(k.clip(grid[0]), grid, prof).mean(axis=(2, 3))
    cal = Calibration(reciprocal_step=reciprocal_step, reciprocal_units="1/Å", origin=o)
    return DataCube(img[None, None], cal)
