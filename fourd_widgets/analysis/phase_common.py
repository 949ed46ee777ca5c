"""What DPC, parallax and SSB share: the bright-field disk, the scan rotation, one pass of moments, a score.

Conventions are those of :class:`~fourd_widgets.core.calibration.Calibration`
(a scan-frame vector ``v`` appears on the detector as ``R(rotation_deg) S v``) and
of :mod:`.aberrations` (``χ``, Δf = −C10).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..core.calibration import Calibration
from ..core.errors import CalibrationError, MissingCalibrationError, ShapeError
from ..core.params import Params, record_from_dict
from ..engine.job import ImageJob
from ..engine.run import default_workers, run_job
from ..kernels.phase import curl_sums, moments_workspace, pattern_moments
from .calibration import CenterOfMassJob, measure_qr_rotation, moment_weights, scan_frame_matrix

__all__ = ["BrightField", "bright_field", "center_of_mass", "PatternMomentsJob", "resolve_rotation", "relative_curl",
           "phase_agreement", "truth_on_scan", "tukey_window", "measure_shifts", "shift_images", "splat",
           "write_fields", "read_fields", "step_engine"]

#: Blocks per thread of the one-read moments pass over an in-memory cube. More blocks would let a
#: running thread take over the work of one the scheduler holds back, but each block costs a hand-over
#: (a thread woken, a result merged on the caller): on the shared 2-core machine (load 4) one block
#: per thread took 8.5 ms a DPC call of 151 MB, two 8.8, four 9.1, eight 9.7 (medians of 40).
SHARES_PER_THREAD = 1
#: Largest block of that pass (bytes): progress and cancel still come every ~10 ms of reading on a big cube.
MOMENTS_BLOCK_BYTES = 256 * 2**20
#: Engine options the phase steps pass on to their pass over the cube.
_STEP_ENGINE = ("scheduler", "workers", "progress", "cancel", "chunk_bytes")


@dataclass(frozen=True)
class BrightField:
    """The bright-field disk on the detector.

    Attributes
    ----------
    origin : (2,) tuple of float
        Pixel of k = 0 (the mean origin).
    radius_px : float
        Disk radius, px (``α / (λ dk)``).
    step_invA : float
        Detector pixel, 1/Å.
    wavelength_A : float
    k_alpha : float
        Aperture radius, 1/Å.
    """

    origin: tuple[float, float]
    radius_px: float
    step_invA: float
    wavelength_A: float
    k_alpha: float


def bright_field(cal: Calibration, detector_shape: tuple[int, int], step: str) -> BrightField:
    """The calibrated bright-field disk; refuses a missing convergence angle or a disk that overhangs the detector."""
    if cal.convergence_semiangle_mrad is None:
        raise MissingCalibrationError(
            "convergence_semiangle_mrad", step,
            "Set the probe's convergence semi-angle with cube.calibration = "
            "cube.calibration.replace(convergence_semiangle_mrad=...) (from the microscope, or measure the "
            "bright-field disk radius in px and multiply by the detector step in mrad).")
    cal.require("energy_eV", step)
    cal.require("reciprocal_step", step)
    origin = cal.origin
    if origin is None and cal.origin_map is not None:
        origin = tuple(np.nanmean(cal.origin_map.reshape(-1, 2), axis=0).tolist())
    if origin is None:
        raise MissingCalibrationError("origin", step, "Measure the unscattered beam's position (recipe step "
                                      "'origin', fw.analysis.measure_origin) or set calibration.origin.")
    lam = cal.wavelength_A
    dk = cal.reciprocal_step_in("1/Å")
    r = cal.convergence_semiangle_px
    Qx, Qy = detector_shape
    ox, oy = origin
    if ox - r < -0.5 or oy - r < -0.5 or ox + r > Qx - 0.5 or oy + r > Qy - 0.5:
        raise ShapeError(
            f"{step}: the bright-field disk (radius {r:.1f} px about ({ox:.1f}, {oy:.1f})) does not fit the "
            f"{Qx}x{Qy} detector. Check convergence_semiangle_mrad and reciprocal_step in the calibration, "
            "or record with a shorter camera length so the whole disk is on the detector.")
    return BrightField(origin=(float(ox), float(oy)), radius_px=float(r), step_invA=dk, wavelength_A=lam,
                       k_alpha=cal.convergence_semiangle_mrad * 1e-3 / lam)


def _row_runs(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lo, hi)`` with ``weights[i] == 1`` exactly on ``lo[i] <= j < hi[i]`` and 0 elsewhere, else None."""
    w = np.asarray(weights)
    if w.ndim != 2:
        return None
    if np.all(w == 1):  # the whole detector, DPC's default
        return np.zeros(w.shape[0], np.int64), np.full(w.shape[0], w.shape[1], np.int64)
    if not np.all((w == 0) | (w == 1)):
        return None
    on = w == 1
    Qy = w.shape[1]
    any_on = on.any(axis=1)
    lo = np.where(any_on, on.argmax(axis=1), 0).astype(np.int64)
    hi = np.where(any_on, Qy - on[:, ::-1].argmax(axis=1), 0).astype(np.int64)
    if int(on.sum()) != int(np.sum(hi - lo)):  # a row with a gap: not one run
        return None
    return lo, hi


