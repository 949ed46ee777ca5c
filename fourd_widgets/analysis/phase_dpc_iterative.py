"""Iterative DPC integration: the phase whose gradient best matches the measured centre-of-mass shifts.

For a thin specimen the centre of mass of each pattern is the phase gradient
under the probe: ``k_com = (1/2π) |P|² ⊛ ∇φ`` (k in 1/Å, φ in rad). Integrating
the measured gradient field ``g`` gives the phase (seen through the probe).

The phase is solved on a grid ``padding`` times the scan, so it need not be
periodic: each iteration takes the residual ``r = M (g − ∇φ)`` (``M`` is 1 on
measured, finite positions and 0 in the padding) and adds ``step_size × ∇⁺r``,
where ``∇⁺`` is the least-squares inverse gradient computed in Fourier space,
``F⁻¹[(kx R̂x + ky R̂y) / (2πi |k|²)]``. The iteration is gradient descent on
``½‖M(∇φ − g)‖²`` preconditioned by ``(∇ᵀ∇)⁻¹``: the preconditioned operator
has eigenvalues λ in [0, 1], so each iteration multiplies the error by
``1 − step_size·λ`` and the residual decreases monotonically for
``0 < step_size < 2``. Without padding (``padding=1``, a periodic scan) one
iteration is the classic one-shot Fourier integration. The approach follows
py4DSTEM's DPC reconstruction (iterative gradient descent with FFT
integration); the code is our own.

Each iteration is a pass of the engine over the scan positions (residual and
error, with the current phase gradient shipped to the workers once per pass)
followed by the Fourier update on the caller; so it runs on threads or Dask,
reports progress per iteration, can be cancelled between iterations, paints
intermediate phases through ``on_iteration`` and checkpoints (see
:func:`fourd_widgets.engine.run_iterative`).

Examples
--------
>>> import numpy as np
>>> x, y = np.meshgrid(np.arange(24.0), np.arange(20.0), indexing="ij")
>>> phase = 0.5 * np.exp(-((x - 11) ** 2 + (y - 9) ** 2) / 30)
>>> grad = np.stack(np.gradient(phase))           # rad per scan pixel
>>> got = dpc_phase_iterative(grad, iterations=40, progress=False)
>>> bool(np.abs((got - got.mean()) - (phase - phase.mean())).max() < 0.02)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import scipy.fft as sfft

from ..core.datacube import DataCube
from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.iterate import IterativeJob, run_iterative
from ..engine.job import Buffer, Job
from .calibration import scan_frame_matrix
from .phase_common import resolve_rotation
from .detectors import Rectangle
from .virtual import virtual_image

__all__ = ["IterativeDPCParams", "dpc_phase_iterative", "phase_gradient", "IterativeDPCJob", "dpc_phase_iterative_step"]


@dataclass(frozen=True, eq=False)
class IterativeDPCParams(Params):
    """Record of an iterative DPC integration (phase from centre-of-mass shifts)."""

    step = "phase_dpc_iterative"
    # version 2: rotation_deg in the calibration's sense (version 1 rotated the other way unless transposed)
    # version 3: a rotation mode, the calibration's by default (version 2 always used rotation_deg)
    schema_version = 3
    migrations = {1: lambda d: _from_version_1(d), 2: lambda d: _from_version_2(d)}
    iterations: int = param(64, ge=1, doc="maximum number of iterations")
    step_size: float = param(1.0, gt=0, lt=2, doc="fraction of the Fourier update applied per iteration")
    padding: float = param(2.0, ge=1, doc="solve on a grid this many times the scan (1: the scan is periodic)")
    stopping_criterion: float = param(
        1e-6, ge=0, doc="stop when the relative RMS residual, or its relative decrease in one iteration, is below")
    rotation: Literal["calibration", "curl", "manual"] = param(
        "calibration", doc="scan rotation and transpose of a cube: the calibration's (refused when the CoM curl "
        "contradicts it), measured here by minimising the curl, or rotation_deg and transpose below; a "
        "centre-of-mass array carries no calibration, so there 'calibration' means rotation_deg and transpose too")
    rotation_tolerance_deg: float = param(
        10.0, units="deg", gt=0, le=90, doc="'calibration': largest disagreement with the curl minimum accepted")
    rotation_deg: float = param(
        0.0, units="deg", doc="'manual': scan rotation in the calibration's sense (Calibration.rotation_deg, the "
        "dpc step's): a scan vector v appears on the detector as R(rotation_deg) S v")
    transpose: bool = param(
        False, doc="'manual': detector axes swapped relative to the scan (Calibration.flip): S above")
    com_scale: float | None = param(
        None, gt=0, doc="rad per scan pixel per unit of the input: None gives 1 for an array (already a phase "
        "gradient) and 2π × scan step × detector step for a calibrated cube; 2π × scan step (Å) for CoM in 1/Å")


def _from_version_1(d: dict) -> dict:
    """Version 1 took ``g = R(θ₁) S^t c``; the calibration's sense is ``g = S^t R(−θ) c``, and
    ``R(θ₁) S = S R(−θ₁)``, so a transposed record keeps its angle and any other changes its sign."""
    d = dict(d)
    if not d.get("transpose", False) and "rotation_deg" in d:
        d["rotation_deg"] = -float(d["rotation_deg"])
    return d


def _from_version_2(d: dict) -> dict:
    """Version 2 always turned the field by its ``rotation_deg`` and ``transpose`` (0° and no transpose
    unless set, whatever the cube's calibration said): it replays unchanged as ``rotation='manual'``."""
    return {**d, "rotation": "manual"}


def phase_gradient(com: np.ndarray, params: IterativeDPCParams) -> np.ndarray:
    """Centre-of-mass field ``(2, Rx, Ry)`` -> phase gradient ``(Rx, Ry, 2)`` in rad per scan pixel.

    The detector-frame vector ``c`` is taken to the scan frame as the calibration does
    (:func:`~fourd_widgets.analysis.calibration.scan_frame_matrix`, ``v = S R(−rotation_deg) c``,
    ``S`` the axis swap when ``transpose``), the same sense as the dpc step, then scaled
    by ``com_scale`` (1 when None).

    >>> g = phase_gradient(np.ones((2, 1, 1)), IterativeDPCParams(rotation_deg=90, com_scale=2.0))
    >>> np.round(g[0, 0], 6).tolist()
    [2.0, -2.0]
    """
    com = np.asarray(com, dtype=np.float64)
    if com.ndim != 3 or com.shape[0] != 2:
        raise ShapeError(f"iterative DPC needs the centre of mass as (2, Rx, Ry), got shape {com.shape}")
    m = scan_frame_matrix(params.rotation_deg, params.transpose)
    scale = 1.0 if params.com_scale is None else params.com_scale
    return np.einsum("ij,jxy->xyi", m, com) * scale


class _ResidualPass(Job):
    """``M (g − ∇φ)`` at each scan position and its squared sum, for the current ``∇φ``."""

    name = "iterative DPC residual"

    def __init__(self, grad: np.ndarray, valid: np.ndarray) -> None:
        self.grad = grad
        self.valid = valid

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        return {"residual": Buffer("position", (2,)), "error": Buffer("single")}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, Any]:
        r = (block[:, :, 0, :] - self.grad[rx, ry]) * self.valid[rx, ry, None]
        return {"residual": r, "error": float(np.sum(r * r))}


