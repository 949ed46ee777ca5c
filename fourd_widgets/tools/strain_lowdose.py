"""``LowDoseStrainSession``: the whole-pattern lattice fit, its strain maps and σ maps, without a browser.

The low-dose route of strain mapping (issue 13): no disk detection; every pattern's
lattice is fitted at once (:func:`~fourd_widgets.analysis.lattice_fit.whole_pattern_fit`),
and every position carries a standard error. The session holds the
:class:`~fourd_widgets.analysis.lattice_fit.WholePatternFitParams` record. Its compute policy:

* a field of the fit (dose scale, sites, pooling, reference...): a new fit on the worker;
* the σ limit (``max_sigma``, a slider the user drags): only
  :func:`~fourd_widgets.analysis.lattice_fit.limit_sigma` on the kept, unlimited map.

``fw.run(session.params, cube)["whole_pattern_fit"]`` equals :attr:`LowDoseStrainSession.strain`.
Events (besides the Tool ones): ``'maps'`` (``{name: (shown, limit)}`` for the four maps and
their four σ maps), ``'sigma'`` (the limit and the largest σ found, for the slider).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.lattice_fit import StrainSigmaMap, WholePatternFitParams, limit_sigma, whole_pattern_fit
from ..analysis.probe import ProbeTemplate
from ..core.datacube import DataCube
from ..core.errors import ParameterError
from ..core.recipe import Recipe
from .base import Request, Tool
from .strain_compute import DISPLAY_SCALE, MAP_NAMES, symmetric_limit

__all__ = ["LowDoseStrainSession", "SIGMA_NAMES", "sigma_limit_range"]

#: The σ maps shown beside the strain maps (StrainSigmaMap attribute names), in the order of MAP_NAMES.
SIGMA_NAMES = tuple(f"sigma_{n}" for n in MAP_NAMES)


def sigma_limit_range(sm: StrainSigmaMap) -> tuple[float, float]:
    """``(smallest, largest)`` of the largest strain σ over the fitted positions: the slider's range (fractions).

    >>> import numpy as np
    >>> class _M:  # only what the function reads
    ...     mask = np.array([[False, True]])
    ...     def max_strain_sigma(self):
    ...         return np.array([[0.01, np.nan]])
    >>> sigma_limit_range(_M())
    (0.01, 0.01)
    """
    top = sm.max_strain_sigma()[~sm.mask]
    top = top[np.isfinite(top)]
    if not top.size:
        return (0.0, 1.0)
    return float(top.min()), float(top.max())


class LowDoseStrainSession(Tool):
    """Whole-pattern lattice fit, strain maps and σ maps with a σ limit: the low-dose strain mapper's session.

    Parameters
    ----------
    cube : DataCube
    params : WholePatternFitParams, optional
    template : ProbeTemplate or (Qx, Qy) array, optional
        The probe (e.g. a vacuum recording) when ``params.template`` does not make it.
    reference : StrainMap or (g1, g2), optional
        Reference lattice of another dataset.
    start : bool
        Fit at once (a view passes False and calls :meth:`start` once it listens).

    Examples
    --------
    >>> from fourd_widgets.analysis.probe import synthetic_disk, probe_template
    >>> from fourd_widgets.analysis.lattice_fit import lattice_pattern
    >>> from fourd_widgets.core import Calibration
    >>> t = probe_template(synthetic_disk((64, 64), 4.0, (32, 32)))
    >>> pat = lattice_pattern(t, (32.0, 32.0), (14.0, 1.0), (-1.0, 15.0), (64, 64), max_index=2) * 300
    >>> cube = DataCube(np.random.default_rng(0).poisson(np.broadcast_to(pat, (3, 3, 64, 64))).astype(float),
    ...                 calibration=Calibration(origin=(32, 32)))
    >>> s = LowDoseStrainSession(cube, WholePatternFitParams(g1=(14.0, 1.0), g2=(-1.0, 15.0), max_index=2),
    ...                          template=t).wait()
    >>> sorted(s.images())[:2], bool(np.all(s.images()["sigma_exx"] > 0))
    (['exx', 'exy'], True)
    >>> _ = s.set_sigma_limit(float(np.nanmin(s.strain.max_strain_sigma()))).wait()
    >>> bool(s.strain.mask.any()), s.record.max_sigma is not None
    (True, True)
    >>> s.close()
    """

    name = "low-dose strain mapper"

    def __init__(self, cube: DataCube, params: WholePatternFitParams | None = None, *,
                 template: ProbeTemplate | np.ndarray | None = None, reference: Any = None,
                 start: bool = True) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"the low-dose strain mapper needs a DataCube, got {type(cube).__name__}")
        super().__init__(cube)
        self.record = params or WholePatternFitParams()
        if not isinstance(self.record, WholePatternFitParams):
            raise ParameterError("params must be a WholePatternFitParams record", field="params")
        self.template = template
        self.reference = reference
        self.full: StrainSigmaMap | None = None  # the map without the σ limit (what the slider limits)
        self.strain: StrainSigmaMap | None = None
        self._full_key: tuple | None = None
        self._stale = False
        self._fitting: Any = None
        self._worker = self._add_worker(self._compute, self._deliver, self._failed)
        if start:
            self.start()

    def start(self) -> "LowDoseStrainSession":
        """Fit with the current record."""
        self._submit()
        return self

    @classmethod
    def from_params(cls, cube: DataCube, params: Any, **options: Any) -> "LowDoseStrainSession":
        """A session showing the whole_pattern_fit step of ``params`` (a Recipe, its dict or JSON, or a record)."""
        if isinstance(params, WholePatternFitParams):
            return cls(cube, params, **options)
        steps = [s for s in Recipe.coerce(params).steps if isinstance(s, WholePatternFitParams)]
        if not steps:
            raise ParameterError("this recipe has no whole_pattern_fit step to show", field="steps")
        return cls(cube, steps[0], **options)

    @property
    def params(self) -> Recipe:
        """The record as a recipe (with the cube's calibration): ``fw.run`` replays the maps shown."""
        return Recipe((self.record,), calibration=self.cube.calibration)

    def results(self) -> dict[str, Any]:
        return {} if self.strain is None else {"whole_pattern_fit": self.strain}

    def images(self) -> dict[str, np.ndarray]:
        """Strain maps and σ maps as shown: strains in percent, θ in degrees."""
        sm = self.strain
        if sm is None:
            return {}
        out = {n: getattr(sm, n) * DISPLAY_SCALE[n] for n in MAP_NAMES}
        out.update({s: getattr(sm, s) * DISPLAY_SCALE[n] for n, s in zip(MAP_NAMES, SIGMA_NAMES)})
        return out

    @property
    def ready(self) -> bool:
        return not self._stale

    def _pending(self) -> bool:
        return self._stale

    # --- changes ----------------------------------------------------------------------------------
    def set_options(self, **changes: Any) -> "LowDoseStrainSession":
        """Change fields of the record; only ``max_sigma`` alone is applied without a refit."""
        try:
            new = self.record.replace(**changes)
        except ParameterError as exc:
            self._fail("fit", exc)
            return self
        self.record = new
        self._say("fit", "")
        self._submit()
        return self

    def set_sigma_limit(self, max_sigma: float | None) -> "LowDoseStrainSession":
        """Mask positions whose largest strain σ (a fraction) exceeds ``max_sigma`` (None: no limit)."""
        return self.set_options(max_sigma=None if max_sigma is None else float(max_sigma))

    def run_on_all(self) -> "LowDoseStrainSession":
        """The maps cover the whole scan already: wait for them."""
        return self.wait()

    # --- computing --------------------------------------------------------------------------------
    def _key(self, p: WholePatternFitParams) -> tuple:
        d = p.to_dict()
        d.pop("max_sigma", None)
        return tuple(sorted((k, repr(v)) for k, v in d.items()))

    def _submit(self) -> None:
        if self.closed:
            return
        self._stale = True
        if self._fitting is not None:
            self._fitting.cancel()
            self._finish(self._fitting)
        self._fitting = self._start("fitting every pattern")
        self._worker.submit(Request(self.record, self._fitting))

    def _compute(self, req: Request) -> tuple[StrainSigmaMap, StrainSigmaMap]:
        try:
            p = req.params
            full = self.full if self._key(p) == self._full_key else None
            if full is None:
                full = whole_pattern_fit(self.cube, p.replace(max_sigma=None), template=self.template,
                                         reference=self.reference, progress=self._report, cancel=req.cancel)
            return full, limit_sigma(full, p.max_sigma)
        finally:
            self._finish(req.cancel)

    def _deliver(self, req: Request, result: tuple[StrainSigmaMap, StrainSigmaMap]) -> None:
        full, sm = result
        if req.cancel.is_set():
            self._stale = False
            return
        with self._lock:
            self.full, self.strain = full, sm
            self._full_key = self._key(req.params)
        shown = self.images()
        lim = symmetric_limit(np.stack([shown[n] for n in MAP_NAMES[:3]]))
        sig_top = [v for v in (shown[s] for s in SIGMA_NAMES[:3]) if np.isfinite(v).any()]
        slim = max((float(np.nanmax(v)) for v in sig_top), default=1.0)
        maps = {n: (shown[n], lim if n != "theta_deg" else symmetric_limit(shown[n])) for n in MAP_NAMES}
        maps.update({s: (shown[s], slim if s != "sigma_theta_deg" else float(np.nanmax(shown[s])
                                                                            if np.isfinite(shown[s]).any() else 1.0))
                     for s in SIGMA_NAMES})
        self._emit("maps", maps)
        self._emit("sigma", (req.params.max_sigma, sigma_limit_range(full)))
        self._stale = False
        n = sm.mask.size
        self._set_status(f"{n - int(sm.mask.sum())}/{n} positions fitted; median σ(ε_xx) "
                         f"{100 * float(np.nanmedian(sm.sigma_exx)) if (~sm.mask).any() else float('nan'):.3f} %")
        self._notify()

    def _failed(self, req: Request, exc: BaseException) -> None:
        self._stale = False
        self._set_status("")
        self._fail("fit", exc)
