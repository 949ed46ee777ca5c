"""``RadialProfilerSession``: radial profiles, FEM V(k), band maps and G(r) with k ranges dragged live.

The session holds three records: the pass over the data
(:class:`~fourd_widgets.analysis.fem.RadialStatisticsParams`), the FEM view
(:class:`~fourd_widgets.analysis.fem_maps.FEMParams`: k bands, symmetry order,
real-space region) and the PDF (:class:`~fourd_widgets.analysis.pdf.PDFParams`).
Its compute policy:

* a new pass record (mask, bins, counted data): one pass over the cube on the
  ``statistics`` worker, then everything below;
* a k band, the map's symmetry order or the region: only
  :func:`~fourd_widgets.analysis.fem_maps.fem` on the kept statistics
  (milliseconds: a k-range drag);
* the PDF record or the region: :func:`~fourd_widgets.analysis.pdf.pair_distribution`
  of the region's mean profile (kept while only the bands move).

``fw.run(session.params, cube)`` gives equal ``radial_statistics``, ``fem`` and
``pdf`` results (the PDF is in the recipe only when it is shown: it needs k in 1/Å).
Messages: ``messages['statistics' | 'bands' | 'region' | 'pdf' | 'error']``.
Events (besides the Tool ones): ``'pattern'`` (the mean pattern), ``'overlays'``
(the k annuli), ``'profiles'`` (curves, see
:func:`~fourd_widgets.tools.radial_profiler_compute.profiles`), ``'maps'``
(``{name: image}``), ``'pdf'`` (``{'r', 'G', 'g'}`` or None), ``'region'``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..analysis.detectors import detector_mask
from ..analysis.fem import RadialStatistics, RadialStatisticsParams, k_band, radial_statistics
from ..analysis.fem_maps import FEMParams, FEMResult, fem
from ..analysis.pdf import PDFParams, PDFResult, pair_distribution
from ..core.datacube import DataCube
from ..core.errors import ParameterError
from ..core.recipe import Recipe
from .base import Request, Tool
from .overlays import make_overlay, region_from_overlay, validate_overlay
from .radial_profiler_compute import (MAP_FEM, PDF_ID, band_id, band_overlay, beam_origin, default_bands,
                                      default_pdf, default_statistics, k_from_overlay, pdf_curves, pdf_overlay,
                                      pixel_step, profiles, require_origin)

__all__ = ["RadialProfilerSession", "REGION_ID", "MAP_FEM"]

REGION_ID = "region"


class RadialProfilerSession(Tool):
    """The radial profiler without its views: records, the kept statistics, FEM and PDF results.

    Parameters
    ----------
    cube : DataCube
        With a calibrated origin (or origin map); k in 1/Å (``reciprocal_step``)
        for G(r).
    statistics : RadialStatisticsParams, optional
        The pass (default: 90 angles, symmetry orders 2 to 12, polar cube kept).
    fem : FEMParams, optional
        Default: one band on the strongest ring.
    pdf : PDFParams, optional
        Default: from the first measured k to the end of the profile, r up to 10 Å.
    start : bool
        Start the pass at once (a view passes False and calls :meth:`start` once it listens).

    Raises
    ------
    MissingCalibrationError
        When the cube's patterns have no calibrated origin.

    Examples
    --------
    >>> from fourd_widgets.core import Calibration
    >>> x, y = np.meshgrid(np.arange(32) - 15.5, np.arange(32) - 15.5, indexing="ij")
    >>> ring = np.exp(-0.5 * ((np.hypot(x, y) - 9) / 1.5) ** 2)
    >>> cube = DataCube(np.ones((3, 3, 1, 1)) * ring, Calibration(origin=(15.5, 15.5)))
    >>> s = RadialProfilerSession(cube).wait()
    >>> s.fem_params.k_ranges, s.result.band_map.shape
    (((7.9, 9.1),), (3, 3))
    >>> s.set_band(0, (7, 10)).wait().fem_params.k_ranges
    ((7.0, 10.0),)
    >>> s.close()
    """

    name = "radial profiler"

    def __init__(self, cube: DataCube, statistics: RadialStatisticsParams | None = None, *,
                 fem: FEMParams | None = None, pdf: PDFParams | None = None, start: bool = True) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"the radial profiler needs a DataCube (fw.load(path)), got {type(cube).__name__}")
        if len(cube.scan_shape) != 2:
            raise ParameterError(f"the radial profiler needs a 2-D scan; this cube's scan is {cube.scan_shape}",
                                 field="cube")
        require_origin(cube.calibration)
        super().__init__(cube)
        self.origin = beam_origin(cube.calibration)
        self.stats_params = statistics or default_statistics()
        self._fem_given, self._pdf_given = fem, pdf
        self.fem_params: FEMParams = fem or FEMParams()
        self.pdf_params: PDFParams = pdf or PDFParams()
        self.stats: RadialStatistics | None = None
        self.result: FEMResult | None = None
        self.pdf: PDFResult | None = None
        self.pattern: np.ndarray | None = None
        self.region_overlay: dict[str, Any] | None = None
        self._pdf_key: tuple | None = None
        self._shown: tuple | None = None
        self._passes = self._add_worker(self._pass, self._pass_done, self._pass_failed)
        self._views = self._add_worker(self._view, self._view_done, self._view_failed)
        if start:
            self.start()

    def start(self) -> "RadialProfilerSession":
        """Run the pass of the current statistics record (then show V(k), the maps and G(r))."""
        self._passes.submit(Request(self.stats_params))
        return self

    @classmethod
    def from_params(cls, cube: DataCube, params: Any, **options: Any) -> "RadialProfilerSession":
        """A session showing the radial_statistics, fem and pdf steps of ``params`` (a Recipe, its dict or JSON)."""
        cube, stats, fem_p, pdf_p = cls.recipe_arguments(cube, params)
        return cls(cube, stats, fem=fem_p, pdf=pdf_p, **options)

    @staticmethod
    def recipe_arguments(cube: DataCube, params: Any) -> tuple[DataCube, RadialStatisticsParams, FEMParams | None,
                                                                PDFParams | None]:
        """``(cube with the recipe's calibration, statistics, fem, pdf records)`` read from a recipe."""
        recipe = Recipe.coerce(params)
        pick = {c: next((s for s in recipe.steps if isinstance(s, c)), None)
                for c in (RadialStatisticsParams, FEMParams, PDFParams)}
        if pick[RadialStatisticsParams] is None:
            raise ParameterError("the recipe has no radial_statistics step for the radial profiler", field="steps")
        if recipe.calibration is not None:
            cube = cube.with_calibration(recipe.calibration)
        return cube, pick[RadialStatisticsParams], pick[FEMParams], pick[PDFParams]

    # --- state ------------------------------------------------------------------------------------
    @property
    def params(self) -> Recipe:
        """The recipe of what is shown: the pass, the FEM view and (when G(r) is shown) the PDF."""
        steps: list[Any] = [self.stats_params, self.fem_params]
        if self.pdf is not None:
            steps.append(self.pdf_params)
        return Recipe(tuple(steps), calibration=self.cube.calibration)  # type: ignore[union-attr]

    def results(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, value in (("radial_statistics", self.stats), ("fem", self.result), ("pdf", self.pdf)):
            if value is not None:
                out[label] = value
        return out

    def images(self) -> dict[str, np.ndarray]:
        """The maps shown: the local FEM map of the bands and, with a symmetry order, its map."""
        r = self.result
        if r is None:
            return {}
        out = {MAP_FEM: r.band_map}
        if r.symmetry_map is not None:
            out[f"symmetry {r.params.symmetry_order}"] = r.symmetry_map
        return out

    @property
    def step(self) -> float:
        """k units per detector px."""
        return 1.0 if self.stats is None else pixel_step(self.stats)

    def overlays(self) -> list[dict[str, Any]]:
        """The annuli on the pattern: each k band, and the PDF's k range when G(r) is shown."""
        ovs = [band_overlay(i, r, self.origin, self.step) for i, r in enumerate(self.fem_params.k_ranges)]
        if self.stats is not None and self.pdf is not None:
            ovs.append(pdf_overlay(self.pdf_params, float(self.stats.axis[-1]), self.origin, self.step))
        return ovs

    def _key(self) -> tuple:
        return (id(self.stats), self.fem_params, self.pdf_params)

    def _pending(self) -> bool:
        """Results of the current records are on their way (not when a message says why they cannot come)."""
        if self.stats is None:
            return not self.messages.get("statistics", ("", ""))[0]
        return self._shown != self._key() and not self.messages.get("bands", ("", ""))[0]

    # --- user actions -------------------------------------------------------------------------------
    def set_statistics(self, **changes: Any) -> "RadialProfilerSession":
        """Change the pass (``counted=True``, ``polar=PolarParams(mask=..., n_theta=...)``...) and run it again."""
        try:
            p = self.stats_params.replace(**changes)
        except ParameterError as exc:
            self._fail("statistics", exc)
            return self
        self.stats_params = p
        self._say("statistics", "")
        self.stats = None
        return self.start()

    def set_band(self, index: int, k_range: Any) -> "RadialProfilerSession":
        """Move k band ``index`` to ``(lo, hi)`` (in the statistics' units); ``index == len``: a new band."""
        bands = list(self.fem_params.k_ranges)
        if not 0 <= index <= len(bands):
            raise IndexError(f"there are {len(bands)} k bands; index {index} is not one of them or the next")
        lo, hi = (float(v) for v in k_range)
        bands[index:index + 1] = [(lo, hi)]
        return self.set_fem(k_ranges=tuple(bands))

    def remove_band(self, index: int) -> "RadialProfilerSession":
        """Drop k band ``index`` (the last one stays)."""
        bands = list(self.fem_params.k_ranges)
        if len(bands) > 1:
            del bands[index]
        return self.set_fem(k_ranges=tuple(bands))

    def set_fem(self, **changes: Any) -> "RadialProfilerSession":
        """Change fields of the FEM record (``k_ranges``, ``symmetry_order``); refused bands leave it as it was."""
        try:
            p = self.fem_params.replace(**changes)
            if self.stats is not None:
                self._check(p)
        except ParameterError as exc:
            self._fail("bands", exc)
            self._emit("overlays", self.overlays())  # the annuli go back to the record's bands
            return self
        self._say("bands", "")
        self.fem_params = p
        return self._refresh()

    def set_band_overlay(self, ov: dict[str, Any]) -> "RadialProfilerSession":
        """An annulus drawn on the pattern (a k band's or the PDF range's, by its id) -> the records."""
        ov = validate_overlay(ov)
        lo, hi = k_from_overlay(ov, self.step)
        if ov["id"] == PDF_ID:  # drawn out to the end of the profile: no k_max
            return self.set_pdf(k_min=lo, k_max=None if hi >= self._k_end() else hi)
        index = int(str(ov["id"]).removeprefix("band"))
        return self.set_band(index, (lo, hi))

    def set_pdf(self, **changes: Any) -> "RadialProfilerSession":
        """Change fields of the PDF record (``density``, ``damping``, ``lorch``, ``k_min``, ``k_max``, ``r_max``...)."""
        try:
            self.pdf_params = self.pdf_params.replace(**changes)
        except ParameterError as exc:
            self._fail("pdf", exc)
            self._emit("overlays", self.overlays())
            return self
        self._say("pdf", "")
        return self._refresh()

    def set_region(self, overlay: dict[str, Any] | None) -> "RadialProfilerSession":
        """Profiles of the scan positions inside a rectangle or polygon (scan px); None: the whole scan."""
        if overlay is None:
            self.region_overlay = None
            self._say("region", "")
            return self.set_fem(region=None)
        ov = validate_overlay({"id": REGION_ID, "color": "#66ff66", **overlay})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a region off the scan gets the message below
            mask = detector_mask(region_from_overlay(ov), tuple(self.cube.scan_shape))  # type: ignore[union-attr]
        if not mask.any():
            self._fail("region", ParameterError("the region covers no scan position; draw it over the map"))
            return self
        self.region_overlay = ov
        self._say("region", "")
        self._emit("region", ov)
        return self.set_fem(region=mask)

    def default_region(self) -> dict[str, Any]:
        """A rectangle over the middle quarter of the scan (where a drawn region starts)."""
        Rx, Ry = self.cube.scan_shape  # type: ignore[union-attr]
        return make_overlay("rectangle", REGION_ID, "#66ff66", x0=Rx // 4, x1=max(Rx // 4 + 1, 3 * Rx // 4),
                            y0=Ry // 4, y1=max(Ry // 4 + 1, 3 * Ry // 4), label="region")

    def run_on_all(self) -> "RadialProfilerSession":
        """The pass covers the whole scan already: wait for it."""
        return self.wait()

    # --- internals --------------------------------------------------------------------------------
    def _k_end(self) -> float:
        return float("inf") if self.stats is None else float(self.stats.axis[-1]) - 0.5 * self.step

    def _check(self, p: FEMParams) -> None:
        for r in p.k_ranges:
            k_band(self.stats, r)  # type: ignore[arg-type]
        if p.region is not None and p.region.shape != tuple(self.cube.scan_shape):  # type: ignore[union-attr]
            raise ParameterError(f"the region has shape {p.region.shape}; the scan is {self.cube.scan_shape}",
                                 field="region")

    def _refresh(self) -> "RadialProfilerSession":
        if self.stats is not None:
            self._views.submit(Request((self.stats, self.fem_params, self.pdf_params)))
        return self

    def _pass(self, req: Request) -> tuple[RadialStatistics, np.ndarray | None]:
        token = self._start("radial statistics of every pattern", req.cancel)
        try:
            stats = radial_statistics(self.cube, req.params, progress=self._report, cancel=token)
            pattern = self.pattern if self.pattern is not None else self.cube.mean_pattern(progress=False)
            return stats, pattern
        finally:
            self._finish(token)

    def _pass_done(self, req: Request, value: tuple[RadialStatistics, np.ndarray | None]) -> None:
        if req.params is not self.stats_params:
            return  # a newer pass is on its way
        self.stats, self.pattern = value
        if self._fem_given is None:
            self.fem_params = self.fem_params.replace(k_ranges=default_bands(self.stats))
            self._fem_given = self.fem_params
        if self._pdf_given is None and self.stats.units == "1/Å":
            self.pdf_params = default_pdf(self.stats)
            self._pdf_given = self.pdf_params
        self._say("statistics", "")
        self._emit("pattern", self.pattern)
        try:
            self._check(self.fem_params)
        except ParameterError as exc:
            self._fail("bands", exc)
            self._emit("overlays", self.overlays())
            return
        self._refresh()

    def _pass_failed(self, req: Request, exc: BaseException) -> None:
        self._fail("statistics", exc)

    def _view(self, req: Request) -> tuple[tuple, FEMResult, PDFResult | None, Exception | None]:
        stats, fp, pp = req.params
        result = fem(stats, fp)
        pdf, problem = self.pdf, None
        key = (id(stats), None if fp.region is None else fp.region.tobytes(), pp)
        if key != self._pdf_key:
            pdf = None
            try:
                if result.variance.units != "1/Å":
                    raise ParameterError("G(r) needs k in 1/Å: set the cube's calibration reciprocal_step with "
                                         "reciprocal_units='1/Å'", field="k")
                pdf = pair_distribution(result.variance.mean_profile, pp, k=result.variance.k)
            except ParameterError as exc:
                problem = exc
        return key, result, pdf, problem

    def _view_done(self, req: Request, value: tuple) -> None:
        key, result, pdf, problem = value
        stats, fp, pp = req.params
        if stats is not self.stats:
            return
        self.result = result
        if key != self._pdf_key:
            self.pdf, self._pdf_key = pdf, key
            units = problem is not None and getattr(problem, "field", None) == "k"  # px data: no G(r), not an error
            self._say("pdf", "" if problem is None else str(problem), "info" if units else "error")
            self._emit("pdf", pdf_curves(pdf))
        self._shown = (id(stats), fp, pp)
        self._emit("overlays", self.overlays())
        self._emit("profiles", profiles(result))
        self._emit("maps", self.images())
        self._notify()

    def _view_failed(self, req: Request, exc: BaseException) -> None:
        self._fail("bands", exc)

    def band_ids(self) -> list[str]:
        """Overlay ids of the k bands, in order."""
        return [band_id(i) for i in range(len(self.fem_params.k_ranges))]
