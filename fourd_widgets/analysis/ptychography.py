"""Iterative ptychography (single-slice or multislice) with probe, mixed-state and position refinement, O(batch) memory.

The object ``O`` and the probe modes ``P_k`` are refined by mini-batch
gradient descent on the Fourier-amplitude misfit (the ePIE family in batches,
as in py4DSTEM's ``SingleslicePtychography`` and PtyLab's mPIE; the code is our
own). For each batch of scan positions ``j`` with probe centres ``c_j``:

* exit waves ``ψ_jk = O(r) P_k(r − c_j)``; far field ``Ψ_jk = F[ψ_jk]``;
* Fourier projection ``Ψ'_jk = Ψ_jk √I_j / √(Σ_k|Ψ_jk|²)`` and ``Δ_jk = F⁻¹[Ψ'_jk] − ψ_jk``;
* ``O += α Σ_jk P_k* Δ_jk / D_O`` and ``P_k += α Σ_j O* Δ_jk / D_P`` with
  ``D = √(((1 − β) w)² + (β max w)²)``, ``w`` the summed ``|P|²`` (``|O|²``)
  of the batch and ``β`` = ``normalization_min`` (1: one step for the whole
  object; 0: ePIE's per-pixel normalisation);
* a ``'potential'`` object is ``O = exp(iφ)`` with real ``φ`` updated by
  ``Im(O* Σ P* Δ)``, so its phase never wraps.

Variants: ``probe_modes > 1`` (mixed state: intensities of the modes add,
the modes are kept orthogonal, strongest first); ``slices > 1`` (multislice:
``ψ_s = O_s F⁻¹[H F[ψ_{s−1}]]`` with the Fresnel propagator ``H`` over
``slice_thickness_A``, the correction carried back through each slice);
``refine_positions`` (each position moves by a damped Gauss-Newton step on its
pattern's intensities, at most ``max_position_update_px``, the mean position
kept fixed since a common shift is a shift of the object). Its reach depends on
the probe: a probe defocused over a few atoms (e.g. ``C10`` = 100 Å at 20 mrad)
brings positions off by 0.3 Å rms back to about 0.01 Å in 15-30 iterations; a
focused probe over a crystal has misfit minima a few tenths of an Å apart and
corrects errors of about 0.1 Å only (tests/analysis/test_ptychography.py).

Each batch is a compact tile of the scan (order shuffled per iteration from
the record's seed) and is one pass of the engine: the tile is read in blocks
of positions whose working set stays within a fixed budget (``work_bytes``),
each block returns its gradients summed over the block's footprint on the
object, and the caller merges them in block order and applies the update. So
memory is O(block), never O(scan): patterns are streamed from the cube (a file
is read, never copied whole) and no complex copy of the cube is made. The
blocks depend on the record and ``work_bytes`` only, so the result is
bit-identical for any number of workers and on Dask.

FFTs go through ``scipy.fft`` (bench/bench_ptycho.py: 2.5x faster than
``numpy.fft`` on 64 x 96x96 complex64 batches, 5x on 16 x 256x256); the
modulus projection and the gradient sums are fused numba loops on the numpy
path (one pass instead of a dozen complex temporaries). The kernels
(:mod:`fourd_widgets.kernels.ptychography`) take the array and FFT modules as
arguments, so a GPU backend can be added by passing CuPy's.

Examples
--------
>>> from fourd_widgets.datasets.phase import simulate_phase
>>> cube, truth = simulate_phase(scan_shape=(16, 16), detector_shape=(48, 48), reciprocal_step_mrad=2.0)
>>> res = reconstruct_ptychography(cube, iterations=3, progress=False)
>>> bool(res.errors[-1] < res.errors[0])  # the Fourier-amplitude error falls
True
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import scipy.fft as sfft

from ..core.datacube import DataCube
from ..core.errors import FourDError, ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.iterate import IterativeJob, run_iterative
from ..engine.job import Job
from ..kernels import ptychography as kp
from .aberrations import Aberrations, probe_fourier
from .ptychography_result import PtychographyResult

__all__ = ["PtychographyParams", "PtychographyResult", "reconstruct_ptychography", "ptychography_step", "PtychographyJob",
           "PtychographyDivergedError", "scan_positions_A", "initial_probe", "WORK_BYTES"]

#: Working-set budget of one block of positions (exit waves, far fields, probes), bytes.
WORK_BYTES = 48 * 2**20
# complex64 arrays of one window held per position and probe mode while a block is processed
_ARRAYS_PER_MODE = 6
_ARRAYS_PER_POSITION = 4


class PtychographyDivergedError(FourDError, ArithmeticError):
    """The reconstruction diverged; ``.iteration`` is where, ``.errors`` the error curve up to it."""

    def __init__(self, message: str, iteration: int, errors: np.ndarray) -> None:
        self.iteration = iteration
        self.errors = errors
        super().__init__(message)


@dataclass(frozen=True, eq=False)
class PtychographyParams(Params):
    """Record of a single-slice ptychographic reconstruction (mini-batch gradient descent)."""

    step = "ptychography"

    iterations: int = param(20, ge=0, doc="number of iterations (passes over every position)")
    step_size: float = param(0.5, gt=0, doc="fraction α of the normalised gradient applied per batch")
    batch_size: int = param(256, ge=1, doc="positions per update (a compact tile of the scan)")
    object_type: Literal["potential", "complex"] = param(
        "potential", doc="'potential': O = exp(iφ) with real φ (never wraps); 'complex': amplitude and phase")
    probe_modes: int = param(1, ge=1, le=16, doc="mutually incoherent probe modes (mixed state; 1: coherent)")
    refine_probe: bool = param(True, doc="update the probe as well as the object")
    probe_fixed_iterations: int = param(2, ge=0, doc="iterations with the probe held before it is refined")
    refine_positions: bool = param(False, doc="correct the probe positions (Gauss-Newton step per position)")
    position_fixed_iterations: int = param(3, ge=0, doc="iterations with the positions held before they move")
    position_step_size: float = param(0.5, gt=0, le=1, doc="fraction of each position's Gauss-Newton step")
    max_position_update_px: float = param(0.5, gt=0, doc="largest move of a position per update, object px")
    fix_probe_center: bool = param(True, doc="keep the probe intensity's centre of mass on the window centre")
    normalization_min: float = param(
        1.0, ge=0, le=1, doc="β of the update's normalisation: 1 one step everywhere, 0 ePIE's per pixel")
    slices: int = param(1, ge=1, le=16, doc="object slices along the beam (1: single slice; more: multislice)")
    slice_thickness_A: float = param(0.0, units="Å", ge=0, doc="multislice: spacing of the slices along the beam")
    object_padding_px: int = param(8, ge=0, doc="object pixels beyond the outermost probe windows")
    C10: float = param(0.0, units="Å", doc="initial probe: C10 (= −defocus)")
    C12: float = param(0.0, units="Å", doc="initial probe: twofold astigmatism")
    phi12_deg: float = param(0.0, units="deg", doc="initial probe: astigmatism angle")
    C30: float = param(0.0, units="Å", doc="initial probe: spherical aberration")
    rotation_deg: float | None = param(None, units="deg", doc="scan rotation (None: the calibration's)")
    flip: bool | None = param(None, doc="scan flip (None: the calibration's)")
    divergence_factor: float = param(
        3.0, gt=1, doc="stop with an error when an iteration's error exceeds this times the lowest so far")
    seed: int = param(0, ge=0, doc="seed of the batch order and of the extra probe modes")


def scan_positions_A(scan_shape: tuple[int, int], step_A: float, rotation_deg: float, flip: bool) -> np.ndarray:
    """Probe positions ``(Rx, Ry, 2)`` on the object (lab frame, Å): ``R(rotation) S (i, j) step``.

    The convention of :class:`~fourd_widgets.core.calibration.Calibration` and the phase simulator.

    >>> np.round(scan_positions_A((2, 1), 1.0, 90.0, False)[1, 0], 6).tolist()
    [0.0, 1.0]
    """
    t = math.radians(rotation_deg)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    M = R[:, ::-1] if flip else R
    ii, jj = np.meshgrid(np.arange(scan_shape[0], dtype=float), np.arange(scan_shape[1], dtype=float),
                         indexing="ij")
    return np.stack([ii, jj], -1) @ M.T * float(step_A)


def initial_probe(detector_shape: tuple[int, int], reciprocal_step_invA: float, wavelength_A: float,
                  convergence_semiangle_mrad: float, ab: Aberrations, intensity: float, modes: int = 1,
                  seed: int = 0) -> np.ndarray:
    """Probe modes ``(K, Q1, Q2)`` complex64 in real space from the aberrations, total intensity ``intensity``.

    Mode 0 holds 90 % of the intensity when ``modes > 1``; the others are the
    probe times low-order polynomials of the window coordinates (plus a little
    seeded noise), orthogonalised.

    >>> p = initial_probe((32, 32), 0.05, 0.0197, 20.0, Aberrations(), 2.0, modes=2)
    >>> p.shape, round(float(np.sum(np.abs(p) ** 2)), 4)
    ((2, 32, 32), 2.0)
    """
    q1, q2 = detector_shape
    pk = probe_fourier((q1, q2), (q1 // 2, q2 // 2), reciprocal_step_invA, wavelength_A,
                       convergence_semiangle_mrad, ab)
    p0 = sfft.fftshift(sfft.ifft2(sfft.ifftshift(pk), norm="ortho"))
    x = (np.arange(q1) - q1 // 2)[:, None] / q1 + 0 * np.arange(q2)[None, :]
    y = (np.arange(q2) - q2 // 2)[None, :] / q2 + 0 * np.arange(q1)[:, None]
    rng = np.random.default_rng(seed)
    shapes = [np.ones_like(x), x, y, x * y, x * x - y * y, x * x, y * y]
    out = []
    for k in range(modes):
        m = p0 * shapes[k % len(shapes)]
        if k:
            m = m + 0.05 * np.abs(p0).max() * (rng.normal(size=p0.shape) + 1j * rng.normal(size=p0.shape)) * (
                np.abs(p0) > 0.1 * np.abs(p0).max())
        out.append(m)
    probe = kp.orthogonalize_modes(np.stack(out), np)
    power = np.array([1.0] if modes == 1 else [0.9] + [0.1 / (modes - 1)] * (modes - 1))
    norms = np.sqrt(np.sum(np.abs(probe) ** 2, axis=(1, 2)))
    probe = probe / np.maximum(norms, 1e-30)[:, None, None] * np.sqrt(power * intensity)[:, None, None]
    return probe.astype(np.complex64)


def _tiles(scan_shape: tuple[int, int], batch: int) -> list[tuple[slice, slice]]:
    """Compact tiles of about ``batch`` positions covering the scan, row-major."""
    Rx, Ry = scan_shape
    ty = min(Ry, max(1, math.isqrt(batch)))
    tx = min(Rx, max(1, batch // ty))
    return [(slice(i, min(Rx, i + tx)), slice(j, min(Ry, j + ty))) for i in range(0, Rx, tx)
            for j in range(0, Ry, ty)]


def _blocks(tile: tuple[slice, slice], per_block: int) -> list[tuple[slice, slice]]:
    """A tile split into blocks of at most ``per_block`` positions (rows, or pieces of a row)."""
    rx, ry = tile
    ny = ry.stop - ry.start
    if per_block >= ny:
        rows = per_block // ny
        return [(slice(i, min(rx.stop, i + rows)), ry) for i in range(rx.start, rx.stop, rows)]
    return [(slice(i, i + 1), slice(j, min(ry.stop, j + per_block))) for i in range(rx.start, rx.stop)
            for j in range(ry.start, ry.stop, per_block)]


class _BatchGradient(Job):
    """Gradients of the Fourier misfit for one batch, summed block by block on the object."""

    name = "ptychography batch"

    def __init__(self, obj: np.ndarray, probe: np.ndarray, centers: np.ndarray, origin: tuple[int, int],
                 fft_workers: int, probe_gradient: bool = True, position_gradient: bool = False,
                 propagator: np.ndarray | None = None) -> None:
        self.propagator = propagator
        self.probe_gradient = probe_gradient
        self.position_gradient = position_gradient
        self.obj = obj
        self.probe = probe
        self.centers = centers
        self.origin = origin
        self.fft_workers = fft_workers

    def init(self, cube: Any) -> dict[str, Any]:
        K, n1, n2 = self.probe.shape
        return {"obj_num": np.zeros(self.obj.shape, np.complex64), "obj_den": np.zeros(self.obj.shape, np.float32),
                "moves": np.zeros(self.centers.shape, np.float64),
                "moved": np.zeros(self.centers.shape[:2], bool),
                "probe_num": np.zeros((K, n1, n2), np.complex64), "probe_den": np.zeros((n1, n2), np.float32),
                "error": 0.0, "intensity": 0.0}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, Any]:
        K, n1, n2 = self.probe.shape
        amp = np.sqrt(np.maximum(block, 0, dtype=np.float32)).reshape(-1, n1, n2)
        # k = 0 to pixel (0, 0), the FFT's layout
        amp = np.roll(amp, (-self.origin[0], -self.origin[1]), axis=(1, 2))
        corners, frac = kp.window_corners(self.centers[rx, ry].reshape(-1, 2), (n1, n2))
        ramps = kp.probe_ramps(frac, (n1, n2), np.complex64, np, sfft)
        probes = kp.shift_probes(self.probe, frac, np, sfft, self.fft_workers, ramps)
        moves = None
        if self.obj.ndim == 3:  # multislice: array-wise gradients, no position correction
            patches = np.stack([kp.object_patches(o, corners, (n1, n2)) for o in self.obj])
            g = kp.multislice_gradients(patches, probes, amp, corners, self.propagator, np, sfft, self.fft_workers,
                                        self.probe_gradient)
        else:
            patches = kp.object_patches(self.obj, corners, (n1, n2))
            if self.position_gradient:
                moves = kp.position_steps(self.probe, probes, ramps, patches, amp, np, sfft, self.fft_workers)
            g = kp.batch_gradients(patches, probes, amp, corners, np, sfft, self.fft_workers, self.probe_gradient)
        if moves is not None:
            g["moves"] = moves.reshape(rx.stop - rx.start, ry.stop - ry.start, 2)
        h = g.pop("probe_grad")
        if self.probe_gradient:
            # each position's probe gradient shifted back onto the unshifted probe (exact adjoint)
            g["probe_num"] = kp.unshift_sum(h, ramps, np, sfft, self.fft_workers)
        g["lo"] = tuple(int(v) for v in g["lo"])
        g["intensity"] = float(np.sum(np.maximum(block, 0), dtype=np.float64))
        return g

    def merge(self, acc: dict[str, Any], part: dict[str, Any], rx: slice, ry: slice) -> dict[str, Any]:
        (i, j), (s1, s2) = part["lo"], part["num"].shape[-2:]
        acc["obj_num"][..., i:i + s1, j:j + s2] += part["num"]
        acc["obj_den"][..., i:i + s1, j:j + s2] += part["den"]
        if "probe_num" in part:
            acc["probe_num"] += part["probe_num"]
        if "moves" in part:
            acc["moves"][rx, ry] = part["moves"]
            acc["moved"][rx, ry] = True
        acc["probe_den"] += part["probe_den"]
        acc["error"] += part["error"]
        acc["intensity"] += part["intensity"]
        return acc


def _normalizer(w: np.ndarray, beta: float) -> np.ndarray:
    # per slice for a multislice object (leading axis)
    top = w.max(axis=(-2, -1), keepdims=True) if w.size else 0.0
    return (1.0 / np.sqrt(1e-16 + ((1 - beta) * w) ** 2 + (beta * top) ** 2)).astype(np.float32)


class PtychographyJob(IterativeJob):
    """One iteration of :func:`reconstruct_ptychography`: a pass per batch, each followed by the update.

    State: ``object`` (complex64, or float32 phase), ``probe`` (K, N1, N2)
    complex64, ``errors`` (iterations done,), and the running sums of the
    iteration in progress (``error_sum``, ``intensity_sum``, ``batch``).
    """

    name = "ptychography"

    def __init__(self, params: PtychographyParams, centers: np.ndarray, object_shape: tuple[int, int],
                 probe: np.ndarray, origin: tuple[int, int], per_block: int, fft_workers: int,
                 pixel_A: tuple[float, float], initial_object: np.ndarray | None = None,
                 propagator: np.ndarray | None = None) -> None:
        self.propagator = propagator
        self.record = params
        self.pixel_A = pixel_A
        self.p = params
        self.centers = centers
        self.object_shape = object_shape
        self.probe0 = probe
        self.origin = origin
        self.fft_workers = fft_workers
        self.initial_object = initial_object
        self.tiles = [_blocks(t, per_block) for t in _tiles(centers.shape[:2], params.batch_size)]

    def init_state(self, cube: DataCube) -> dict[str, Any]:
        if self.initial_object is not None:
            obj = self.initial_object
        elif self.p.object_type == "potential":
            obj = np.zeros(self.object_shape, np.float32)
        else:
            obj = np.ones(self.object_shape, np.complex64)
        return {"object": obj, "probe": self.probe0.copy(), "positions": self.centers.copy(),
                "errors": np.zeros(0), "error_sum": 0.0,
                "intensity_sum": 0.0, "batch": 0}

    def batches(self, slices: list[tuple[slice, slice]], iteration: int) -> list[list[tuple[slice, slice]]]:
        order = np.random.default_rng((self.p.seed, iteration)).permutation(len(self.tiles))
        return [self.tiles[i] for i in order]

    def _complex_object(self, obj: np.ndarray) -> np.ndarray:
        return np.exp(1j * obj).astype(np.complex64) if self.p.object_type == "potential" else obj

    def pass_job(self, state: dict[str, Any], iteration: int) -> Job:
        return _BatchGradient(self._complex_object(state["object"]), state["probe"], state["positions"],
                              self.origin, self.fft_workers, self._refines_probe(iteration),
                              self._refines_positions(iteration), self.propagator)

    def _refines_positions(self, iteration: int) -> bool:
        return self.p.refine_positions and self.p.slices == 1 and iteration >= self.p.position_fixed_iterations

    def _refines_probe(self, iteration: int) -> bool:
        return self.p.refine_probe and iteration >= self.p.probe_fixed_iterations

    def update(self, state: dict[str, Any], merged: dict[str, Any], iteration: int) -> dict[str, Any]:
        p = self.p
        obj, probe = state["object"], state["probe"]
        step = np.float32(p.step_size)
        norm_o = _normalizer(merged["obj_den"], p.normalization_min)
        if p.object_type == "potential":
            grad = np.imag(np.exp(-1j * obj).astype(np.complex64) * merged["obj_num"])
            obj = (obj + step * grad * norm_o).astype(np.float32)
        else:
            obj = (obj + step * merged["obj_num"] * norm_o).astype(np.complex64)
        if self._refines_probe(iteration):
            probe = (probe + step * merged["probe_num"] * _normalizer(merged["probe_den"], p.normalization_min))
            probe = kp.orthogonalize_modes(probe.astype(np.complex64), np)
            if p.fix_probe_center:
                probe = kp.center_probe(probe, np, sfft).astype(np.complex64)
        positions = state["positions"]
        if self._refines_positions(iteration):
            positions = self._moved(positions, merged["moves"], merged["moved"])
        out = {"object": obj, "probe": probe, "positions": positions, "errors": state["errors"],
               "error_sum": float(state["error_sum"]) + float(merged["error"]),
               "intensity_sum": float(state["intensity_sum"]) + float(merged["intensity"]),
               "batch": int(state["batch"]) + 1}
        if out["batch"] == len(self.tiles):  # the iteration's last batch: one point of the error curve
            err = out["error_sum"] / out["intensity_sum"] if out["intensity_sum"] > 0 else math.nan
            out.update(errors=np.append(np.asarray(state["errors"], np.float64), err), error_sum=0.0,
                       intensity_sum=0.0, batch=0)
            if self._refines_positions(iteration):
                # a shift of all positions is a shift of the object, which the data cannot see: keep the mean
                drift = (positions - self.centers).reshape(-1, 2).mean(axis=0)
                out["positions"] = positions - drift
        return out

    def _moved(self, positions: np.ndarray, moves: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """Positions after one batch's steps: damped, capped, inside the object."""
        d = self.p.position_step_size * moves[moved]
        length = np.hypot(d[:, 0], d[:, 1])
        cap = self.p.max_position_update_px
        d *= np.minimum(1.0, cap / np.maximum(length, 1e-30))[:, None]
        out = positions.copy()
        n = self.probe0.shape[1:]
        lo = np.array([n[0] // 2, n[1] // 2], float)
        hi = np.asarray(self.object_shape[-2:], float) - np.asarray(n) + lo - 1
        out[moved] = np.clip(out[moved] + d, lo, hi)
        return out

    def converged(self, state: dict[str, Any], iteration: int) -> bool:
        errors = np.asarray(state["errors"])
        last = errors[-1]
        best = float(errors[:-1].min()) if len(errors) > 1 else math.inf
        if not np.isfinite(last) or last > self.p.divergence_factor * best or not (
                np.all(np.isfinite(state["object"])) and np.all(np.isfinite(state["probe"]))):
            raise PtychographyDivergedError(
                f"the ptychographic reconstruction diverged at iteration {iteration}: its Fourier error "
                f"{last:.4g} is above {self.p.divergence_factor} times the lowest so far ({best:.4g}). "
                f"Lower step_size (now {self.p.step_size}) or batch_size, or check the calibration "
                "(scan step, rotation, detector step, origin) and the probe aberrations.", iteration, errors)
        return False

    def preview(self, state: dict[str, Any]) -> dict[str, Any]:
        obj = state["object"]
        return {"phase": obj if self.p.object_type == "potential" else np.angle(obj), "probe": state["probe"],
                "errors": state["errors"], "positions_px": state["positions"]}

    def result(self, state: dict[str, Any]) -> PtychographyResult:
        return PtychographyResult(object=state["object"], probe=state["probe"], positions_px=np.asarray(state["positions"]),
                                  pixel_A=np.asarray(self.pixel_A, np.float64), errors=np.asarray(state["errors"]),
                                  params=self.p)


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def reconstruct_ptychography(
    data: DataCube,
    params: PtychographyParams | None = None,
    *,
    probe: np.ndarray | None = None,
    initial_object: np.ndarray | None = None,
    positions_A: np.ndarray | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Any = None,
    cancel: Any = None,
    on_iteration: Callable[[int, dict], Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    work_bytes: int | None = None,
    fft_workers: int | None = None,
    chunk_bytes: int | None = None,
    **overrides: Any,
) -> PtychographyResult:
    """Reconstruct the object and probe from a calibrated cube by single-slice ptychography.

    Parameters
    ----------
    data : DataCube
        Calibrated: ``real_step`` (Å), ``reciprocal_step``, ``energy_eV``,
        ``origin`` (rounded to a pixel) and, unless ``probe`` is given,
        ``convergence_semiangle_mrad``. Streamed in blocks, never loaded whole.
    params : PtychographyParams, optional
    probe : (Qx, Qy) or (K, Qx, Qy) complex array, optional
        Starting probe in real space, centred on the window (default: from the
        calibration and the record's aberrations). Not part of the record.
    initial_object : (M1, M2) array, optional
        Starting object (complex, or phase for ``'potential'``); every probe
        window must lie inside it.
    positions_A : (Rx, Ry, 2) array, optional
        Probe positions on the object, Å (default: the scan grid, rotated and
        flipped as the record or calibration says).
    scheduler, workers, progress, cancel
        Engine options (:func:`fourd_widgets.engine.run_iterative`); progress
        counts iterations, cancel stops between blocks and raises
        CancelledError with ``.state``.
    on_iteration : callable, optional
        ``on_iteration(i, {"phase", "probe", "errors", "positions_px"})`` after each iteration.
    checkpoint : path, optional
        State file rewritten atomically after each iteration; the same call
        again resumes from it and gives the uninterrupted run's result.
    work_bytes : int, optional
        Working-set budget of one block of positions (default :data:`WORK_BYTES`);
        the blocks, and so the bits of the result, depend on it.
    fft_workers : int, optional
        Threads of each FFT (default: all cores when the engine runs one block
        at a time on the caller, else 1 per thread or Dask worker). The bits do
        not depend on it.
    chunk_bytes : int, optional
        Accepted for the calling convention; the blocks follow ``work_bytes``.
    **overrides
        Field overrides of ``params``.

    Returns
    -------
    PtychographyResult

    Raises
    ------
    PtychographyDivergedError
        The error grew above ``divergence_factor`` times its lowest value (the
        message names the iteration).
    ShapeError
        A probe of the wrong shape, or positions whose windows leave the object.
    ParameterError
        A block of ``batch_size`` positions would not fit in the available memory.
    """
    p = params if params is not None else PtychographyParams()
    if not isinstance(p, PtychographyParams):
        raise ParameterError(f"params must be PtychographyParams, got {type(p).__name__}", field="params")
    if overrides:
        p = p.replace(**overrides)
    if not isinstance(data, DataCube):
        raise ParameterError(f"ptychography needs a calibrated DataCube, got {type(data).__name__}", field="data")
    cal = data.calibration
    what = "ptychography"
    q1, q2 = data.detector_shape
    lam = cal.wavelength_A
    dk = cal.reciprocal_step_in("1/Å")
    pixel = (1.0 / (q1 * dk), 1.0 / (q2 * dk))
    origin = tuple(int(round(float(v))) % n for v, n in zip(cal.require("origin", what), (q1, q2)))
    scan = data.scan_shape
    if positions_A is None:
        rot = cal.rotation_deg if p.rotation_deg is None else p.rotation_deg
        flip = cal.flip if p.flip is None else p.flip
        pos = scan_positions_A(scan, cal.real_step_in("Å"), rot, flip)
    else:
        pos = np.asarray(positions_A, dtype=np.float64)
        if pos.shape != scan + (2,):
            raise ShapeError(f"positions_A must have shape {scan + (2,)} (scan x, y, then x/y in Å), got {pos.shape}")
    u = pos / np.asarray(pixel)
    pad = p.object_padding_px
    half = np.array([q1 // 2, q2 // 2])
    centers = u - u.reshape(-1, 2).min(axis=0) + half + pad
    object_shape = tuple(int(v) for v in np.ceil(centers.reshape(-1, 2).max(axis=0)) + half + pad + 1)
    if p.slices > 1:
        if not p.slice_thickness_A > 0:
            raise ParameterError(f"a multislice object ({p.slices} slices) needs slice_thickness_A > 0 (Å)",
                                 field="slice_thickness_A")
        object_shape = (p.slices,) + object_shape

    # the intensity of the mean pattern sets the probe's (a cheap pass over a few rows would do; the
    # first block suffices for noise-free and counted data alike)
    first = data.read((0, 1), (0, min(scan[1], 8)))
    intensity = float(np.mean(np.sum(first, axis=(2, 3), dtype=np.float64)))
    if probe is None:
        ab = Aberrations(p.C10, p.C12, p.phi12_deg, p.C30)
        probe0 = initial_probe((q1, q2), dk, lam, cal.require("convergence_semiangle_mrad", what), ab, intensity,
                               p.probe_modes, p.seed)
    else:
        probe0 = np.asarray(probe)
        if probe0.ndim == 2:
            probe0 = probe0[None]
        if probe0.ndim != 3 or probe0.shape[1:] != (q1, q2):
            raise ShapeError(f"the probe must be (Qx, Qy) = {(q1, q2)} or (modes, Qx, Qy), like the detector, "
                             f"got shape {np.shape(probe)}; resample it onto the detector grid")
        if probe0.shape[0] != p.probe_modes:
            raise ShapeError(f"the probe has {probe0.shape[0]} modes but the record asks for probe_modes="
                             f"{p.probe_modes}")
        probe0 = probe0.astype(np.complex64)
    if initial_object is not None:
        obj0 = np.asarray(initial_object)
        obj0 = obj0.astype(np.float32 if p.object_type == "potential" else np.complex64)
        if obj0.ndim != len(object_shape) or (p.slices > 1 and obj0.shape[0] != p.slices):
            raise ShapeError(f"initial_object must be {'(slices, M1, M2)' if p.slices > 1 else '(M1, M2)'} for "
                             f"{p.slices} slice(s), got shape {obj0.shape}")
        object_shape = obj0.shape
    else:
        obj0 = None
    corners = np.floor(centers + 0.5) - half
    bad = np.argwhere(((corners < 0) | (corners + (q1, q2) > np.asarray(object_shape[-2:]))).any(axis=-1))
    if len(bad):
        i, j = bad[0]
        raise ShapeError(f"{len(bad)} probe positions lie (partly) outside the object of shape {object_shape}, "
                         f"first at scan position ({i}, {j}) (window corner {corners[i, j].astype(int).tolist()}); "
                         "give an initial object that covers every position plus the probe window, or "
                         "positions inside it")

    K = probe0.shape[0]
    # multislice keeps each slice's incident wave for the way back
    per_position = ((_ARRAYS_PER_MODE + p.slices - 1) * K + _ARRAYS_PER_POSITION * p.slices) * q1 * q2 * 8
    budget = int(work_bytes or WORK_BYTES)
    per_block = max(1, min(p.batch_size, budget // per_position))
    n_workers = int(workers or os.cpu_count() or 1)
    need = per_block * per_position * n_workers + 4 * int(np.prod(object_shape)) * 8
    if need > _available_memory():
        raise ParameterError(
            f"a block of {per_block} positions (of batch_size={p.batch_size}) needs about {need / 2**30:.2f} GiB "
            f"with {n_workers} workers, more than the {_available_memory() / 2**30:.2f} GiB available; lower "
            "batch_size, work_bytes or workers", field="batch_size")
    # one block at a time on the caller: the FFTs take the cores; threads or Dask workers: one each
    alone = scheduler == "sync" or (scheduler in (None, "threads") and n_workers == 1)
    fw_ = int(fft_workers or ((os.cpu_count() or 1) if alone else 1))
    prop = None if p.slices == 1 else kp.fresnel_propagator((q1, q2), pixel, lam, p.slice_thickness_A)
    job = PtychographyJob(p, centers, object_shape, probe0, origin, per_block, fw_, pixel, obj0, prop)
    # the checkpoint's recipe: the record, what changes the bits beside it, and the arrays given
    given = hashlib.sha256()
    for a in (probe, initial_object, positions_A):
        given.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    key = {"record": p.to_dict(), "work_bytes": budget, "arrays": given.hexdigest()}
    return run_iterative(data, job, iterations=p.iterations, scheduler=scheduler, workers=workers,
                         progress=progress, cancel=cancel, on_iteration=on_iteration, checkpoint=checkpoint,
                         recipe=key)


def ptychography_step(cube: Any, params: PtychographyParams, context: Any) -> PtychographyResult:
    """Recipe adapter: the reconstruction with the run's engine options this step understands."""
    engine = {k: v for k, v in context.engine.items() if k in ("scheduler", "workers", "progress", "cancel")}
    return reconstruct_ptychography(cube, params, **engine)