class PatternMomentsJob(ImageJob):
    """``(Σ I, Σ qx I, Σ qy I)`` of every pattern over a row-run mask, in one read of the data's own dtype.

    Integer counts are summed exactly, with no float copy
    (:func:`fourd_widgets.kernels.phase.pattern_moments`).
    """

    name = "center of mass"
    item_shape = (3,)

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo, self.hi = lo, hi

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        if not (block.dtype.isnative and block.dtype.kind in "iuf") or block.dtype == np.float16:
            block = block.astype(np.float32)  # (float16: numba has no arithmetic for it)
        out = np.empty(block.shape[:2] + (3,))
        work = moments_workspace(block.shape[2:], block.dtype)
        if block.flags.c_contiguous:
            pattern_moments(block, self.lo, self.hi, work, out)
        else:  # each scan row of a block is contiguous when the patterns are
            for a in range(block.shape[0]):
                row = block[a:a + 1]
                if not row.flags.c_contiguous:
                    row = np.ascontiguousarray(row)
                pattern_moments(row, self.lo, self.hi, work, out[a:a + 1])
        return out


def center_of_mass(cube: Any, weights: np.ndarray, **engine: Any) -> np.ndarray:
    """Center of mass ``(Rx, Ry, 2)`` in detector px from the calibrated origin (descan removed).

    A 0/1 mask that is one run of pixels per row (the whole detector, a disk) is read
    once by :class:`PatternMomentsJob`; other weights take one float32 GEMM per block
    (:class:`~fourd_widgets.analysis.calibration.CenterOfMassJob`).
    The origin is ``calibration.origin_map`` per position when set, else
    ``calibration.origin``, else the mean center of mass of the scan.
    """
    runs = _row_runs(weights)
    if runs is not None:
        if engine.get("chunk_bytes") is None and getattr(cube, "in_memory", False) and engine.get("scheduler") in (
                None, "threads"):
            # equal shares for the threads: the pass is one read, so a large last block left to
            # one thread (64 MB blocks of a 75 MB cube: 56 rows and 8) would set its time
            Rx, Ry = cube.scan_shape
            row = Ry * cube.pattern_nbytes
            n = max(SHARES_PER_THREAD * (engine.get("workers") or default_workers()),
                    math.ceil(Rx * row / MOMENTS_BLOCK_BYTES))
            engine = {**engine, "chunk_bytes": max(row, math.ceil(Rx / n) * row)}
        m = run_job(cube, PatternMomentsJob(*runs), **engine)
    else:
        m = run_job(cube, CenterOfMassJob(moment_weights(weights).astype(np.float32)), **engine)
    with np.errstate(divide="ignore", invalid="ignore"):
        com = m[..., 1:] / m[..., :1]
    cal = cube.calibration
    if cal.origin_map is not None:
        return com - cal.origin_map
    if cal.origin is not None:
        return com - np.asarray(cal.origin)
    return com - np.nanmean(com.reshape(-1, 2), axis=0)


