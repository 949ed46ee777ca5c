"""``StrainMapper``: lattice vectors picked on the Bragg vector map, strain maps, reference region, patterns.

* The Bragg vector map (origin-relative, ellipse-corrected: the frame of g1, g2)
  shows the candidate spots of :func:`~fourd_widgets.analysis.strain.suggest_basis`
  as markers and the chosen ``g1``, ``g2`` as two points; the suggested pair is
  preselected. Choose which vector a click sets ("pick g1" / "pick g2") and
  click near a spot: the point snaps to the nearest candidate.
* The four maps ``ε_xx, ε_yy, ε_xy`` (shared symmetric limits) and ``θ``
  (its own symmetric limits) use the diverging colormap; failed positions are
  NaN (masked, never filled) and drawn transparent.
* The reference region is a rectangle (or polygon) drawn on every map: editing
  it on any map moves it on all and recomputes the strain from the existing
  lattice fit (cheap); so does the frame angle. A new basis or fit option
  refits the lattice in a worker thread (progress bar, cancel).
* With a cube, a click on a map shows that position's pattern with its
  detected peaks and the fitted lattice overlaid.

``fw.run(mapper.params, cube)["strain_map"]`` equals :attr:`StrainMapper.strain`
(NaN positions included) when the mapper knows how its peaks and calibration
were made (``disks=`` and a :class:`~fourd_widgets.widgets.calibration_tool.CalibrationTool`).
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, Callable

import ipywidgets as w
import numpy as np

from ..analysis.calibration import distortion_matrix
from ..analysis.detectors import detector_mask
from ..analysis.disks import FindDisksParams, PeakTable
from ..tools.worker import LatestOnly
from ..analysis.strain import (
    LatticeBasis,
    LatticeFit,
    StrainMap,
    StrainMapParams,
    corrected_bvm,
    fit_lattice,
    strain_map_from_fit,
    suggest_basis,
)
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import FourDError, ParameterError
from ..core.recipe import Recipe
from .calibration_tool import (
    DISK_LABEL,
    Busy,
    CalibrationTool,
    error_text,
    message_label,
)
from .image_view import ImageView
from .overlays import make_overlay, region_from_overlay, validate_overlay
from .tool import ToolRequest, WorkerTool

__all__ = ["StrainMapper", "MAP_NAMES", "REFERENCE_ID", "POSITION_ID", "STRAIN_COLORMAP"]

#: The maps shown, in order (StrainMap attribute names).
MAP_NAMES = ("exx", "eyy", "exy", "theta_deg")
_TITLES = {"exx": "ε_xx (%)", "eyy": "ε_yy (%)", "exy": "ε_xy (%)", "theta_deg": "θ (°)"}
#: Strain maps are shown in percent (the StrainMap holds fractions).
_DISPLAY_SCALE = {"exx": 100.0, "eyy": 100.0, "exy": 100.0, "theta_deg": 1.0}
STRAIN_COLORMAP = "rdbu"
REFERENCE_ID = "reference"
POSITION_ID = "position"
#: Fit options whose change needs a new lattice fit (the others only redo the cheap strain step).
_FIT_FIELDS = ("g1", "g2", "max_peak_spacing", "min_num_peaks", "weights", "fit_origin", "refine")
#: A click farther than this (px of the map, at least) from every candidate picks nothing.
SNAP_MIN_PX = 4.0


class StrainMapper(WorkerTool):
    """Pick the lattice, see strain and rotation maps, choose the reference region, by pointing at the data.

    Parameters
    ----------
    cube : DataCube or None
        The data, to show the pattern of a clicked position (None: no pattern view).
    peaks : PeakTable
        Disks in detector px (``fw.find_disks``).
    calibration : Calibration or CalibrationTool
        Origin (or origin map), optional ellipse, rotation and flip. A
        CalibrationTool also gives its steps to :attr:`params`.
    params : StrainMapParams, optional
        Initial fit options, basis and reference region (default: the suggested
        basis and a reference strip along the first quarter of the scan rows).
    disks : FindDisksParams, optional
        How ``peaks`` were found; with it :attr:`params` replays from the raw cube.
    size : int
        Canvas width of each map, CSS px.

    Attributes
    ----------
    widget : ipywidgets.VBox
    bvm_view : ImageView
        The Bragg vector map with candidates and the g1 / g2 pickers.
    map_views : dict of str -> ImageView
        ``'exx', 'eyy', 'exy', 'theta_deg'``.
    pattern_view : ImageView or None
        The clicked position's pattern with its peaks and fitted lattice.
    basis : LatticeBasis or None
        The candidates and the current pick.
    fit : LatticeFit or None
        The current lattice fit.
    strain : StrainMap or None
        The maps shown.
    basis_message, fit_message, reference_message : ipywidgets.HTML
        What is wrong with each input, beside its controls ('' when fine).

    Examples
    --------
    >>> from fourd_widgets.analysis.strain import lattice_peaks
    >>> t = lattice_peaks((4, 4), (32.0, 32.0), (10.0, 0.0), (0.0, 12.0), (64, 64))
    >>> m = StrainMapper(None, t, Calibration(origin=(32, 32))).wait()
    >>> np.round(m.g1, 3).tolist(), np.round(m.g2, 3).tolist(), bool(np.nanmax(np.abs(m.strain.exx)) < 1e-9)
    ([10.0, 0.0], [0.0, 12.0], True)
    >>> m.close()
    """

    _tool_name = "strain mapper"

    def __init__(self, cube: DataCube | None, peaks: PeakTable, calibration: Calibration | CalibrationTool | None,
                 *, params: StrainMapParams | None = None, disks: FindDisksParams | None = None,
                 size: int = 240) -> None:
        if cube is not None and not isinstance(cube, DataCube):
            raise TypeError(f"StrainMapper needs a DataCube or None, got {type(cube).__name__}")
        if not isinstance(peaks, PeakTable):
            raise TypeError(f"peaks must be a PeakTable (fw.find_disks(cube) gives one), got {type(peaks).__name__}")
        if len(peaks.scan_shape) != 2:
            raise ParameterError(f"strain maps need a 2-D scan; the peak table's scan shape is {peaks.scan_shape}",
                                 field="peaks")
        self.cube = cube
        self.peaks = peaks
        self.disks = disks
        if isinstance(calibration, CalibrationTool):
            self._cal_steps = calibration.params
            calibration = calibration.calibration
        else:
            self._cal_steps = None
        self.calibration = calibration if calibration is not None else Calibration()
        self.basis: LatticeBasis | None = None
        self.fit: LatticeFit | None = None
        self.strain: StrainMap | None = None
        self._fit_key: tuple | None = None
        self._lock = threading.RLock()
        self._callbacks: list[Callable[["StrainMapper"], Any]] = []
        self._syncing = False
        self._pending = False
        self.updates = 0
        self._centre = (0.0, 0.0)
        Rx, Ry = peaks.scan_shape
        self._reference = make_overlay("rectangle", REFERENCE_ID, "#00ff00", x0=0, x1=max(1, Rx // 4), y0=0, y1=Ry,
                                       label="reference")
        self._position = make_overlay("point", POSITION_ID, "#ffd23d", x=Rx // 2, y=Ry // 2)

        self.basis_message = message_label()
        self.fit_message = message_label()
        self.reference_message = message_label()
        self.busy = Busy()
        self._pick = w.ToggleButtons(options=["g1", "g2"], value="g1", description="click picks",
                                     style={"button_width": "50px"})
        self._spacing = w.BoundedFloatText(value=4.0, min=0.1, max=1e3, step=0.5, description="max spacing",
                                           layout=w.Layout(width="170px"))
        self._min_peaks = w.BoundedIntText(value=5, min=3, max=1000, description="min peaks",
                                           layout=w.Layout(width="150px"))
        self._frame = w.FloatText(value=0.0, description="frame °", layout=w.Layout(width="150px"))
        self._region_kind = w.Dropdown(options=("rectangle", "polygon"), value="rectangle", description="reference",
                                       layout=w.Layout(width="190px"))
        self._path = w.Text(value="strain", description="save as", layout=w.Layout(width="220px"))
        self._save = {kind: w.Button(description=kind, layout=w.Layout(width="60px")) for kind in ("HDF5", "TIFF", "PNG")}
        self.export_message = message_label()

        self.bvm_view = ImageView(title="Bragg vector map (click a spot)", colormap="magma", scale="log",
                                  size=max(size, 320), axis_names=["qx", "qy"], click_moves="g1", selected="g1")
        self.map_views = {n: ImageView(title=_TITLES[n], colormap=STRAIN_COLORMAP, contrast="absolute", size=size,
                                       axis_names=["rx", "ry"], click_moves=POSITION_ID, selected=REFERENCE_ID,
                                       pixel_size=self.calibration.real_step,
                                       units=self.calibration.real_units if self.calibration.real_step else "px")
                          for n in MAP_NAMES}
        self.pattern_view = (ImageView(title="pattern", colormap="gray", scale="log", size=max(size, 320),
                                       axis_names=["qx", "qy"]) if cube is not None else None)
        left = [w.HBox([self._pick]), self.basis_message, self.bvm_view]
        if self.pattern_view is not None:
            left.append(self.pattern_view)
        maps = list(self.map_views.values())
        right = [w.HBox([self._spacing, self._min_peaks, self._frame]), self.fit_message,
                 w.HBox([self._region_kind, self.reference_message]),
                 w.HBox(maps[:2]), w.HBox(maps[2:]),
                 w.HBox([self._path, *self._save.values(), self.export_message])]
        self.widget = w.VBox([self.busy.box, w.HBox([w.VBox(left), w.VBox(right)],
                                                    layout=w.Layout(align_items="flex-start"))])
        self.widget.add_class("fw-strain-mapper")

        self._runner: LatestOnly[ToolRequest[StrainMapParams]] = LatestOnly(
            self._compute, self._deliver, on_error=self._failed, name="fourd-strain")
        p = params or StrainMapParams()
        if p.reference_region is None:
            p = p.replace(reference_region=self._region_mask(self._reference))
        self._params = p
        self._spacing.value, self._min_peaks.value, self._frame.value = p.max_peak_spacing, p.min_num_peaks, p.frame_deg
        self._show_bvm(p)
        self._sync_map_overlays()

        self._pick.observe(self._on_pick_mode, names="value")
        self.bvm_view.observe(self._on_bvm_overlays, names="overlays")
        for view in self.map_views.values():
            view.observe(self._on_map_overlays, names=["overlays", "dragging"])
        self._spacing.observe(self._on_options, names="value")
        self._min_peaks.observe(self._on_options, names="value")
        self._frame.observe(self._on_options, names="value")
        self._region_kind.observe(self._on_region_kind, names="value")
        self._save["HDF5"].on_click(lambda _: self._export(self.save_hdf5, ".h5"))
        self._save["TIFF"].on_click(lambda _: self._export(self.save_tiff, ""))
        self._save["PNG"].on_click(lambda _: self._export(self.save_png, ""))
        self._submit()

    # --- public API ---------------------------------------------------------------------------
    @classmethod
    def from_params(cls, cube: DataCube | None, peaks: PeakTable, params: Recipe | dict | str,
                    calibration: Calibration | CalibrationTool | None = None, **options: Any) -> "StrainMapper":
        """Rebuild a mapper from its :attr:`params` (a Recipe, its dict or its JSON).

        The calibration is, in order: the one given; the recipe's calibration
        steps run by a :class:`CalibrationTool` on ``cube``; the recipe's calibration.

        Raises
        ------
        ParameterError
            If the recipe has no strain_map step.
        """
        recipe = Recipe.coerce(params)
        strain = [s for s in recipe.steps if isinstance(s, StrainMapParams)]
        if not strain:
            raise ParameterError("this recipe has no strain_map step to show", field="steps")
        disks = next((s for s in recipe.steps if isinstance(s, FindDisksParams)), None)
        if calibration is None:
            has_cal_steps = any(s.step in ("origin", "origin_fit", "ellipse") for s in recipe.steps)
            if has_cal_steps and cube is not None:
                calibration = CalibrationTool.from_params(cube, recipe, peaks).wait()
            else:
                calibration = recipe.calibration
        return cls(cube, peaks, calibration, params=strain[0], disks=disks, **options)

    @property
    def params(self) -> Recipe:
        """What is shown as a recipe: disk step (if known), calibration steps (if from a tool), strain step."""
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
    def reference_overlay(self) -> dict:
        """The reference region as drawn (scan pixels)."""
        return dict(self._reference)

    @property
    def ready(self) -> bool:
        """True when the maps shown belong to the current parameters."""
        return not self._pending

    def pick(self, which: str, index: int) -> None:
        """Set ``which`` ('g1' or 'g2') to candidate ``index`` of :attr:`basis` (what a click on a spot does)."""
        if which not in ("g1", "g2"):
            raise ParameterError(f"pick 'g1' or 'g2', not {which!r}", field="which")
        if self.basis is None:
            self.basis_message.value = error_text(ParameterError("no candidate spots to pick from; see above"))
            return
        self._picked[which] = tuple(float(v) for v in self.basis.candidates[int(index)])
        self._set_basis(self._picked["g1"], self._picked["g2"])

    def pick_at(self, which: str, x: float, y: float) -> None:
        """Pick the candidate nearest to map point ``(x, y)`` (a click there); a message if none is near."""
        if self.basis is None or not len(self.basis.candidates):
            self._draw_pickers()
            return
        pts = self.basis.candidates + np.asarray(self._centre)
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        i = int(np.argmin(d))
        shortest = float(np.hypot(*self.basis.candidates[0]))
        if d[i] > max(SNAP_MIN_PX, 0.3 * shortest):
            self.basis_message.value = error_text(ParameterError(
                f"no Bragg spot near ({x:.0f}, {y:.0f}); click on one of the marked spots"))
            self._draw_pickers()
            return
        self.pick(which, i)

    def set_reference(self, overlay: dict) -> None:
        """Use this rectangle or polygon (scan pixels) as the reference region."""
        ov = validate_overlay({**overlay, "id": REFERENCE_ID, "color": "#00ff00", "label": "reference"})
        mask = self._region_mask(ov)
        self._reference = ov
        self._sync_map_overlays()
        if not mask.any():
            self.reference_message.value = error_text(ParameterError(
                "the reference region covers no scan position; draw it over the map"))
            return
        self._update(reference_region=mask)

    def select(self, rx: int, ry: int) -> None:
        """Show the pattern of scan position ``(rx, ry)`` with its fitted lattice."""
        self._position = make_overlay("point", POSITION_ID, "#ffd23d", x=int(rx), y=int(ry))
        self._sync_map_overlays()
        self._show_pattern()

    def set_options(self, **changes: Any) -> None:
        """Change fields of the strain step (e.g. ``max_peak_spacing=3``, ``frame_deg=30``)."""
        self._update(**changes)

    def close(self) -> None:
        """Stop the worker and close the widgets."""
        self.busy.cancel()
        self._runner.close(5.0)
        for v in [self.bvm_view, *self.map_views.values(), self.pattern_view]:
            if v is not None:
                v.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- exports ------------------------------------------------------------------------------
    def _require_strain(self) -> StrainMap:
        if self.strain is None:
            raise ParameterError("no strain maps yet: fix the messages above (basis, fit, reference) first")
        return self.strain

    def save_hdf5(self, path: str | os.PathLike) -> str:
        """Write the StrainMap and the recipe that makes it to an HDF5 results file."""
        return self._require_strain().save_hdf5(path, recipe=self.params)

    def save_tiff(self, prefix: str | os.PathLike) -> list[str]:
        """Write ``<prefix>_exx.tif`` ... ``_theta_deg.tif`` (float32 fractions / degrees, NaN masked) and the mask."""
        return self._require_strain().save_tiff(prefix)

    def save_png(self, prefix: str | os.PathLike) -> list[str]:
        """Write ``<prefix>_<map>.png``: each map as shown (colormap, limits) with a labelled colorbar."""
        self._require_strain()
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure

        from .colormaps import lut

        written = []
        for name, view in self.map_views.items():
            # failed fits: gray, not a colour of the scale
            cmap = ListedColormap(lut(view.colormap)[:, :3] / 255.0).with_extremes(bad=(0.6, 0.6, 0.6))
            lo, hi = view.display_limits()
            fig = Figure(figsize=(4.2, 3.4), dpi=120)
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            im = ax.imshow(np.ma.masked_invalid(view.data), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(_TITLES[name])
            ax.set_xlabel("ry")
            ax.set_ylabel("rx")
            fig.colorbar(im, ax=ax, label=_TITLES[name])
            path = f"{os.fspath(prefix)}_{name}.png"
            fig.savefig(path)
            written.append(path)
        return written

    def _export(self, fn: Callable[[str], Any], suffix: str) -> None:
        try:
            out = fn(self._path.value + suffix)
            self.export_message.value = f"saved {out if isinstance(out, str) else ', '.join(out)}"
        except (FourDError, OSError) as exc:
            self.export_message.value = error_text(exc)

    # --- basis and Bragg vector map -------------------------------------------------------------
    def _show_bvm(self, p: StrainMapParams) -> None:
        try:
            bvm, self._centre = corrected_bvm(self.peaks, self.calibration)
        except FourDError as exc:
            self.basis_message.value = error_text(exc)
            self._params = p
            self._picked = {"g1": p.g1, "g2": p.g2}
            return
        self.bvm_view.set_image(bvm)
        try:
            self.basis = suggest_basis(self.peaks, self.calibration)
        except FourDError as exc:
            self.basis_message.value = error_text(exc)
        if self.basis is not None:
            self.bvm_view.set_markers("candidates", self.basis.candidates + np.asarray(self._centre),
                                      style="circle", color="#ffffff", radius=2.5)
            if p.g1 is None:  # the suggested pair is preselected
                p = p.replace(g1=tuple(self.basis.g1.tolist()), g2=tuple(self.basis.g2.tolist()))
        self._params = p
        self._picked = {"g1": p.g1, "g2": p.g2}
        self._draw_pickers()

    def _draw_pickers(self) -> None:
        p = self._params
        cx, cy = self._centre
        ovs = []
        if p.g1 is not None and p.g2 is not None:
            ovs.append(make_overlay("lattice", "lattice", "#b3b3ff", editable=False, x=cx, y=cy, ax=p.g1[0],
                                    ay=p.g1[1], bx=p.g2[0], by=p.g2[1], r=2.0))
        for name, colour in (("g1", "#ff4d4d"), ("g2", "#3dd6ff")):
            vec = self._picked[name]  # what the user picked, even when the pair is not usable
            x, y = (cx, cy) if vec is None else (cx + vec[0], cy + vec[1])
            ovs.append(make_overlay("point", name, colour, x=x, y=y, label=name))
        self._syncing = True
        try:
            self.bvm_view.overlays = ovs
        finally:
            self._syncing = False

    def _on_pick_mode(self, change: dict) -> None:
        self.bvm_view.click_moves = change["new"]
        self.bvm_view.selected = change["new"]

    def _on_bvm_overlays(self, change: dict) -> None:
        if self._syncing or self.bvm_view.dragging:
            return
        cx, cy = self._centre
        for ov in change["new"]:
            if ov["id"] in ("g1", "g2"):
                vec = self._picked[ov["id"]]
                now = (ov["x"] - cx, ov["y"] - cy)
                if vec is None or not np.allclose(now, vec):
                    self.pick_at(ov["id"], ov["x"], ov["y"])
                    if ov["id"] == "g1" and self._pick.value == "g1":
                        self._pick.value = "g2"  # the next click picks the other vector
                    return

    def _set_basis(self, g1: Any, g2: Any) -> None:
        try:
            new = self._params.replace(g1=g1, g2=g2)  # validates: both given, not collinear
        except FourDError as exc:
            # keep the user's pick visible, say what is wrong; the maps stay those of the last valid pair
            self._draw_pickers()
            self.basis_message.value = error_text(exc)
            return
        self.basis_message.value = ""
        self._params = new
        self._draw_pickers()
        self._submit()

    # --- options, reference region, positions ---------------------------------------------------
    def _on_options(self, change: dict) -> None:
        if self._syncing:
            return
        self._update(max_peak_spacing=float(self._spacing.value), min_num_peaks=int(self._min_peaks.value),
                     frame_deg=float(self._frame.value))

    def _update(self, **changes: Any) -> None:
        try:
            new = self._params.replace(**changes)
        except FourDError as exc:
            self.fit_message.value = error_text(exc)
            return
        self._params = new
        self._syncing = True
        try:
            self._spacing.value, self._min_peaks.value = new.max_peak_spacing, new.min_num_peaks
            self._frame.value = new.frame_deg
        finally:
            self._syncing = False
        self._submit()

    def _region_mask(self, ov: dict) -> np.ndarray:
        with warnings.catch_warnings():
            # a region off the scan gets the reference message instead of a warning in the notebook
            warnings.simplefilter("ignore", UserWarning)
            return detector_mask(region_from_overlay(ov), tuple(self.peaks.scan_shape))

    def _on_region_kind(self, change: dict) -> None:
        Rx, Ry = self.peaks.scan_shape
        if change["new"] == "polygon":
            ov = make_overlay("polygon", vertices=[[0, 0], [0, Ry - 1], [max(1, Rx // 4), Ry - 1],
                                                   [max(1, Rx // 4), 0]])
        else:
            ov = make_overlay("rectangle", x0=0, x1=max(1, Rx // 4), y0=0, y1=Ry)
        self.set_reference(ov)

    def _sync_map_overlays(self, source: ImageView | None = None) -> None:
        self._syncing = True
        try:
            for view in self.map_views.values():
                if view is not source:
                    view.overlays = [self._reference, self._position]
        finally:
            self._syncing = False

    def _on_map_overlays(self, change: dict) -> None:
        view = change["owner"]
        if self._syncing or view.dragging:
            return  # the reference recomputes on release
        for ov in view.overlays:
            if ov["id"] == REFERENCE_ID and ov != self._reference:
                self.set_reference(ov)
            elif ov["id"] == POSITION_ID and (ov["x"], ov["y"]) != (self._position["x"], self._position["y"]):
                Rx, Ry = self.peaks.scan_shape
                self.select(int(np.clip(round(ov["x"]), 0, Rx - 1)), int(np.clip(round(ov["y"]), 0, Ry - 1)))

    def _show_pattern(self) -> None:
        if self.pattern_view is None:
            return
        rx, ry = int(self._position["x"]), int(self._position["y"])
        self.pattern_view.set_image(self.cube.pattern(rx, ry))
        self.pattern_view.title = f"pattern ({rx}, {ry})"
        at = self.peaks.at(rx, ry)
        self.pattern_view.set_markers("peaks", np.stack([at["qx"], at["qy"]], -1), style="cross", color="#66ff66",
                                      radius=2.0)
        fit = self.fit
        if fit is None or fit.failure[rx, ry]:
            self.pattern_view.remove_overlays(["fit"])
            why = "no fit yet" if fit is None else "the lattice fit failed here (masked)"
            self.pattern_view.title = f"pattern ({rx}, {ry}): {why}"
            return
        cal = self.calibration
        origin = cal.origin_map[rx, ry] if cal.origin_map is not None else np.asarray(cal.origin, float)
        # the fit lives in the ellipse-corrected frame; the detector shows D g
        D = distortion_matrix(cal.ellipse)
        o = origin + D @ fit.origin[rx, ry]
        a, b = D @ fit.g1[rx, ry], D @ fit.g2[rx, ry]
        self.pattern_view.set_overlay(make_overlay("lattice", "fit", "#ff9933", editable=False, x=o[0], y=o[1],
                                                   ax=a[0], ay=a[1], bx=b[0], by=b[1], r=3.0))

    # --- computing ------------------------------------------------------------------------------
    def _submit(self) -> None:
        p = self._params
        if p.g1 is None or p.g2 is None:
            return  # the basis message says what is missing
        self._pending = True
        self._runner.submit(ToolRequest(p, self.busy.start("fitting the lattice")))

    def _compute(self, req: ToolRequest[StrainMapParams]) -> tuple[LatticeFit, StrainMap]:
        p = req.params
        key = tuple(getattr(p, f) for f in _FIT_FIELDS)
        with self._lock:
            fit = self.fit if key == self._fit_key else None
        if fit is None:
            # the same calls as strain_map(peaks, p, calibration), split so the cheap part can rerun alone
            fit = fit_lattice(self.peaks, p.g1, p.g2, self.calibration, max_peak_spacing=p.max_peak_spacing,
                              min_num_peaks=p.min_num_peaks, weights=p.weights, fit_origin=p.fit_origin,
                              refine=p.refine)
            if not fit.valid.any():
                raise ParameterError(
                    f"no position could be fitted (at most {int(fit.num_peaks.max())} peaks indexed, "
                    f"{p.min_num_peaks} needed): check g1/g2 on the Bragg vector map, raise max spacing or lower "
                    "min peaks", field="min_num_peaks")
        if req.cancel.is_set():
            raise _Cancelled()
        ref = None if p.reference_g1 is None else (p.reference_g1, p.reference_g2)
        units = self.peaks.units if self.peaks.units != "px" else None
        try:
            sm = strain_map_from_fit(fit, self.calibration, reference=ref, reference_region=p.reference_region,
                                     frame_deg=p.frame_deg, units=units)
        except FourDError as exc:
            raise _ReferenceError(str(exc), fit, key) from exc
        return fit, sm

    def _deliver(self, req: ToolRequest[StrainMapParams], result: tuple[LatticeFit, StrainMap]) -> None:
        fit, sm = result
        if req.cancel.is_set():
            self._pending = False
            self.busy.finish("cancelled; the maps shown are the previous ones")
            return
        p = req.params
        with self._lock:
            self.fit, self.strain = fit, sm
            self._fit_key = tuple(getattr(p, f) for f in _FIT_FIELDS)
        self.fit_message.value = ""
        self.reference_message.value = ""
        self._show_maps(sm)
        self._show_pattern()
        self._pending = False
        n = sm.mask.size
        self.busy.finish(f"{n - int(sm.mask.sum())}/{n} positions fitted")
        self.updates += 1
        for fn in list(self._callbacks):
            try:
                fn(self)
            except Exception as exc:  # a user callback must not stop the mapper
                self.busy.status.value = f"on_update callback failed: {exc}"

    def _failed(self, req: ToolRequest[StrainMapParams], exc: BaseException) -> None:
        self._pending = False
        if isinstance(exc, _Cancelled):
            self.busy.finish("cancelled; the maps shown are the previous ones")
            return
        self.busy.finish("")
        if isinstance(exc, _ReferenceError):
            with self._lock:  # the fit is good; only the reference is not
                self.fit, self._fit_key = exc.fit, exc.key
            self.reference_message.value = error_text(exc.__cause__ or exc)
        else:
            self.fit_message.value = error_text(exc)

    def _show_maps(self, sm: StrainMap) -> None:
        shown = {n: getattr(sm, n) * _DISPLAY_SCALE[n] for n in MAP_NAMES}
        # one symmetric scale for the three strain components (comparable colours), its own for θ
        strain_lim = _symmetric_limit(np.stack([shown[n] for n in MAP_NAMES[:3]]))
        for n, view in self.map_views.items():
            lim = strain_lim if n != "theta_deg" else _symmetric_limit(shown[n])
            with view.hold_sync():
                view.set_image(shown[n])
                view.vmin, view.vmax = -lim, lim


class _Cancelled(Exception):
    """The user pressed cancel: the result is dropped."""


class _ReferenceError(Exception):
    """The lattice fit worked but the reference region holds no valid fit (kept so it need not rerun)."""

    def __init__(self, message: str, fit: LatticeFit, key: tuple) -> None:
        super().__init__(message)
        self.fit, self.key = fit, key


def _symmetric_limit(values: np.ndarray) -> float:
    """Display limit ``L`` of a signed map shown on ``[-L, L]``: the 99.5th percentile of ``|v|``."""
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size:
        return 1.0
    return max(float(np.percentile(finite, 99.5)), 1e-9)