class IterativeDPCJob(IterativeJob):
    """The iteration of :func:`dpc_phase_iterative` over a gradient field ``(Rx, Ry, 2)``.

    State: ``phase`` on the padded grid, ``grad`` (its gradient on the scan),
    ``error`` (squared residual of the previous phase) and ``previous_error``.
    """

    name = "iterative DPC"

    def __init__(self, scan_shape: tuple[int, int], valid: np.ndarray, norm: float,
                 params: IterativeDPCParams) -> None:
        self.record = params
        self.scan_shape = tuple(scan_shape)
        self.valid = valid
        self.norm = norm
        self.step_size = params.step_size
        self.tolerance = params.stopping_criterion
        self.padded = tuple(sfft.next_fast_len(max(n, math.ceil(params.padding * n)), real=True)
                            for n in scan_shape)
        kx = sfft.fftfreq(self.padded[0])[:, None]
        ky = sfft.rfftfreq(self.padded[1])[None, :]
        k2 = kx ** 2 + ky ** 2
        k2[0, 0] = 1.0
        self.dx, self.dy = 2j * np.pi * kx, 2j * np.pi * ky  # Fourier derivative, per pixel
        inv = 1.0 / (2j * np.pi * k2)
        inv[0, 0] = 0.0  # the mean phase is free
        self.ix, self.iy = kx * inv, ky * inv

    def init_state(self, cube: DataCube) -> dict[str, Any]:
        return {"phase": np.zeros(self.padded), "grad": np.zeros(self.scan_shape + (2,)),
                "error": np.inf, "previous_error": np.inf}

    def pass_job(self, state: dict[str, Any], iteration: int) -> Job:
        return _ResidualPass(state["grad"], self.valid)

    def update(self, state: dict[str, Any], merged: dict[str, Any], iteration: int) -> dict[str, Any]:
        Rx, Ry = self.scan_shape
        r = np.zeros((2,) + self.padded)
        r[:, :Rx, :Ry] = np.moveaxis(merged["residual"], -1, 0)
        f = sfft.rfft2(r, axes=(1, 2))
        delta = sfft.irfft2(self.ix * f[0] + self.iy * f[1], s=self.padded)
        phase = state["phase"] + self.step_size * delta
        fp = sfft.rfft2(phase)
        grad = np.stack([sfft.irfft2(self.dx * fp, s=self.padded)[:Rx, :Ry],
                         sfft.irfft2(self.dy * fp, s=self.padded)[:Rx, :Ry]], axis=-1)
        return {"phase": phase, "grad": grad, "error": float(merged["error"]),
                "previous_error": float(state["error"])}

    def converged(self, state: dict[str, Any], iteration: int) -> bool:
        err, prev = state["error"], state["previous_error"]
        if self.norm == 0 or math.sqrt(err / self.norm) < self.tolerance:
            return True
        return bool(np.isfinite(prev) and prev > 0 and (prev - err) / prev < self.tolerance)

    def preview(self, state: dict[str, Any]) -> np.ndarray:
        return self.result(state)

    def result(self, state: dict[str, Any]) -> np.ndarray:
        Rx, Ry = self.scan_shape
        phase = state["phase"][:Rx, :Ry]
        return phase - phase[self.valid].mean() if self.valid.any() else phase.copy()


