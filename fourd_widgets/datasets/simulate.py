"""``simulate``: a fast kinematic 4D-STEM simulator with known ground truth.

Each probe position sees at most one crystal grain (optionally strained), an
amorphous fraction and a diffuse background. The pattern is

* one uniform disk per zero-order Laue zone reflection of the grain, radius
  ``alpha / lambda`` (the convergence semi-angle), centred at the strained
  ``g' = F^-T g`` and holding the kinematic intensity ``I_g``;
* the undiffracted disk with whatever is left of the probe;
* Gaussian amorphous rings and an exponential diffuse background about the origin;

all displaced by the descan (origin map), distorted by the elliptic detector
distortion ``D``, masked by the beam stop and, when a dose is given, drawn as
Poisson counts. Intensities are fractions of the incident probe, so a pattern
on an infinite detector without beam stop sums to 1 (like the shared data).

References
----------
Kirkland, E. J. *Advanced Computing in Electron Microscopy*, 2nd ed. (2010).
Spence, J. C. H. & Zuo, J. M. *Electron Microdiffraction*, Plenum (1992), ch. 2 (CBED disk geometry).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.calibration import Calibration, electron_wavelength_A
from ..core.datacube import DataCube
from ..core.errors import ParameterError
from ..kernels.render import disk_profile_integral, poisson_counts, render_patterns
from .crystal import Grain, kinematic_intensity, lattice_basis, orientation_matrix, reflections
from .truth import GroundTruth

__all__ = ["simulate", "AMORPHOUS_RINGS", "BEAM_STOP_DEFAULTS"]

#: Default amorphous rings: (centre 1/Å, Gaussian width 1/Å, relative weight), roughly amorphous Si/C.
AMORPHOUS_RINGS: tuple[tuple[float, float, float], ...] = ((0.32, 0.035, 1.0), (0.56, 0.05, 0.45))
#: Beam stop defaults; radius None means disk radius + 3 px, centre None the mean origin.
BEAM_STOP_DEFAULTS: dict[str, Any] = {"radius_px": None, "arm_width_px": 6.0, "angle_deg": 225.0, "centre": None}

_RADIAL_STEP = 0.05  # px sampling of the radial lookup tables
_G_SUM_MIN = 2.5  # 1/Å: reflections out to here count in the scattered-intensity budget


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}", field=name) from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be a finite number {bound}, got {value!r}", field=name)
    return v


def _shape2(name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in value)
        ok = a == tuple(value)[0] and b == tuple(value)[1]
    except (TypeError, ValueError):
        ok = False
    if not ok or a < minimum or b < minimum:
        raise ParameterError(f"{name} must be two integers >= {minimum}, got {value!r}", field=name)
    return a, b


def _scan_map(name: str, value: Any, scan_shape: tuple[int, int], lo: float | None = None,
              hi: float | None = None) -> np.ndarray:
    """Broadcast a scalar or (Rx, Ry) array to a float map, checking its range."""
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), scan_shape).copy()
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} must be a number or an array of the scan shape {scan_shape}, got shape "
            f"{np.shape(value)}", field=name) from None
    if not np.all(np.isfinite(arr)) or (lo is not None and arr.min() < lo) or (hi is not None and arr.max() > hi):
        raise ParameterError(f"{name} must be finite and within [{lo}, {hi}]", field=name)
    return arr


def _rot2(deg: np.ndarray | float) -> np.ndarray:
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _deformation(strain: Any, scan_shape: tuple[int, int]) -> np.ndarray:
    """(Rx, Ry, 2, 2) deformation gradient from the ``strain`` argument."""
    eye = np.broadcast_to(np.eye(2), scan_shape + (2, 2)).copy()
    if strain is None:
        return eye
    if callable(strain):
        rx, ry = np.meshgrid(np.arange(scan_shape[0]), np.arange(scan_shape[1]), indexing="ij")
        strain = strain(rx, ry)
        if callable(strain):
            raise ParameterError("a strain callable must return a dict of maps or an array of F", field="strain")
        return _deformation(strain, scan_shape)
    if isinstance(strain, Mapping):
        allowed = {"exx", "eyy", "exy", "rotation_deg"}
        unknown = sorted(set(strain) - allowed)
        if unknown:
            raise ParameterError(f"strain has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
                                 field="strain")
        e = {k: _scan_map(f"strain[{k!r}]", strain.get(k, 0.0), scan_shape, -0.5, 0.5) for k in allowed - {"rotation_deg"}}
        rot = _scan_map("strain['rotation_deg']", strain.get("rotation_deg", 0.0), scan_shape, -180, 180)
        U = eye.copy()
        U[..., 0, 0] += e["exx"]
        U[..., 1, 1] += e["eyy"]
        U[..., 0, 1] += e["exy"]
        U[..., 1, 0] += e["exy"]
        return _rot2(rot) @ U
    F = np.asarray(strain, dtype=np.float64)
    if F.shape == (2, 2):
        F = np.broadcast_to(F, scan_shape + (2, 2)).copy()
    if F.shape != scan_shape + (2, 2) or not np.all(np.isfinite(F)) or np.any(np.linalg.det(F) <= 0):
        raise ParameterError(
            "strain must be None, a dict of exx/eyy/exy/rotation_deg maps, or deformation gradients F of shape "
            f"(2, 2) or {scan_shape + (2, 2)} with det F > 0", field="strain")
    return F


def _polar(F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """exx, eyy, exy, rotation_deg from ``F = R(rotation) (I + E)`` (2D polar decomposition)."""
    theta = np.arctan2(F[..., 1, 0] - F[..., 0, 1], F[..., 0, 0] + F[..., 1, 1])
    U = np.swapaxes(_rot2(np.degrees(theta)), -1, -2) @ F
    return U[..., 0, 0] - 1.0, U[..., 1, 1] - 1.0, 0.5 * (U[..., 0, 1] + U[..., 1, 0]), np.degrees(theta)


def _descan(descan: Any, scan_shape: tuple[int, int]) -> np.ndarray:
    """(Rx, Ry, 2) origin shift in px from the ``descan`` argument."""
    if descan is None:
        return np.zeros(scan_shape + (2,))
    arr = np.asarray(descan, dtype=np.float64)
    if arr.shape == (2, 3):
        rx, ry = np.meshgrid(np.arange(scan_shape[0]), np.arange(scan_shape[1]), indexing="ij")
        pos = np.stack([rx, ry, np.ones_like(rx)], -1).astype(np.float64)
        arr = pos @ arr.T
    if arr.shape != scan_shape + (2,) or not np.all(np.isfinite(arr)):
        raise ParameterError(
            "descan must be None, a (2, 3) matrix [[dqx/drx, dqx/dry, qx0], [dqy/drx, dqy/dry, qy0]] in px per "
            f"scan step, or a {scan_shape + (2,)} map of origin shifts in px", field="descan")
    return arr


def _distortion(ellipse: Any) -> tuple[tuple[float, float, float] | None, np.ndarray]:
    if ellipse is None:
        return None, np.eye(2)
    try:
        a, b, th = (float(v) for v in ellipse)
    except (TypeError, ValueError):
        raise ParameterError(f"ellipse must be (a, b, theta_deg), got {ellipse!r}", field="ellipse") from None
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b) and math.isfinite(th)):
        raise ParameterError(f"ellipse must be (a, b, theta_deg) with a, b > 0, got {ellipse!r}", field="ellipse")
    R = _rot2(th)
    return (a, b, th), R @ np.diag([a, b]) @ R.T


def _beam_stop(beam_stop: Any, shape: tuple[int, int], centre: np.ndarray, radius: float) -> np.ndarray | None:
    if beam_stop is False or beam_stop is None:
        return None
    opts = dict(BEAM_STOP_DEFAULTS)
    if isinstance(beam_stop, Mapping):
        unknown = sorted(set(beam_stop) - set(opts))
        if unknown:
            raise ParameterError(
                f"beam_stop has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(opts))}", field="beam_stop")
        opts.update(beam_stop)
    elif beam_stop is not True:
        raise ParameterError(f"beam_stop must be False, True or a dict of {sorted(opts)}", field="beam_stop")
    r = radius + 3.0 if opts["radius_px"] is None else _positive("beam_stop radius_px", opts["radius_px"])
    w = _positive("beam_stop arm_width_px", opts["arm_width_px"], allow_zero=True)
    c = centre if opts["centre"] is None else np.asarray(opts["centre"], dtype=np.float64)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dx, dy = i - c[0], j - c[1]
    t = math.radians(float(opts["angle_deg"]))
    along = dx * math.cos(t) + dy * math.sin(t)
    across = -dx * math.sin(t) + dy * math.cos(t)
    return (dx * dx + dy * dy <= r * r) | ((along >= 0) & (np.abs(across) <= w / 2))


def _radial_tables(r_max: float, dk: float, rings: Sequence[Sequence[float]], decay_invA: float) -> np.ndarray:
    """(2, L) unit-integral radial profiles (per px^2): amorphous rings, diffuse background."""
    r = np.arange(0.0, r_max + 2.0, _RADIAL_STEP)
    fine = np.linspace(0.0, r_max * 4 + 50.0, 200001)
    ring = np.zeros_like(r)
    ring_fine = np.zeros_like(fine)
    for k0, width, weight in rings:
        k0, width = k0 / dk, width / dk
        ring += weight * np.exp(-0.5 * ((r - k0) / width) ** 2)
        ring_fine += weight * np.exp(-0.5 * ((fine - k0) / width) ** 2)
    norm = np.trapezoid(ring_fine * 2 * np.pi * fine, fine)
    ring = ring / norm if norm > 0 else ring
    rb = decay_invA / dk
    bg = np.exp(-r / rb) / (2 * np.pi * rb * rb)
    return np.stack([ring, bg])


def _voronoi(scan_shape: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """(Rx, Ry) label map of n random Voronoi cells."""
    centres = rng.uniform(0, 1, (n, 2)) * np.asarray(scan_shape)
    rx, ry = np.meshgrid(np.arange(scan_shape[0]), np.arange(scan_shape[1]), indexing="ij")
    d = (rx[..., None] - centres[:, 0]) ** 2 + (ry[..., None] - centres[:, 1]) ** 2
    return np.argmin(d, axis=-1).astype(np.int32)


def simulate(
    scan_shape: Sequence[int] = (64, 64),
    detector_shape: Sequence[int] = (128, 128),
    *,
    grains: Sequence[Grain] | Grain | None = None,
    grain_map: np.ndarray | None = None,
    strain: Any = None,
    amorphous: float | np.ndarray | None = None,
    energy_eV: float = 300e3,
    convergence_semiangle_mrad: float = 2.0,
    reciprocal_step: float = 0.0156,
    real_step: float = 1.0,
    origin: Sequence[float] | None = None,
    dose: float | None = None,
    descan: Any = None,
    ellipse: Sequence[float] | None = None,
    beam_stop: bool | Mapping[str, Any] = False,
    background: float = 0.0,
    background_decay_invA: float = 0.25,
    amorphous_strength: float = 0.2,
    amorphous_rings: Sequence[Sequence[float]] = AMORPHOUS_RINGS,
    disk_edge_px: float = 0.6,
    max_bragg_fraction: float = 0.8,
    seed: int = 0,
    dtype: Any = None,
    workers: int | None = None,
) -> tuple[DataCube, GroundTruth]:
    """Simulate a kinematic 4D-STEM scan and return it with its ground truth.

    Parameters
    ----------
    scan_shape : (2,) ints
        (Rx, Ry) probe positions.
    detector_shape : (2,) ints
        (Qx, Qy) detector pixels.
    grains : Grain or sequence of Grain, optional
        Crystals in the scene. Default: one Si [001] grain, 50 Å thick. ``[]`` for none.
    grain_map : (Rx, Ry) int array, optional
        Index into ``grains`` per position, -1 for no crystal. Default: all 0
        for one grain, a random Voronoi tessellation (from ``seed``) for several.
    strain : dict, array or callable, optional
        ``{"exx", "eyy", "exy", "rotation_deg"}`` numbers or (Rx, Ry) maps
        (``F = R(rotation) (I + E)``), or deformation gradients F of shape
        (2, 2) or (Rx, Ry, 2, 2), in the scan frame; or ``f(rx, ry)`` of the
        (Rx, Ry) index grids returning either. Reciprocal vectors follow
        ``g' = F^-T g``.
    amorphous : float or (Rx, Ry) array in [0, 1], optional
        Amorphous fraction; it scatters ``amorphous_strength * fraction`` of
        the probe into ``amorphous_rings``.
    energy_eV, convergence_semiangle_mrad : float
        Beam energy and probe convergence semi-angle (sets the disk radius
        ``alpha / (1000 lambda dk)`` px).
    reciprocal_step : float
        Detector pixel size dk, 1/Å.
    real_step : float
        Scan step, Å.
    origin : (2,) floats, optional
        Undiffracted beam position (qx, qy) px before descan. Default: detector centre (Qx/2, Qy/2).
    dose : float, optional
        Electrons per probe position. When set, the data are Poisson counts
        of ``dose *`` the expected intensities.
    descan : (2, 3) array or (Rx, Ry, 2) array, optional
        Origin shift: a linear drift ``shift = M @ (rx, ry, 1)`` in px, or a map of shifts.
    ellipse : (a, b, theta_deg), optional
        Elliptic detector distortion: a ring of radius r becomes an ellipse with
        semi-axes ``a r`` (along theta, counter-clockwise from +qx) and ``b r``.
    beam_stop : bool or dict
        A dark disk over the mean origin and an arm to the detector edge; dict
        keys ``radius_px``, ``arm_width_px``, ``angle_deg``, ``centre``.
    background : float in [0, 1)
        Fraction of the probe in a diffuse background ``exp(-k / background_decay_invA)``.
    amorphous_strength : float in [0, 1]
        Fraction of the probe scattered by a fully amorphous position.
    amorphous_rings : sequence of (k 1/Å, width 1/Å, weight)
        Gaussian rings of the amorphous scattering.
    disk_edge_px : float
        Gaussian width of the disk edge (anti-aliasing), px. 0.6 px keeps the pixel-sampled
        disk's centroid within ~1e-4 px and its integral within ~1e-4 of the continuous disk.
    max_bragg_fraction : float in (0, 1)
        A grain's kinematic Bragg intensities are scaled down so that they sum to at most this.
    seed : int
        Seeds the noise and the default Voronoi map; same seed, same data.
    dtype : numpy dtype, optional
        float32 (default without dose) or float64; with dose uint16 (default,
        uint32 if the counts need it), uint32 or float32.
    workers : int, optional
        Threads for rendering (default: all cores). The result does not depend on it.

    Returns
    -------
    cube : DataCube
        (Rx, Ry, Qx, Qy) data with calibration (steps, energy, convergence, mean origin).
    truth : GroundTruth

    Examples
    --------
    >>> cube, truth = simulate((3, 4), (64, 64), reciprocal_step=0.03)
    >>> cube.shape, cube.dtype.name
    ((3, 4, 64, 64), 'float32')
    >>> round(truth.disk_radius_px, 3)
    3.386
    >>> truth.peaks_at(0, 0)["hkl"][0].tolist()   # row 0 is the central beam
    [0, 0, 0]
    """
    scan_shape = _shape2("scan_shape", scan_shape)
    detector_shape = _shape2("detector_shape", detector_shape, minimum=4)
    energy_eV = _positive("energy_eV", energy_eV)
    alpha = _positive("convergence_semiangle_mrad", convergence_semiangle_mrad)
    dk = _positive("reciprocal_step", reciprocal_step)
    real_step = _positive("real_step", real_step)
    edge = _positive("disk_edge_px", disk_edge_px, allow_zero=True)
    background = _positive("background", background, allow_zero=True)
    amorphous_strength = _positive("amorphous_strength", amorphous_strength, allow_zero=True)
    if background + amorphous_strength > 1:
        raise ParameterError(
            f"background + amorphous_strength must be <= 1 (fractions of the probe), got "
            f"{background} + {amorphous_strength}", field="background")
    max_bragg = _positive("max_bragg_fraction", max_bragg_fraction)
    if max_bragg >= 1:
        raise ParameterError(f"max_bragg_fraction must be in (0, 1), got {max_bragg_fraction!r}",
                             field="max_bragg_fraction")
    decay = _positive("background_decay_invA", background_decay_invA)
    if dose is not None:
        dose = _positive("dose", dose)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    allowed_dtypes = ("float32", "float64") if dose is None else ("uint16", "uint32", "float32", "float64")
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in allowed_dtypes:
            raise ParameterError(f"dtype must be one of {', '.join(allowed_dtypes)} "
                                 f"({'with' if dose else 'without'} dose), got {dtype!r}", field="dtype")
    try:
        rings = tuple((float(k), float(w), float(a)) for k, w, a in amorphous_rings)
    except (TypeError, ValueError):
        raise ParameterError("amorphous_rings must be a sequence of (k_invA, width_invA, weight)",
                             field="amorphous_rings") from None
    if any(not (k >= 0 and w > 0 and a >= 0) for k, w, a in rings):
        raise ParameterError("amorphous_rings need k >= 0, width > 0 and weight >= 0", field="amorphous_rings")

    Rx, Ry = scan_shape
    Qx, Qy = detector_shape
    P = Rx * Ry
    lam = electron_wavelength_A(energy_eV)
    radius = alpha / (1000.0 * lam * dk)
    ell, D = _distortion(ellipse)
    Dinv = np.linalg.inv(D)
    detD = float(np.linalg.det(D))
    sv = np.linalg.svd(D, compute_uv=False)
    extent = (radius + 6.0 * edge + 1.0) * float(sv.max())

    # --- grains, map and strain ---------------------------------------
    if grains is None:
        grains = (Grain.preset("Si"),)
    elif isinstance(grains, Grain):
        grains = (grains,)
    grains = tuple(grains)
    if any(not isinstance(g, Grain) for g in grains):
        raise ParameterError("grains must be Grain objects (see Grain.preset)", field="grains")
    if grain_map is None:
        if len(grains) <= 1:
            gmap = np.full(scan_shape, 0 if grains else -1, dtype=np.int32)
        else:
            gmap = _voronoi(scan_shape, len(grains), np.random.default_rng(seed))
    else:
        gmap = np.asarray(grain_map)
        if gmap.shape != scan_shape or gmap.dtype.kind not in "iu" or gmap.min() < -1 or gmap.max() >= len(grains):
            raise ParameterError(
                f"grain_map must be an integer array of shape {scan_shape} with values in -1..{len(grains) - 1}",
                field="grain_map")
        gmap = gmap.astype(np.int32)
    F = _deformation(strain, scan_shape)
    FinvT = np.swapaxes(np.linalg.inv(F), -1, -2)
    amorph = _scan_map("amorphous", 0.0 if amorphous is None else amorphous, scan_shape, 0.0, 1.0)

    # --- origin and descan --------------------------------------------
    o0 = np.array([Qx / 2.0, Qy / 2.0]) if origin is None else np.asarray(origin, dtype=np.float64)
    if o0.shape != (2,) or not np.all(np.isfinite(o0)):
        raise ParameterError(f"origin must be (qx, qy) in px, got {origin!r}", field="origin")
    origin_map = o0 + _descan(descan, scan_shape)
    mean_origin = origin_map.reshape(-1, 2).mean(0)

    # --- intensity budget per position ---------------------------------
    ring_I = (amorphous_strength * amorph).ravel() if rings else np.zeros(P)
    bg_I = np.full(P, background)
    left = 1.0 - ring_I - bg_I  # what the crystal (and the central beam) share

    corners = np.array([[0, 0], [Qx - 1, 0], [0, Qy - 1], [Qx - 1, Qy - 1]], dtype=np.float64)
    far = np.linalg.norm((corners[None] - origin_map.reshape(-1, 1, 2)), axis=-1).max()
    r_max = far / float(sv.min()) + radius + 6 * edge  # undistorted px
    # a reference g lands within r_max after strain only if |g| <= r_max * largest stretch of F
    g_render = r_max * dk * float(np.linalg.svd(F, compute_uv=False).max()) * 1.01
    flat_origin = origin_map.reshape(P, 2)
    flat_FinvT = FinvT.reshape(P, 2, 2)
    flat_gmap = gmap.ravel()

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("pos", "qx", "qy", "I", "hkl", "grain")}
    bragg_sum = np.zeros(P)
    g1_ref = np.full((len(grains), 2), np.nan)
    g2_ref = np.full((len(grains), 2), np.nan)
    g1 = np.full((P, 2), np.nan)
    g2 = np.full((P, 2), np.nan)
    R_all = np.zeros((len(grains), 3, 3))
    for gi, grain in enumerate(grains):
        R_all[gi] = orientation_matrix(grain)
        refl = reflections(grain, max(g_render, _G_SUM_MIN), energy_eV, lam)
        g1_ref[gi], g2_ref[gi] = lattice_basis(refl["g"])
        pos = np.flatnonzero(flat_gmap == gi)
        if pos.size == 0:
            continue
        scale = min(1.0, max_bragg / max(float(kinematic_intensity(refl["F2"], refl["g"], grain, lam, refl["volume"]).sum()), 1e-300))
        gs = np.einsum("pij,nj->pni", flat_FinvT[pos], refl["g"])  # (Pg, n, 2) strained, 1/Å
        I = kinematic_intensity(refl["F2"], gs, grain, lam, refl["volume"]) * scale
        bragg_sum[pos] = I.sum(1)
        I *= left[pos, None]
        q = flat_origin[pos, None, :] + gs @ D.T / dk
        vis = ((q[..., 0] > -extent) & (q[..., 0] < Qx - 1 + extent)
               & (q[..., 1] > -extent) & (q[..., 1] < Qy - 1 + extent) & (I > 0))
        pi, ni = np.nonzero(vis)
        cols["pos"].append(pos[pi])
        cols["qx"].append(q[pi, ni, 0])
        cols["qy"].append(q[pi, ni, 1])
        cols["I"].append(I[pi, ni])
        cols["hkl"].append(refl["hkl"][ni])
        cols["grain"].append(np.full(pi.size, gi, dtype=np.int32))
        g1[pos] = flat_FinvT[pos] @ g1_ref[gi]
        g2[pos] = flat_FinvT[pos] @ g2_ref[gi]
    # central beam first at each position (stable sort keeps it first)
    cols["pos"].insert(0, np.arange(P))
    cols["qx"].insert(0, flat_origin[:, 0].copy())
    cols["qy"].insert(0, flat_origin[:, 1].copy())
    cols["I"].insert(0, left * (1.0 - bragg_sum))
    cols["hkl"].insert(0, np.zeros((P, 3), dtype=np.int64))
    cols["grain"].insert(0, np.full(P, -1, dtype=np.int32))
    table = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.argsort(table["pos"], kind="stable")
    table = {k: v[order] for k, v in table.items()}
    offsets = np.concatenate([[0], np.cumsum(np.bincount(table["pos"], minlength=P))]).astype(np.int64)

    # --- render ---------------------------------------------------------
    value = table["I"] / (detD * disk_profile_integral(radius, edge))
    tables = _radial_tables(r_max, dk, rings, decay)
    weights = np.stack([ring_I, bg_I], -1) / detD
    stop = _beam_stop(beam_stop, detector_shape, mean_origin, radius)
    transmission = np.ones(detector_shape) if stop is None else (~stop).astype(np.float64)
    expected = np.empty((Rx, Ry, Qx, Qy), dtype=np.float64 if dtype is not None and dtype.name == "float64"
                        else np.float32)

    def render_row(rx: int) -> None:
        p0, p1 = rx * Ry, (rx + 1) * Ry
        a, b = offsets[p0], offsets[p1]
        buf = np.zeros((Ry, Qx, Qy))
        render_patterns(buf, flat_origin[p0:p1], offsets[p0:p1 + 1] - a, table["qx"][a:b], table["qy"][a:b],
                        value[a:b], radius, edge, Dinv, extent, weights[p0:p1], tables, _RADIAL_STEP,
                        transmission)
        expected[rx] = buf

    n_workers = max(1, min(workers or os.cpu_count() or 1, Rx))
    render_row(0)  # compiles (or loads from cache) once, outside the pool
    with ThreadPoolExecutor(n_workers) as pool:
        list(pool.map(render_row, range(1, Rx)))

    if dose is None:
        data = expected
    else:
        peak = float(expected.max()) * dose
        if dtype is None:
            dtype = np.dtype(np.uint16 if peak + 10 * math.sqrt(peak) + 10 < 65535 else np.uint32)
        data = np.empty(expected.shape, dtype=dtype)
        ceiling = float(np.iinfo(dtype).max) if dtype.kind == "u" else math.inf
        row_seeds = [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1))
                     for c in np.random.SeedSequence(int(seed)).spawn(Rx)]

        def noise_row(rx: int) -> None:
            poisson_counts(expected[rx], dose, row_seeds[rx], data[rx], ceiling)

        noise_row(0)
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(noise_row, range(1, Rx)))
        del expected

    exx, eyy, exy, rot = _polar(F)
    crystal = gmap >= 0
    for arr in (exx, eyy, exy, rot):
        arr[~crystal] = np.nan
    g1 = g1.reshape(Rx, Ry, 2)
    g2 = g2.reshape(Rx, Ry, 2)
    truth = GroundTruth(
        scan_shape=scan_shape, detector_shape=detector_shape, reciprocal_step=dk, real_step=real_step,
        energy_eV=energy_eV, wavelength_A=lam, convergence_semiangle_mrad=alpha,
        origin=(float(mean_origin[0]), float(mean_origin[1])), origin_map=origin_map,
        disk_radius_px=radius, disk_edge_px=edge, ellipse=ell, distortion=D,
        grains=grains, grain_map=gmap, orientation_matrices=R_all,
        grain_rotation_deg=np.array([g.rotation_deg for g in grains]),
        g1_ref_invA=g1_ref, g2_ref_invA=g2_ref, deformation=F,
        strain_exx=exx, strain_eyy=eyy, strain_exy=exy, rotation_deg=rot,
        g1_invA=g1, g2_invA=g2, g1_px=g1 @ D.T / dk, g2_px=g2 @ D.T / dk,
        peak_offsets=offsets, peak_qx=table["qx"], peak_qy=table["qy"], peak_intensity=table["I"],
        peak_hkl=table["hkl"], peak_grain=table["grain"], amorphous=amorph,
        amorphous_intensity=ring_I.reshape(scan_shape), background_intensity=bg_I.reshape(scan_shape),
        beam_stop_mask=stop, dose=dose, seed=int(seed),
    )
    cal = Calibration(
        real_step=real_step, real_units="Å", reciprocal_step=dk, reciprocal_units="1/Å", energy_eV=energy_eV,
        convergence_semiangle_mrad=alpha, origin=(float(mean_origin[0]), float(mean_origin[1])),
    )
    meta = {"simulator": "fourd_widgets.datasets.simulate (kinematic)", "seed": int(seed), "dose": dose,
            "grains": [g.name for g in grains], "units": "counts" if dose else "fraction of incident probe"}
    return DataCube(data, cal, metadata=meta), truth
