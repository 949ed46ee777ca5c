"""``StrainSession``: lattice vectors, strain maps and the reference region, without a browser.

The session holds the :class:`~fourd_widgets.analysis.strain.StrainMapParams`
record, the candidate spots of :func:`~fourd_widgets.analysis.strain.suggest_basis`
on the corrected Bragg vector map, the lattice fit and the strain maps. Its
compute policy:

* a new basis or a field of :data:`FIT_FIELDS`: a new lattice fit on the worker
  (then the strain);
* the reference region or the frame angle: only
  :func:`~fourd_widgets.analysis.strain.strain_map_from_fit` on the kept fit.

``fw.run(session.params, cube)["strain_map"]`` equals :attr:`StrainSession.strain`
when the session knows how its peaks and calibration were made (``disks=`` and
calibration steps). Messages: ``messages['basis' | 'fit' | 'reference' | 'export']``.
Events (besides the Tool ones): ``'bvm'`` (``(map, candidates + centre)``),
``'pickers'``, ``'options'``, ``'overlays'`` (reference and position), ``'maps'``
(``{name: (shown, limit)}``), ``'pattern'`` (the clicked position's view data).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..analysis.calibration import distortion_matrix
from ..analysis.detectors import detector_mask
from ..analysis.disks import FindDisksParams, PeakTable
from ..analysis.strain import LatticeBasis, LatticeFit, StrainMap, StrainMapParams, corrected_bvm, suggest_basis
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import FourDError, ParameterError
from ..core.recipe import Recipe
from .base import Request, Tool
from .calibration import DISK_LABEL, CalibrationSession
from .overlays import make_overlay, region_from_overlay, validate_overlay
from .strain_compute import DISPLAY_SCALE, FIT_FIELDS, MAP_NAMES, StrainCompute
from .strain_route import WHOLE_PATTERN, StrainRoute, whole_pattern_step

__all__ = ["StrainSession", "MAP_NAMES", "DISPLAY_SCALE", "REFERENCE_ID", "POSITION_ID", "FIT_FIELDS",
           "SNAP_MIN_PX", "recipe_calibration", "strain_step"]

REFERENCE_ID = "reference"
POSITION_ID = "position"
#: A click farther than this (px of the map, at least) from every candidate picks nothing.
SNAP_MIN_PX = 4.0


class StrainSession(StrainRoute, StrainCompute, Tool):
    """Lattice pick, strain maps and reference region: the strain mapper without its views.

    Parameters
    ----------
    cube : DataCube or None
        The data, for the pattern of a selected position (None: no patterns).
    peaks : PeakTable
    calibration : Calibration or CalibrationSession, optional
        Origin (or origin map), optional ellipse, rotation and flip; a
        CalibrationSession also gives its steps to :attr:`params`.
    params : StrainMapParams, optional
        Default: the suggested basis, a reference strip along the first quarter of the scan rows.
    disks : FindDisksParams, optional
        How ``peaks`` were found; with it :attr:`params` replays from the raw cube.
    calibration_steps : Recipe, optional
        The calibration steps that made ``calibration`` (a CalibrationTool's params).
    start : bool
        Fit at once (a view passes False and calls :meth:`start` once it listens).

    Examples
    --------
    >>> from fourd_widgets.analysis.strain import lattice_peaks
    >>> t = lattice_peaks((4, 4), (32.0, 32.0), (10.0, 0.0), (0.0, 12.0), (64, 64))
    >>> s = StrainSession(None, t, Calibration(origin=(32, 32))).wait()
    >>> np.round(s.g1, 3).tolist(), bool(np.nanmax(np.abs(s.strain.exx)) < 1e-9)
    ([10.0, 0.0], True)
    >>> s.close()
    """

    name = "strain mapper"

    def __init__(self, cube: DataCube | None, peaks: PeakTable, calibration: Calibration | CalibrationSession | None, *,
                 params: StrainMapParams | None = None, disks: FindDisksParams | None = None,
                 calibration_steps: Recipe | None = None, start: bool = True) -> None:
        if cube is not None and not isinstance(cube, DataCube):
            raise TypeError(f"StrainMapper needs a DataCube or None, got {type(cube).__name__}")
        if not isinstance(peaks, PeakTable):
            raise TypeError(f"peaks must be a PeakTable (fw.find_disks(cube) gives one), got {type(peaks).__name__}")
        if len(peaks.scan_shape) != 2:
            raise ParameterError(f"strain maps need a 2-D scan; the peak table's scan shape is {peaks.scan_shape}",
                                 field="peaks")
        super().__init__(cube)
        if isinstance(calibration, CalibrationSession):  # its steps make the recipe replayable from the cube
            calibration_steps, calibration = calibration.params, calibration.calibration
        self.peaks, self.disks, self._cal_steps = peaks, disks, calibration_steps
        self.calibration = calibration if calibration is not None else Calibration()
        self.basis: LatticeBasis | None = None
        self.fit: LatticeFit | None = None
        self.strain: StrainMap | None = None
        self._fit_key: tuple | None = None
        self._stale = False
        self._fitting: Any = None
        self.center = (0.0, 0.0)
        self.bvm: np.ndarray | None = None
        Rx, Ry = peaks.scan_shape
        self.reference = make_overlay("rectangle", REFERENCE_ID, "#00ff00", x0=0, x1=max(1, Rx // 4), y0=0, y1=Ry,
                                      label="reference")
        self.position = make_overlay("point", POSITION_ID, "#ffd23d", x=Rx // 2, y=Ry // 2)
        self._runner = self._add_worker(self._compute, self._deliver, self._failed)
        p = params or StrainMapParams()
        if p.reference_region is None:
            p = p.replace(reference_region=self._region_mask(self.reference))
        self._params = p
        self.picked: dict[str, Any] = {"g1": p.g1, "g2": p.g2}
        self._load_bvm(p)
        if start:
            self.start()

    def start(self) -> "StrainSession":
        """Fit the lattice and show the maps of the current record."""
        self._submit()
        return self

    @classmethod
    def from_params(cls, cube: DataCube | None, peaks: PeakTable, params: Recipe | dict | str,
                    calibration: Calibration | None = None, **options: Any) -> "StrainSession":
        """A session showing the strain step of ``params`` (a Recipe, its dict or its JSON).

        The calibration is, in order: the one given; the recipe's calibration steps
        run on ``cube``; the recipe's calibration.

        Raises
        ------
        ParameterError
            If the recipe has neither a strain_map nor a whole_pattern_fit step.
        """
        if (wp := whole_pattern_step(params)) is not None:  # the whole-pattern route
            cal = calibration if calibration is not None else Recipe.coerce(params).calibration
            return cls(cube, peaks, cal, **options).set_route(WHOLE_PATTERN, wp)
        cal, strain, disks = cls.recipe_arguments(cube, peaks, params, calibration)
        return cls(cube, peaks, cal, params=strain, disks=disks, **options)

    @staticmethod
    def recipe_arguments(cube: DataCube | None, peaks: PeakTable, params: Recipe | dict | str,
                         calibration: Any = None) -> tuple[Any, StrainMapParams, FindDisksParams | None]:
        """``(calibration, strain record, disk record)`` a session is built from, read from a recipe."""
        recipe = Recipe.coerce(params)
        strain = strain_step(recipe)
        disks = next((s for s in recipe.steps if isinstance(s, FindDisksParams)), None)
        return recipe_calibration(cube, peaks, recipe, calibration), strain, disks

    # --- state ------------------------------------------------------------------------------------
    @property
    def params(self) -> Recipe:
        """What is shown as a recipe: disk step (if known), calibration steps (if known), strain step.

        With the whole-pattern route: the whole_pattern_fit step (with the cube's calibration).
        """
        if (route := self._route_recipe()) is not None:
            return route
        with self._lock:
            p = self._params
        steps: list[Any] = []
        labels: list[str] = []
        initial: Calibration | None = self.calibration
        if self.disks is not None:
            steps.append(self.disks)
            labels.append(DISK_LABEL)
        if self._cal_steps is not None:
            steps.extend(self._cal_steps.steps)
            labels.extend(self._cal_steps.labels)
            initial = self._cal_steps.calibration
        steps.append(p.replace(peaks=DISK_LABEL))
        labels.append("strain_map")
        return Recipe(steps=tuple(steps), labels=tuple(labels), calibration=initial)

    @property
    def strain_params(self) -> StrainMapParams:
        """The strain step alone (basis, fit options, reference region, frame)."""
        with self._lock:
            return self._params

    @property
    def g1(self) -> np.ndarray | None:
        """The chosen g1 (px, origin-relative, ellipse-corrected)."""
        return None if self._params.g1 is None else np.asarray(self._params.g1)

    @property
    def g2(self) -> np.ndarray | None:
        """The chosen g2."""
        return None if self._params.g2 is None else np.asarray(self._params.g2)

    @property
    def ready(self) -> bool:
        """True when the maps shown belong to the current parameters."""
        return not self._stale

    def _pending(self) -> bool:
        return self._stale or self._route_pending()

    def results(self) -> dict[str, Any]:
        if self.lowdose is not None:
            return self.lowdose.results()
        return {} if self.strain is None else {"strain_map": self.strain}

    def images(self) -> dict[str, np.ndarray]:
        """The maps as shown: strains in percent, θ in degrees (and σ maps with the whole-pattern route)."""
        if self.lowdose is not None:
            return self.lowdose.images()
        sm = self.strain
        return {} if sm is None else {n: getattr(sm, n) * DISPLAY_SCALE[n] for n in MAP_NAMES}

    # --- basis ------------------------------------------------------------------------------------
    def _load_bvm(self, p: StrainMapParams) -> None:
        try:
            self.bvm, self.center = corrected_bvm(self.peaks, self.calibration)
        except FourDError as exc:
            self._fail("basis", exc)
            return
        try:
            self.basis = suggest_basis(self.peaks, self.calibration, reference_region=p.reference_region)
        except FourDError as exc:
            self._fail("basis", exc)
        if self.basis is not None and p.g1 is None:  # the suggested pair is preselected
            p = p.replace(g1=tuple(self.basis.g1.tolist()), g2=tuple(self.basis.g2.tolist()))
        self._params = p
        self.picked = {"g1": p.g1, "g2": p.g2}

    def pick(self, which: str, index: int) -> None:
        """Set ``which`` ('g1' or 'g2') to candidate ``index`` of :attr:`basis`."""
        if which not in ("g1", "g2"):
            raise ParameterError(f"pick 'g1' or 'g2', not {which!r}", field="which")
        if self.basis is None:
            self._fail("basis", ParameterError("no candidate spots to pick from; see above"))
            return
        self.picked[which] = tuple(float(v) for v in self.basis.candidates[int(index)])
        self.set_basis(self.picked["g1"], self.picked["g2"])

    def pick_at(self, which: str, x: float, y: float) -> None:
        """Pick the candidate nearest to map point ``(x, y)`` (a click there); a message if none is near."""
        if self.basis is None or not len(self.basis.candidates):
            self._emit("pickers")
            return
        pts = self.basis.candidates + np.asarray(self.center)
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        i = int(np.argmin(d))
        if d[i] > max(SNAP_MIN_PX, 0.3 * float(np.hypot(*self.basis.candidates[0]))):
            self._fail("basis", ParameterError(f"no Bragg spot near ({x:.0f}, {y:.0f}); click on one of the "
                                               "marked spots"))
            self._emit("pickers")
            return
        self.pick(which, i)

    def set_basis(self, g1: Any, g2: Any) -> None:
        """Use ``g1``, ``g2`` (refits); a collinear or missing pair is a message, the maps stay."""
        try:
            new = self._params.replace(g1=g1, g2=g2)  # validates: both given, not collinear
        except FourDError as exc:
            self._emit("pickers")  # the user's pick stays visible; the maps stay those of the last valid pair
            self._fail("basis", exc)
            return
        self._say("basis", "")
        self._params = new
        self._emit("pickers")
        self._submit()

    # --- options, reference region, position --------------------------------------------------------
    def set_options(self, **changes: Any) -> None:
        """Change fields of the strain step (e.g. ``max_peak_spacing=3``, ``frame_deg=30``)."""
        try:
            new = self._params.replace(**changes)
        except FourDError as exc:
            self._fail("fit", exc)
            return
        self._params = new
        self._emit("options")
        self._submit()

    def set_reference(self, overlay: dict, source: Any = None) -> None:
        """Use this rectangle or polygon (scan pixels) as the reference region."""
        ov = validate_overlay({**overlay, "id": REFERENCE_ID, "color": "#00ff00", "label": "reference"})
        mask = self._region_mask(ov)
        self.reference = ov
        self._emit("overlays", source)
        if not mask.any():
            self._fail("reference", ParameterError("the reference region covers no scan position; draw it over "
                                                   "the map"))
            return
        self.set_options(reference_region=mask)

    def reference_kind(self, kind: str) -> None:
        """A default reference region of ``kind`` ('rectangle' or 'polygon')."""
        Rx, Ry = self.peaks.scan_shape
        if kind == "polygon":
            ov = make_overlay("polygon", vertices=[[0, 0], [0, Ry - 1], [max(1, Rx // 4), Ry - 1],
                                                   [max(1, Rx // 4), 0]])
        else:
            ov = make_overlay("rectangle", x0=0, x1=max(1, Rx // 4), y0=0, y1=Ry)
        self.set_reference(ov)

    def select(self, rx: int, ry: int) -> None:
        """Show the pattern of scan position ``(rx, ry)`` with its fitted lattice."""
        Rx, Ry = self.peaks.scan_shape
        self.position = make_overlay("point", POSITION_ID, "#ffd23d", x=int(np.clip(rx, 0, Rx - 1)),
                                     y=int(np.clip(ry, 0, Ry - 1)))
        self._emit("overlays", None)
        self._show_pattern()

    def _region_mask(self, ov: dict) -> np.ndarray:
        with warnings.catch_warnings():
            # a region off the scan gets the reference message instead of a warning in the notebook
            warnings.simplefilter("ignore", UserWarning)
            return detector_mask(region_from_overlay(ov), tuple(self.peaks.scan_shape))

    def _show_pattern(self) -> None:
        if self.cube is None:
            return
        rx, ry = int(self.position["x"]), int(self.position["y"])
        at = self.peaks.at(rx, ry)
        view: dict[str, Any] = {"image": self.cube.pattern(rx, ry), "title": f"pattern ({rx}, {ry})",
                                "peaks": np.stack([at["qx"], at["qy"]], -1), "lattice": None}
        fit = self.fit
        if fit is None or fit.failure[rx, ry]:
            why = "no fit yet" if fit is None else "the lattice fit failed here (masked)"
            view["title"] = f"pattern ({rx}, {ry}): {why}"
        else:
            cal = self.calibration
            origin = cal.origin_map[rx, ry] if cal.origin_map is not None else np.asarray(cal.origin, float)
            # the fit lives in the ellipse-corrected frame; the detector shows D g
            D = distortion_matrix(cal.ellipse)
            view["lattice"] = (origin + D @ fit.origin[rx, ry], D @ fit.g1[rx, ry], D @ fit.g2[rx, ry])
        self._emit("pattern", view)

    # --- computing ----------------------------------------------------------------------------------
    def _submit(self) -> None:
        p = self._params
        if p.g1 is None or p.g2 is None or self.closed:
            return  # the basis message says what is missing
        self._stale = True
        if self._fitting is not None:  # the newest fit wins (a request never started ends here)
            self._fitting.cancel()
            self._finish(self._fitting)
        self._fitting = self._start("fitting the lattice")
        self._runner.submit(Request(p, self._fitting))

    def save_hdf5(self, path: str | os.PathLike) -> str:
        """Write the StrainMap and the recipe that makes it to an HDF5 results file."""
        return self._require_strain().save_hdf5(path, recipe=self.params)

    def save_tiff(self, prefix: str | os.PathLike) -> list[str]:
        """Write ``<prefix>_exx.tif`` ... ``_theta_deg.tif`` (float32 fractions / degrees, NaN masked) and the mask."""
        return self._require_strain().save_tiff(prefix)

    def close(self) -> None:
        self._close_route()
        super().close()

    def _require_strain(self) -> StrainMap:
        if self.lowdose is not None and self.lowdose.strain is not None:
            return self.lowdose.strain
        if self.strain is None:
            raise ParameterError("no strain maps yet: fix the messages above (basis, fit, reference) first")
        return self.strain


def recipe_calibration(cube: DataCube | None, peaks: PeakTable, recipe: Recipe,
                       calibration: Any = None) -> Any:
    """``calibration`` if given, else the recipe's calibration steps run on ``cube``, else its calibration."""
    if calibration is not None:
        return calibration
    if cube is not None and any(s.step in ("origin", "origin_fit", "ellipse") for s in recipe.steps):
        session = CalibrationSession.from_params(cube, recipe, peaks).wait()
        session.close()
        return session
    return recipe.calibration


def strain_step(recipe: Recipe) -> StrainMapParams:
    """The strain_map step of a recipe (ParameterError if there is none)."""
    strain = [s for s in recipe.steps if isinstance(s, StrainMapParams)]
    if not strain:
        raise ParameterError("this recipe has no strain_map step to show", field="steps")
    return strain[0]
