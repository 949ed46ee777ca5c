"""``PhaseTunerSession``: scan rotation, defocus, astigmatism and filters tuned live on DPC, iDPC, tcBF and SSB.

The session holds three records, :class:`~fourd_widgets.analysis.phase_dpc.DPCParams`,
:class:`~fourd_widgets.analysis.parallax.ParallaxParams` and
:class:`~fourd_widgets.analysis.ssb.SSBParams`, all with ``rotation='manual'``
(the rotation slider owns the scan rotation; it starts at the calibration's).
The sliders (:data:`~fourd_widgets.tools.phase_tuner_compute.CONTROLS`) set the
fields of the records they concern; the parallax record aligns its tcBF image by
the sliders' aberrations (``shifts='manual'``) and reports its own fit of them,
which :meth:`PhaseTunerSession.use_fit` copies onto the sliders.

Compute policy (:mod:`.phase_tuner_compute`): three passes over the cube when the
session starts (or the parallax ``bin`` changes), then every slider move is a
preview from the caches, on a newest-wins worker. ``fw.run(session.params, cube)``
replays the three results shown, to the bit.

Events (besides the Tool ones): ``'images'`` (``{name: image}`` of :data:`PARTS`),
``'shifts'`` (``(k, measured, fitted, model)``: the parallax shift field in scan px
at each detector group's ``k`` (1/Å), the fit's model and the sliders' model),
``'params'`` (the records changed, e.g. by :meth:`use_fit`), and from
:meth:`PhaseTunerSession.reconstruct` (iterative ptychography from the sliders,
:mod:`.phase_reconstruct`) ``'ptychography'`` (the phase, probe and error curve to
paint) and ``'ptychography_state'`` (``'done' | 'cancelled' | 'failed'``). Messages:
``messages['dpc' | 'parallax' | 'ssb' | 'ptychography']``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..analysis.aberrations import Aberrations, parallax_shift
from ..analysis.calibration import scan_frame_matrix
from ..analysis.parallax import ParallaxParams
from ..analysis.phase_dpc import DPCParams
from ..analysis.ssb import SSBParams
from ..core.datacube import DataCube
from ..core.errors import ParameterError
from ..core.recipe import Recipe
from .base import Request, Tool, explain
from .phase_reconstruct import PhaseReconstruction
from .phase_tuner_compute import CONTROLS, PARTS, PhaseCache, PhasePreview, default_records, prepare, preview

__all__ = ["PhaseTunerSession", "CONTROLS", "PARTS", "STEPS"]

#: The recipe's steps, in order (also the result labels).
STEPS = ("dpc", "parallax", "ssb")
_CLASSES = {"dpc": DPCParams, "parallax": ParallaxParams, "ssb": SSBParams}


class PhaseTunerSession(Tool):
    """DPC, iDPC, tcBF and SSB previews that follow the rotation, aberration and filter sliders.

    Parameters
    ----------
    cube : DataCube
        Calibrated: scan and detector steps, energy, convergence semi-angle, origin
        (a part whose calibration is missing shows a message saying what to set).
    params : Recipe, dict or JSON, optional
        A recipe holding dpc, parallax and ssb steps (e.g. an earlier ``session.params``).
    bin : int
        Parallax: detector pixels grouped ``bin x bin`` (when ``params`` has no parallax step).
    engine_options : dict, optional
        ``workers``, ``scheduler``, ``chunk_bytes`` for the passes over the cube.
    start : bool
        Run the passes at once (a view passes False and calls :meth:`start` once it listens).

    Examples
    --------
    >>> from fourd_widgets.datasets.phase import simulate_phase
    >>> cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=0.244, detector_shape=(48, 48), C10=60.0)
    >>> s = PhaseTunerSession(cube, bin=2).wait()
    >>> sorted(s.images())
    ['dpc', 'idpc', 'ssb', 'tcbf']
    >>> s.set(C10=60.0).wait().record("ssb").C10
    60.0
    >>> s.close()
    """

    name = "phase tuner"

    def __init__(self, cube: DataCube, params: Any = None, *, bin: int = 2, engine_options: dict | None = None,
                 start: bool = True) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"PhaseTuner needs a DataCube, got {type(cube).__name__}")
        super().__init__(cube)
        self.engine_options = {k: v for k, v in (engine_options or {}).items()
                               if k in ("workers", "scheduler", "chunk_bytes")}
        self._records = default_records(cube, bin)
        if params is not None:
            recipe = Recipe.coerce(params)
            for step in recipe.steps:
                if step.step in _CLASSES:
                    self._records[step.step] = step
        self.cache: PhaseCache | None = None
        self._cache_key: tuple | None = None
        self.shown: PhasePreview | None = None
        self.compute_times: list[float] = []
        self._shown_records: dict[str, Any] | None = None
        self._worker = self._add_worker(self._compute, self._deliver)
        self.reconstruction = PhaseReconstruction(self)
        if params is not None:
            self.reconstruction.record = next((s for s in Recipe.coerce(params).steps if s.step == "ptychography"),
                                              None)
        if start:
            self.start()

    @classmethod
    def from_params(cls, cube: DataCube, params: Any, **options: Any) -> "PhaseTunerSession":
        """A session showing the phase steps of ``params`` (a Recipe, its dict or its JSON)."""
        recipe = Recipe.coerce(params)
        if not any(s.step in _CLASSES for s in recipe.steps):
            raise ParameterError("the recipe holds no dpc, parallax or ssb step for the phase tuner", field="params")
        if recipe.calibration is not None:
            cube = cube.with_calibration(recipe.calibration)
        return cls(cube, recipe, **options)

    def run_on_all(self) -> "PhaseTunerSession":
        """The previews cover the whole scan already (the passes read every pattern): wait for them."""
        return self.wait()

    def start(self) -> "PhaseTunerSession":
        """Run the passes (if needed) and show the previews of the current records."""
        self._worker.submit(Request(dict(self._records)))
        return self

    # --- state ------------------------------------------------------------------------------------
    @property
    def params(self) -> Recipe:
        """The three records as a recipe with the cube's calibration: ``fw.run`` replays what is shown."""
        with self._lock:
            steps = tuple(self._records[n] for n in STEPS)
        labels = STEPS
        ptycho = self.reconstruction.record
        if ptycho is not None:  # once a reconstruction was asked for, the recipe replays it too
            steps, labels = steps + (ptycho,), STEPS + ("ptychography",)
        return Recipe(steps=steps, labels=labels, calibration=self.cube.calibration)

    def record(self, step: str) -> Any:
        """The current record of ``'dpc'``, ``'parallax'`` or ``'ssb'``."""
        return self._records[step]

    @property
    def controls(self) -> dict[str, Any]:
        """The sliders' values, read from the records."""
        out = {}
        for name, steps in CONTROLS.items():
            out[name] = getattr(self._records[steps[0]], name)
        return out

    def results(self) -> dict[str, Any]:
        shown = self.shown
        if shown is None:
            return {}
        out = {n: v for n, v in (("dpc", shown.dpc), ("parallax", shown.parallax), ("ssb", shown.ssb))
               if v is not None}
        if self.reconstruction.result is not None:
            out["ptychography"] = self.reconstruction.result
        return out

    def images(self) -> dict[str, np.ndarray]:
        return {} if self.shown is None else self.shown.images()

    @property
    def fitted(self) -> tuple[Aberrations, float] | None:
        """The parallax fit shown: ``(aberrations, scan rotation in deg)``, or None."""
        par = None if self.shown is None else self.shown.parallax
        return None if par is None else (par.aberrations, par.rotation_deg)

    def _pending(self) -> bool:
        with self._lock:
            return self._shown_records != self._records

    # --- controls -----------------------------------------------------------------------------------
    def set(self, **changes: Any) -> "PhaseTunerSession":
        """Move sliders (:data:`CONTROLS` names) or set other fields of one record (``dpc__boundary='periodic'``).

        The previews are recomputed on the worker; each record is validated here,
        so a bad value raises at once and nothing changes.
        """
        records = dict(self._records)
        for key, value in changes.items():
            if key in CONTROLS:
                for step in CONTROLS[key]:
                    records[step] = records[step].replace(**{key: value})
            elif "__" in key and key.partition("__")[0] in _CLASSES:
                step, _, fld = key.partition("__")
                records[step] = records[step].replace(**{fld: value})
            else:
                raise ParameterError(f"the phase tuner has no control {key!r}; controls: {', '.join(CONTROLS)} "
                                     "(or step__field for dpc, parallax, ssb)", field=key)
        if any(k in CONTROLS for k in changes):
            # the sliders own the rotation from now on: a record that took it from the calibration (or
            # measured it) keeps the value it used, unless the change sets it
            for step in STEPS:
                if records[step].rotation != "manual":
                    rot, flip = self._rotation_used(records[step])
                    fields = {"rotation": "manual", "rotation_deg": changes.get("rotation_deg", rot),
                              "flip": changes.get("flip", flip)}
                    records[step] = records[step].replace(**fields)
        with self._lock:
            self._records = records
        self._worker.submit(Request(dict(records)))
        return self

    def _rotation_used(self, record: Any) -> tuple[float, bool]:
        """The scan rotation and flip a non-manual record resolved to: the calibration's, or the one the
        DPC preview measured from the curl."""
        cal = self.cube.calibration
        shown = self.shown.dpc if self.shown is not None else None
        if record.rotation == "curl" and shown is not None and shown.params.rotation == "curl":
            return shown.rotation_deg, shown.flip
        return cal.rotation_deg, cal.flip

    def use_fit(self) -> "PhaseTunerSession":
        """Copy the parallax fit (defocus, astigmatism, scan rotation) onto the sliders."""
        fit = self.fitted
        if fit is None:
            raise ParameterError("no parallax fit to use yet: wait for the previews (or read messages['parallax'])")
        ab, rot = fit
        self.set(C10=ab.C10, C12=ab.C12, phi12_deg=ab.phi12_deg, rotation_deg=rot)
        self._emit("params")
        return self

    # --- ptychography (:mod:`.phase_reconstruct`) ----------------------------------------------------------
    def reconstruct(self, *, paint_every: int = 1, **fields: Any) -> "PhaseTunerSession":
        """Start iterative ptychography from the sliders' rotation, flip and aberrations (returns at once).

        ``fields`` set other PtychographyParams fields (``iterations``, ``batch_size``, ``step_size``...;
        the last reconstruction's otherwise); the object phase, probe and error curve are painted every
        ``paint_every`` iterations (event ``'ptychography'``). :meth:`wait` waits for the end.
        """
        self.reconstruction.start(self.reconstruction.record_from(self.controls, **fields), paint_every=paint_every)
        return self

    def resume(self) -> "PhaseTunerSession":
        """Continue a cancelled reconstruction from its last iteration (the result equals an uninterrupted run)."""
        self.reconstruction.resume()
        return self

    def cancel_reconstruction(self) -> None:
        """Stop the reconstruction after the current block (the previews go on)."""
        self.reconstruction.cancel()

    def close(self) -> None:
        super().close()
        self.reconstruction.close()

    # --- worker ---------------------------------------------------------------------------------------
    def _compute(self, req: Request) -> PhasePreview:
        records = req.params
        started = time.perf_counter()
        par = records["parallax"]
        key = (par.bin, par.edge_margin)
        if self.cache is None or self._cache_key != key:
            token = self._start("reading the centre of mass and the bright-field images", req.cancel)
            try:
                self.cache = prepare(self.cube, par.bin, par.edge_margin,
                                     {**self.engine_options, "progress": self._report, "cancel": token})
                self._cache_key = key
            finally:
                self._finish(token)
        out = preview(self.cache, self.cube, records, self.engine_options.get("workers"))
        self.compute_times.append(time.perf_counter() - started)
        return out

    def _deliver(self, req: Request, shown: PhasePreview) -> None:
        with self._lock:
            self.shown = shown
            self._shown_records = req.params
        for part in STEPS:
            exc = shown.errors.get(part)
            self._say(part, "" if exc is None else explain(exc), "error")
        self._emit("images", shown.images())
        took = self.compute_times[-1] if self.compute_times else 0.0
        self._set_status(f"previews of {len(shown.images())} images in {took:.2f} s")
        if shown.parallax is not None:
            self._emit("shifts", self.shift_field())
        self._notify()

    def shift_field(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """``(k, measured, fitted, model)``: the parallax shift field (scan px, scan frame) at each group's ``k``.

        ``fitted`` is the fit's model, ``model`` the sliders' (what aligns the tcBF preview).
        """
        shown = self.shown
        if shown is None or shown.parallax is None:
            return None
        res = shown.parallax
        p = res.params
        cal = self.cube.calibration
        ab = Aberrations(p.C10, p.C12, p.phi12_deg)
        model = (parallax_shift(res.k[:, 0], res.k[:, 1], cal.wavelength_A, ab)
                 @ scan_frame_matrix(p.rotation_deg, p.flip).T) / cal.real_step_in("Å")
        return np.asarray(res.k), np.asarray(res.shifts), np.asarray(res.fitted_shifts), model