def tukey_window(n: int, frac: float = 0.25) -> np.ndarray:
    """Tukey window: flat middle, cosine edges over ``frac`` of each side."""
    w = np.ones(n)
    m = max(1, int(round(frac * n)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    w[:m], w[n - m:] = ramp, ramp[::-1]
    return w


def measure_shifts(images: np.ndarray, reference: np.ndarray | None = None, upsample: int = 10, smooth_px: float = 0.0,
                   members: np.ndarray | None = None) -> np.ndarray:
    """Shift ``d`` of each image against the reference, ``image(R) ≈ reference(R − d)``, in pixels.

    Parameters
    ----------
    images : (N, Rx, Ry) array
    reference : (Rx, Ry) array, optional
        None: the mean of the ``members`` images, leaving each image out of its own
        reference (its noise would otherwise pull its peak to zero shift).
    upsample : int
        Peak refinement by a matrix DFT on a ±1.5 px patch, ``1/upsample`` px apart.
    smooth_px : float
        Gaussian low-pass of the cross-correlation (rms, px): lifts the peak above
        the noise, which is white while the image's spectrum is not.
    members : (N,) bool array, optional
        Images averaged into the reference when ``reference`` is None (default all).

    Returns
    -------
    (N, 2) array

    Examples
    --------
    >>> x, y = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    >>> ref = np.exp(-((x - 15) ** 2 + (y - 16) ** 2) / 8)
    >>> img = np.exp(-((x - 17.3) ** 2 + (y - 14.6) ** 2) / 8)
    >>> np.round(measure_shifts(img[None], ref), 1).tolist()
    [[2.3, -1.4]]
    """
    N, Rx, Ry = images.shape
    w = tukey_window(Rx)[:, None] * tukey_window(Ry)[None, :]
    a = (images - images.mean(axis=(1, 2), keepdims=True)) * w
    Fa = sfft.fft2(a)
    if reference is None:
        m = np.ones(N, bool) if members is None else np.asarray(members, bool)
        total = Fa[m].sum(axis=0)
        count = m.sum() - m.astype(float)
        Fb = (total[None] - m[:, None, None] * Fa) / np.maximum(count, 1)[:, None, None]
        X = Fa * np.conj(Fb)
    else:
        b = (reference - reference.mean()) * w
        X = Fa * np.conj(sfft.fft2(b))[None]
    if smooth_px > 0:
        f2 = sfft.fftfreq(Rx)[:, None] ** 2 + sfft.fftfreq(Ry)[None, :] ** 2
        X *= np.exp(-2 * np.pi ** 2 * smooth_px ** 2 * f2)[None]
    c = sfft.ifft2(X).real
    flat = c.reshape(N, -1).argmax(axis=1)
    px, py = np.unravel_index(flat, (Rx, Ry))
    px = np.where(px > Rx // 2, px - Rx, px).astype(float)
    py = np.where(py > Ry // 2, py - Ry, py).astype(float)
    if upsample <= 1:
        return np.stack([px, py], -1)
    offs = np.arange(-1.5, 1.5 + 1e-9, 1.0 / upsample)
    fx = sfft.fftfreq(Rx)
    fy = sfft.fftfreq(Ry)
    kx = np.exp(2j * np.pi * (px[:, None] + offs[None, :])[:, :, None] * fx[None, None, :])  # (N, U, Rx)
    ky = np.exp(2j * np.pi * (py[:, None] + offs[None, :])[:, :, None] * fy[None, None, :])  # (N, U, Ry)
    patch = np.matmul(np.matmul(kx, X), ky.transpose(0, 2, 1)).real  # batched GEMMs, (N, U, U)
    U = len(offs)
    best = patch.reshape(N, -1).argmax(axis=1)
    bi, bj = np.unravel_index(best, (U, U))
    return np.stack([px + offs[bi], py + offs[bj]], -1)


def shift_images(images: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Images moved by ``−d`` (Fourier shift), so that ``image(R) = f(R − d)`` becomes ``f``."""
    N, Rx, Ry = images.shape
    fx = sfft.fftfreq(Rx)[None, :, None]
    fy = sfft.fftfreq(Ry)[None, None, :]
    ramp = np.exp(2j * np.pi * (fx * d[:, 0, None, None] + fy * d[:, 1, None, None]))
    return sfft.ifft2(sfft.fft2(images) * ramp).real


def splat(images: np.ndarray, d: np.ndarray, up: int, kernel_px: float) -> np.ndarray:
    """Samples ``images[n](R)`` placed at ``up (R − d_n)`` on a periodic fine grid, bilinear, Gaussian-smoothed."""
    N, Rx, Ry = images.shape
    X, Y = np.meshgrid(np.arange(Rx, dtype=float), np.arange(Ry, dtype=float), indexing="ij")
    px = ((X[None] - d[:, 0, None, None]) * up).ravel()
    py = ((Y[None] - d[:, 1, None, None]) * up).ravel()
    vals = images.ravel()
    Mx, My = Rx * up, Ry * up
    x0, y0 = np.floor(px), np.floor(py)
    fx, fy = px - x0, py - y0
    acc = np.zeros(Mx * My)
    wsum = np.zeros(Mx * My)
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            idx = ((x0 + dx).astype(int) % Mx) * My + ((y0 + dy).astype(int) % My)
            w = wx * wy
            acc += np.bincount(idx, weights=w * vals, minlength=Mx * My)
            wsum += np.bincount(idx, weights=w, minlength=Mx * My)
    acc = ndimage.gaussian_filter(acc.reshape(Mx, My), kernel_px, mode="wrap")
    wsum = ndimage.gaussian_filter(wsum.reshape(Mx, My), kernel_px, mode="wrap")
    return acc / np.maximum(wsum, 1e-3 * wsum.max())


def relative_curl(field: np.ndarray) -> float:
    """Rms curl over rms divergence of a scan-frame vector field ``(Rx, Ry, 2)``."""
    u, v = field[..., 0], field[..., 1]
    ok = np.isfinite(u) & np.isfinite(v)
    u, v = np.where(ok, u, 0.0), np.where(ok, v, 0.0)
    dudx, dudy = np.gradient(u)
    dvdx, dvdy = np.gradient(v)
    curl, div = dvdx - dudy, dudx + dvdy
    return float(np.sqrt(np.mean(curl[ok] ** 2) / max(np.mean(div[ok] ** 2), 1e-300)))


def _curl_forms(com: np.ndarray) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    """Per flip, the 2x2 forms ``(A, D)`` with ``Σ curl² = vᵀAv`` and ``Σ div² = vᵀDv``, ``v = (cos φ, sin φ)``.

    The curl and divergence of ``scan_frame_matrix(φ, flip) @ c`` are ``cos φ a + sin φ b``
    for two fixed fields ``a, b`` per flip, combinations of the divergence ``s``, the curl
    ``t`` and the two shears ``u, w`` of ``c`` itself (central differences as
    ``np.gradient``), summed over the positions where ``c`` is finite: six sums in all.
    """
    ss, tt, st, uu, ww, uw = curl_sums(np.ascontiguousarray(com, dtype=np.float64))
    # no flip: curl = cos φ t - sin φ s, div = cos φ s + sin φ t; flip: curl = cos φ u + sin φ w,
    # div = cos φ w - sin φ u
    return {False: (np.array([[tt, -st], [-st, ss]]), np.array([[ss, st], [st, tt]])),
            True: (np.array([[uu, uw], [uw, ww]]), np.array([[ww, -uw], [-uw, uu]]))}


def _curl_minimum(com: np.ndarray, forms: dict | None = None) -> tuple[float, bool, float]:
    """Rotation (mod 180°), flip and relative curl of the least-curl scan frame of a CoM field ``(Rx, Ry, 2)``.

    The curl and divergence of ``scan_frame_matrix(φ, flip) @ c`` are ``cos φ a + sin φ b``
    for two fixed fields ``a, b`` per flip (combinations of the four derivatives of ``c``),
    so their mean squares are 2x2 quadratic forms in ``(cos φ, sin φ)`` (:func:`_curl_forms`)
    and the least-curl angle is the smallest eigenvector; no search, no record (what
    :func:`~fourd_widgets.analysis.calibration.measure_qr_rotation` measures, without its
    180° choice, which a mod-180° comparison does not need).

    >>> rx, ry = np.meshgrid(np.arange(24.0), np.arange(24.0), indexing="ij")
    >>> g = np.stack(np.gradient(np.exp(-((rx - 9) ** 2 + (ry - 13) ** 2) / 8)), -1)
    >>> c = g @ scan_frame_matrix(25.0, True)  # the inverse of the (orthogonal) scan-frame matrix
    >>> deg, flip, curl = _curl_minimum(c)
    >>> round(deg % 180.0, 6), flip, curl < 1e-6
    (25.0, True, True)
    """
    forms = _curl_forms(com) if forms is None else forms
    best: tuple[float, bool, float] | None = None
    for flip in (False, True):
        A, D = forms[flip]
        evals, evecs = np.linalg.eigh(A)
        v = evecs[:, 0]
        div2 = float(v @ D @ v)
        curl = math.sqrt(max(evals[0], 0.0) / max(div2, 1e-300))
        deg = math.degrees(math.atan2(v[1], v[0]))
        if best is None or curl < best[2]:
            best = (deg, flip, curl)
    return best  # type: ignore[return-value]


def _frame_curl(forms: dict, rotation_deg: float, flip: bool) -> float:
    """:func:`relative_curl` of ``scan_frame_matrix(rotation_deg, flip) @ c`` from :func:`_curl_forms`."""
    A, D = forms[bool(flip)]
    v = np.array([math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))])
    return math.sqrt(max(float(v @ A @ v), 0.0) / max(float(v @ D @ v), 1e-300))


def resolve_rotation(com: np.ndarray, cal: Calibration, mode: str, rotation_deg: float, flip: bool,
                     tolerance_deg: float, step: str) -> tuple[float, bool]:
    """The scan rotation and flip to use: the calibration's (checked against the CoM curl), measured, or manual.

    ``mode`` 'calibration' refuses a calibration that the centre-of-mass field
    contradicts: its rotation (mod 180°) or flip differs from the curl minimum by
    more than ``tolerance_deg`` while leaving at least twice the curl, which is
    what an uncalibrated scan (rotation left at 0°) looks like.
    """
    if mode == "manual":
        return float(rotation_deg), bool(flip)
    if min(com.shape[:2]) < 3:
        if mode == "curl":
            raise ShapeError(f"{step}: measuring the scan rotation needs at least 3x3 positions")
        return cal.rotation_deg, cal.flip
    if mode == "curl":
        found = measure_qr_rotation((com[..., 0], com[..., 1]))
        return found.rotation_deg, found.flip
    forms = _curl_forms(com)  # one set of derivatives for the calibration's curl and the least curl
    ours = _frame_curl(forms, cal.rotation_deg, cal.flip)
    found_deg, found_flip, best = _curl_minimum(com, forms)
    off = abs((cal.rotation_deg - found_deg + 90.0) % 180.0 - 90.0)
    if (found_flip != cal.flip or off > tolerance_deg) and ours > 2 * best:
        raise CalibrationError(
            f"{step}: the scan rotation in the calibration ({cal.rotation_deg:.1f}°, flip={cal.flip}) leaves the "
            f"centre-of-mass field with {ours:.2f} relative curl, while {found_deg:.1f}° "
            f"(flip={found_flip}) leaves {best:.2f}: this scan has no (or a wrong) rotation calibration. "
            "Measure it first (recipe step 'qr_rotation', fw.analysis.measure_qr_rotation), or pass "
            "rotation='curl' to measure it here, or rotation='manual' with rotation_deg= and flip=.")
    return cal.rotation_deg, cal.flip


def phase_agreement(image: np.ndarray, truth: np.ndarray, step_A: float, sigma_A: float = 0.3,
                    border: int = 0, truth_low_passed: bool = False) -> tuple[float, float]:
    """Pearson correlation and fitted slope of a phase image against the truth (issue 16's score).

    Both images, on the same scan grid, get the same Gaussian low-pass (``sigma_A``,
    periodic edges) and lose ``border`` pixels at each edge; the slope is the
    least-squares ``a`` in ``image ≈ a truth + b``. With ``truth_low_passed`` the
    truth already had that low-pass on its own finer grid (:func:`truth_on_scan`)
    and only the image gets it.

    Examples
    --------
    >>> t = np.random.default_rng(0).normal(size=(16, 16))
    >>> [round(v, 6) for v in phase_agreement(2 * t + 1, t, 0.25)]
    [1.0, 2.0]
    """
    s = sigma_A / step_A
    a = ndimage.gaussian_filter(np.asarray(image, float), s, mode="wrap")
    b = np.asarray(truth, float) if truth_low_passed else ndimage.gaussian_filter(np.asarray(truth, float), s,
                                                                                      mode="wrap")
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    r = float(a @ b / math.sqrt((a @ a) * (b @ b)))
    return r, float(a @ b / (b @ b))


def truth_on_scan(phase: np.ndarray, pixel_A: float | tuple[float, float], positions_A: np.ndarray,
                  sigma_A: float = 0.3) -> np.ndarray:
    """A fine-grid truth phase, low-passed on its own grid and then interpolated at the probe positions.

    The order matters for a strong, sharp object: sampled first, the atom cores' frequencies
    above the scan grid's Nyquist limit fold into the lattice frequencies the reconstruction
    carries (on SrTiO3 at 0.244 Å steps this alone lowers an exact iDPC's slope from 1.0 to
    0.85). Score the result with ``phase_agreement(..., truth_low_passed=True)``, which
    gives the reconstruction the same low-pass on the scan grid.

    Parameters
    ----------
    phase : (M, N) array
        Periodic truth, rad; pixel ``(i, j)`` at ``(i px, j py)`` Å.
    pixel_A : float or (2,) tuple of float
    positions_A : (Rx, Ry, 2) array
        Probe positions in the truth's frame, Å.
    sigma_A : float
        Gaussian low-pass, Å.

    Returns
    -------
    (Rx, Ry) array

    Examples
    --------
    >>> fine = np.cos(2 * np.pi * np.arange(64) / 16)[:, None] * np.ones((1, 64))
    >>> pos = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij"), -1) * 2 * 0.1
    >>> got = truth_on_scan(fine, 0.1, pos, sigma_A=0.0)
    >>> bool(np.allclose(got[:, 0], np.cos(2 * np.pi * np.arange(8) * 2 / 16), atol=1e-6))
    True
    """
    px = np.broadcast_to(np.asarray(pixel_A, float), (2,))
    a = np.asarray(phase, float)
    if sigma_A > 0:
        a = ndimage.gaussian_filter(a, (sigma_A / px[0], sigma_A / px[1]), mode="wrap")
    pos = np.asarray(positions_A, float)
    return ndimage.map_coordinates(a, [pos[..., 0] / px[0], pos[..., 1] / px[1]], order=3, mode="grid-wrap")


def step_engine(context: Any) -> dict[str, Any]:
    """The engine options of a recipe run's context that a phase pass understands."""
    return {k: v for k, v in context.engine.items() if k in _STEP_ENGINE}


def write_fields(group: Any, value: Any) -> None:
    """Write a phase result's fields into an HDF5 group: arrays as datasets, the rest as attributes.

    Records (:class:`~fourd_widgets.core.params.Params`) are stored as JSON text, and
    other dataclasses (:class:`~fourd_widgets.analysis.aberrations.Aberrations`) as a JSON
    dict of their fields, tagged with the field's name so :func:`read_fields` rebuilds them.
    """
    for name, v in vars(value).items():
        if isinstance(v, np.ndarray):
            group.create_dataset(name, data=v)
        elif isinstance(v, Params):
            group.attrs[name] = json.dumps(v.to_dict())
        elif hasattr(v, "to_dict"):
            group.attrs[name] = json.dumps(v.to_dict())
        else:
            group.attrs[name] = v


def read_fields(cls: type, group: Any, records: tuple[str, ...] = ("params",),
                objects: dict[str, type] | None = None) -> Any:
    """Rebuild ``cls`` from a group written by :func:`write_fields`.

    ``records`` names the attributes holding step records, ``objects`` the ones
    holding other dataclasses (name -> class built from the JSON dict's fields).
    """
    objects = objects or {}
    out: dict[str, Any] = {}
    for name in getattr(cls, "__dataclass_fields__"):
        if name in group:
            arr = group[name][()]
            arr.setflags(write=False)
            out[name] = arr
            continue
        v = group.attrs[name]
        if name in records:
            out[name] = record_from_dict(json.loads(v))
        elif name in objects:
            out[name] = objects[name](**json.loads(v))
        elif isinstance(v, np.bool_):
            out[name] = bool(v)
        elif isinstance(v, np.floating):
            out[name] = float(v)
        elif isinstance(v, np.integer):
            out[name] = int(v)
        else:
            out[name] = v
    return cls(**out)