def _com_of_cube(cube: DataCube, engine: dict) -> tuple[np.ndarray, float]:
    """Centre of mass ``(2, Rx, Ry)`` in detector pixels from the origin, and px -> rad/scan-pixel."""
    cal = cube.calibration
    Qx, Qy = cube.detector_shape
    box = dict(qx_range=(0, Qx), qy_range=(0, Qy))
    com = virtual_image(cube, [Rectangle(**box, response="com_x", relative_to_origin=False),
                               Rectangle(**box, response="com_y", relative_to_origin=False)], **engine)
    origin = cal.require("origin", "iterative DPC from a cube")
    com = com - np.asarray(origin, dtype=np.float64)[:, None, None]
    scale = 2 * np.pi * cal.real_step_in("Å") * cal.reciprocal_step_in("1/Å")
    return com, scale


def dpc_phase_iterative(
    data: Any,
    params: IterativeDPCParams | None = None,
    *,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Any = None,
    cancel: Any = None,
    on_iteration: Callable[[int, np.ndarray], Any] | None = None,
    checkpoint: Any = None,
    chunk_bytes: int | None = None,
    **overrides: Any,
) -> np.ndarray:
    """Phase (rad) from differential phase contrast by iterative integration of the centre of mass.

    Parameters
    ----------
    data : DataCube or (2, Rx, Ry) array
        A cube (its centre of mass is measured over the whole detector, from the
        calibrated origin; needs ``origin``, ``real_step`` and ``reciprocal_step``),
        or a centre-of-mass / phase-gradient field, x then y, converted with
        ``com_scale`` (by default taken as already in rad per scan pixel).
        Non-finite positions are left out and filled in by the integration.
    params : IterativeDPCParams, optional
        The scan rotation of a cube is its calibration's by default (``rotation``);
        passing ``rotation_deg=`` or ``transpose=`` as keywords without ``rotation=``
        means ``rotation='manual'``.
    scheduler, workers, progress, cancel
        Engine options (:func:`fourd_widgets.engine.run_iterative`); progress
        counts iterations; cancel raises CancelledError carrying ``.state``.
    on_iteration : callable, optional
        ``on_iteration(i, phase)`` after each iteration, with the current
        ``(Rx, Ry)`` phase (do not modify it).
    checkpoint : path, optional
        State file written atomically after each iteration; an interrupted run
        called again with the same data and record resumes from it.
    chunk_bytes : int, optional
        Size of the blocks of scan positions each pass maps over (default: the
        engine's); a field of a few MB is one block, so it runs on the caller.
    **overrides
        Field overrides of ``params``.

    Returns
    -------
    (Rx, Ry) float64 array
        Phase in rad, zero mean over the measured positions; for a thin specimen,
        the projected potential times the interaction constant, seen through
        the probe intensity.
    """
    p = params if params is not None else IterativeDPCParams()
    if not isinstance(p, IterativeDPCParams):
        raise ParameterError(f"params must be IterativeDPCParams, got {type(p).__name__}", field="params")
    if overrides:
        if "rotation" not in overrides and ({"rotation_deg", "transpose"} & set(overrides)):
            overrides["rotation"] = "manual"  # an angle given by keyword is meant to be used
        p = p.replace(**overrides)
    engine = {"scheduler": scheduler, "workers": workers, "cancel": cancel}
    if isinstance(data, DataCube):
        if p.rotation != "manual" and (p.rotation_deg != 0.0 or p.transpose):
            raise ParameterError(
                f"phase_dpc_iterative: rotation={p.rotation!r} takes the scan rotation from the "
                f"{'calibration' if p.rotation == 'calibration' else 'centre-of-mass curl'}, so rotation_deg="
                f"{p.rotation_deg} and transpose={p.transpose} would be ignored; pass rotation='manual' to use "
                "them, or leave them at 0 and False", field="rotation")
        com, scale = _com_of_cube(data, {**engine, "progress": progress})
        if p.com_scale is None:
            p = p.replace(com_scale=scale)
        if p.rotation != "manual":
            rot, flip = resolve_rotation(np.moveaxis(com, 0, -1), data.calibration, p.rotation, 0.0, False,
                                         p.rotation_tolerance_deg, "iterative DPC")
            p = p.replace(rotation="manual", rotation_deg=rot, transpose=flip)
        source = data
    else:
        com = np.asarray(data, dtype=np.float64)
        if p.rotation == "curl":
            rot, flip = resolve_rotation(np.moveaxis(com, 0, -1), None, "curl", 0.0, False,
                                         p.rotation_tolerance_deg, "iterative DPC")
            p = p.replace(rotation="manual", rotation_deg=rot, transpose=flip)
        source = com
    grad = phase_gradient(com, p)
    valid = np.isfinite(grad).all(axis=-1)
    grad = np.where(valid[..., None], grad, 0.0)
    job = IterativeDPCJob(grad.shape[:2], valid, float(np.sum(grad * grad)), p)
    # The checkpoint is keyed on the record and the data as given: a cube by its
    # file and load options, an array by its content.
    return run_iterative(grad, job, iterations=p.iterations, progress=progress, on_iteration=on_iteration,
                         checkpoint=checkpoint, recipe=p, input=source, chunk_bytes=chunk_bytes, **engine)


def dpc_phase_iterative_step(cube: Any, params: IterativeDPCParams, context: Any) -> np.ndarray:
    """Recipe adapter: the phase of the cube, with the run's engine options this step understands."""
    engine = {k: v for k, v in context.engine.items()
              if k in ("scheduler", "workers", "progress", "cancel", "chunk_bytes")}
    return dpc_phase_iterative(cube, params, **engine)
