"""``StrainMapper``: lattice vectors picked on the Bragg vector map, strain maps, reference region, patterns.

A view over :class:`fourd_widgets.tools.strain.StrainSession` (``mapper.session``),
which holds the record, the candidates, the lattice fit and the maps, and decides
what to recompute (a new basis or fit option refits on the worker; the reference
region and frame only redo the strain step):

* The Bragg vector map (origin-relative, ellipse-corrected: the frame of g1, g2)
  shows the candidate spots as markers and the chosen ``g1``, ``g2`` as two
  points; the suggested pair is preselected. Choose which vector a click sets
  ("pick g1" / "pick g2") and click near a spot: the point snaps to the nearest candidate.
* The four maps ``ε_xx, ε_yy, ε_xy`` (shared symmetric limits) and ``θ``
  (its own symmetric limits) use the diverging colormap; failed positions are
  NaN (masked, never filled) and drawn transparent.
* The reference region is a rectangle (or polygon) drawn on every map: editing
  it on any map moves it on all.
* With a cube, a click on a map shows that position's pattern with its
  detected peaks and the fitted lattice overlaid.
* The route: "disk detection" (the peaks + ``strain_map``) or "whole-pattern fit"
  (:func:`~fourd_widgets.analysis.lattice_fit.whole_pattern_fit`, for low dose: no disk
  detection, started from the picked basis and reference region). The whole-pattern route
  shows the σ map of each strain map beside the maps and a "σ limit" slider that masks
  positions without a refit; the recipe is then the ``whole_pattern_fit`` step.

``fw.run(mapper.params, cube)["strain_map"]`` equals :attr:`StrainMapper.strain`
(NaN positions included) when the mapper knows how its peaks and calibration
were made (``disks=`` and a :class:`~fourd_widgets.widgets.calibration_tool.CalibrationTool`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import ipywidgets as w
import numpy as np

from ..analysis.disks import FindDisksParams, PeakTable
from ..analysis.strain import StrainMapParams
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import FourDError
from ..core.recipe import Recipe
from ..tools.strain import MAP_NAMES, POSITION_ID, REFERENCE_ID, StrainSession
from ..tools.strain_route import DISKS, WHOLE_PATTERN, whole_pattern_step
from .calibration_tool import CalibrationTool
from .help_text import STRAIN, explain_controls
from .image_view import ImageView
from .overlays import make_overlay
from .strain_sigma import SigmaPanel
from .tool_view import Busy, ToolView, error_text, message_html, message_label

__all__ = ["StrainMapper", "MAP_NAMES", "REFERENCE_ID", "POSITION_ID", "STRAIN_COLORMAP"]

_TITLES = {"exx": "ε_xx (%)", "eyy": "ε_yy (%)", "exy": "ε_xy (%)", "theta_deg": "θ (°)"}
STRAIN_COLORMAP = "rdbu"


class StrainMapper(ToolView):
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
    session : StrainSession
        The record, basis, fit and maps (``basis``, ``fit``, ``strain`` are the session's).
    bvm_view : ImageView
        The Bragg vector map with candidates and the g1 / g2 pickers.
    map_views : dict of str -> ImageView
        ``'exx', 'eyy', 'exy', 'theta_deg'``.
    pattern_view : ImageView or None
        The clicked position's pattern with its peaks and fitted lattice.
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

    def __init__(self, cube: DataCube | None, peaks: PeakTable, calibration: Any, *,
                 params: StrainMapParams | None = None, disks: FindDisksParams | None = None,
                 size: int = 240) -> None:
        if isinstance(calibration, CalibrationTool):
            calibration = calibration.session
        self.session = s = StrainSession(cube, peaks, calibration, params=params, disks=disks, start=False)
        cal = s.calibration
        self.basis_message, self.fit_message = message_label(), message_label()
        self.reference_message, self.export_message = message_label(), message_label()
        self.busy = Busy(s)
        lay = w.Layout
        p = s.strain_params
        self._pick = w.ToggleButtons(options=["g1", "g2"], value="g1", description="click picks",
                                     style={"button_width": "50px"})
        self._spacing = w.BoundedFloatText(value=p.max_peak_spacing, min=0.1, max=1e3, step=0.5,
                                           description="max spacing", layout=lay(width="170px"))
        self._min_peaks = w.BoundedIntText(value=p.min_num_peaks, min=3, max=1000, description="min peaks",
                                           layout=lay(width="150px"))
        self._frame = w.FloatText(value=p.frame_deg, description="frame °", layout=lay(width="150px"))
        self._region_kind = w.Dropdown(options=("rectangle", "polygon"), value="rectangle", description="reference",
                                       layout=lay(width="190px"))
        self._path = w.Text(value="strain", description="save as", layout=lay(width="220px"))
        self._save = {kind: w.Button(description=kind, layout=lay(width="60px")) for kind in ("HDF5", "TIFF", "PNG")}
        q_axes = dict(pixel_size=cal.reciprocal_step, units=cal.reciprocal_units if cal.reciprocal_step else "px",
                      axis_names=["qx", "qy"])
        self.bvm_view = ImageView(title="Bragg vector map (click a spot)", colormap="magma", scale="log",
                                  size=max(size, 320), click_moves="g1", selected="g1", **q_axes)
        self.map_views = {n: ImageView(title=_TITLES[n], colormap=STRAIN_COLORMAP, contrast="absolute", size=size,
                                       value_units="°" if n == "theta_deg" else "%",
                                       axis_names=["rx", "ry"], click_moves=POSITION_ID, selected=REFERENCE_ID,
                                       pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px")
                          for n in MAP_NAMES}
        self.sigma = SigmaPanel(self, s.set_sigma_limit, lambda **f: s.lowdose and s.lowdose.set_options(**f),
                                size=size, axis_names=["rx", "ry"],
                                pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px")
        self._route = w.ToggleButtons(options=[("disk detection", DISKS), ("whole-pattern fit", WHOLE_PATTERN)],
                                      value=DISKS, description="route", disabled=cube is None,
                                      tooltip="whole-pattern fit: no disk detection, σ maps (for low dose)")
        sig = list(self.sigma.sigma_views.values())
        self._sigma_box = w.VBox([self.sigma.controls, self.sigma.sigma_limit, w.HBox(sig[:2]), w.HBox(sig[2:])],
                                 layout=lay(display="none"))
        self.pattern_view = (ImageView(title="pattern", colormap="gray", scale="log", size=max(size, 320),
                                       **q_axes) if cube is not None else None)
        left = [w.HBox([self._pick]), self.basis_message, self.bvm_view]
        if self.pattern_view is not None:
            left.append(self.pattern_view)
        maps = list(self.map_views.values())
        right = [w.HBox([self._spacing, self._min_peaks, self._frame]), self.fit_message,
                 w.HBox([self._region_kind, self.reference_message]),
                 self._route,
                 w.HBox([w.VBox([w.HBox(maps[:2]), w.HBox(maps[2:])]), self._sigma_box],  # σ beside the maps
                        layout=lay(flex_flow="row wrap", align_items="flex-start")),
                 w.HBox([self._path, *self._save.values(), self.export_message])]
        self.widget = w.VBox([self.busy.box, w.HBox([w.VBox(left), w.VBox(right)],  # wraps, never crops
                                                    layout=lay(align_items="flex-start", flex_flow="row wrap"))])
        self.widget.add_class("fw-strain-mapper")
        explain_controls(self.widget, STRAIN)

        s.listen(self._on_session)
        for where, (text, level) in s.messages.items():
            self._on_session("message", (where, text, level))
        if s.bvm is not None:
            self.bvm_view.set_image(s.bvm)
        if s.basis is not None:
            self.bvm_view.set_markers("candidates", s.basis.candidates + np.asarray(s.center),
                                      style="circle", color="#ffffff", radius=2.5)
        self._draw_pickers()
        self._sync_map_overlays()
        self._pick.observe(self._on_pick_mode, names="value")
        self.bvm_view.observe(self._on_bvm_overlays, names="overlays")
        for view in self.map_views.values():
            view.observe(self._on_map_overlays, names=["overlays", "dragging"])
        for ctl in (self._spacing, self._min_peaks, self._frame):
            ctl.observe(self._on_options, names="value")
        self._region_kind.observe(lambda ch: s.reference_kind(ch["new"]), names="value")
        self._route.observe(lambda ch: self._unless_syncing(s.set_route, ch["new"]), names="value")
        self._save["HDF5"].on_click(lambda _: self._export(self.save_hdf5, ".h5"))
        self._save["TIFF"].on_click(lambda _: self._export(self.save_tiff, ""))
        self._save["PNG"].on_click(lambda _: self._export(self.save_png, ""))
        s.start()

    @classmethod
    def from_params(cls, cube: DataCube | None, peaks: PeakTable, params: Recipe | dict | str,
                    calibration: Any = None, **options: Any) -> "StrainMapper":
        """Rebuild a mapper from its :attr:`params` (a Recipe, its dict or its JSON).

        The calibration is, in order: the one given; the recipe's calibration
        steps run on ``cube``; the recipe's calibration.

        Raises
        ------
        ParameterError
            If the recipe has no strain_map step.
        """
        if isinstance(calibration, CalibrationTool):
            calibration = calibration.session
        if (wp := whole_pattern_step(params)) is not None:  # the whole-pattern route
            mapper = cls(cube, peaks, calibration if calibration is not None else Recipe.coerce(params).calibration,
                         **options)
            mapper.set_route(WHOLE_PATTERN, wp)
            return mapper
        cal, strain, disks = StrainSession.recipe_arguments(cube, peaks, params, calibration)
        return cls(cube, peaks, cal, params=strain, disks=disks, **options)

    # --- the session's state, as the mapper's ---------------------------------------------------
    peaks = property(lambda self: self.session.peaks)
    disks = property(lambda self: self.session.disks)
    calibration: Calibration = property(lambda self: self.session.calibration)  # type: ignore[assignment]
    basis = property(lambda self: self.session.basis, doc="The candidates and the current pick.")
    fit = property(lambda self: self.session.fit, doc="The current lattice fit.")
    strain = property(lambda self: (self.session.strain if self.session.lowdose is None else
                                    self.session.lowdose.strain),
                      doc="The maps shown (a StrainMap; a StrainSigmaMap with the whole-pattern route).")
    route = property(lambda self: self.session.route, doc="'disks' or 'whole_pattern'.")

    def set_route(self, route: str, params: Any = None, **options: Any) -> None:
        """Show the maps of ``route`` ('disks' or 'whole_pattern'): what the route buttons do."""
        self.session.set_route(route, params, **options)

    def set_sigma_limit(self, percent: float | None) -> None:
        """Mask positions whose largest strain σ exceeds ``percent`` % (None: no limit): the σ-limit slider."""
        self.sigma.percent(percent)
    strain_params = property(lambda self: self.session.strain_params, doc="The strain step alone.")
    g1 = property(lambda self: self.session.g1, doc="The chosen g1 (px, origin-relative, ellipse-corrected).")
    g2 = property(lambda self: self.session.g2, doc="The chosen g2.")
    ready = property(lambda self: self.session.ready, doc="True when the maps shown belong to the current record.")
    reference_overlay = property(lambda self: dict(self.session.reference), doc="The reference region as drawn.")
    _centre = property(lambda self: self.session.center)

    def pick(self, which: str, index: int) -> None:
        """Set ``which`` ('g1' or 'g2') to candidate ``index`` of :attr:`basis` (what a click on a spot does)."""
        self.session.pick(which, index)

    def pick_at(self, which: str, x: float, y: float) -> None:
        """Pick the candidate nearest to map point ``(x, y)`` (a click there); a message if none is near."""
        self.session.pick_at(which, x, y)

    def set_reference(self, overlay: dict) -> None:
        """Use this rectangle or polygon (scan pixels) as the reference region."""
        self.session.set_reference(overlay)

    def select(self, rx: int, ry: int) -> None:
        """Show the pattern of scan position ``(rx, ry)`` with its fitted lattice."""
        self.session.select(rx, ry)

    def set_options(self, **changes: Any) -> None:
        """Change fields of the strain step (e.g. ``max_peak_spacing=3``, ``frame_deg=30``)."""
        self.session.set_options(**changes)

    def save_hdf5(self, path: str | os.PathLike) -> str:
        """Write the StrainMap and the recipe that makes it to an HDF5 results file."""
        return self.session.save_hdf5(path)

    def save_tiff(self, prefix: str | os.PathLike) -> list[str]:
        """Write ``<prefix>_exx.tif`` ... ``_theta_deg.tif`` (float32 fractions / degrees, NaN masked) and the mask."""
        return self.session.save_tiff(prefix)

    def save_png(self, prefix: str | os.PathLike) -> list[str]:
        """Write ``<prefix>_<map>.png``: each map as shown (colormap, limits) with a labelled colorbar."""
        from matplotlib.colors import ListedColormap

        from .colormaps import lut

        self.session._require_strain()
        return [self.session.export_png(f"{os.fspath(prefix)}_{name}.png", name, title=_TITLES[name],
                                        colormap=ListedColormap(lut(view.colormap)[:, :3] / 255.0),
                                        limits=view.display_limits())
                for name, view in self.map_views.items()]

    def _export(self, fn: Callable[[str], Any], suffix: str) -> None:
        try:
            out = fn(self._path.value + suffix)
            self.export_message.value = f"saved {out if isinstance(out, str) else ', '.join(out)}"
        except (FourDError, OSError) as exc:
            self.export_message.value = error_text(exc)

    def _views(self) -> list[Any]:
        return [self.bvm_view, *self.map_views.values(), self.pattern_view, *self.sigma.sigma_views.values()]

    # --- session -> views -----------------------------------------------------------------------
    def _on_session(self, event: str, value: Any) -> None:
        s = self.session
        if event == "message":
            where, text, level = value
            target = {"basis": self.basis_message, "fit": self.fit_message, "error": self.fit_message,
                      "reference": self.reference_message, "export": self.export_message}.get(where)
            if target is not None:
                target.value = message_html(text, level)
        elif event == "pickers":
            self._draw_pickers()
        elif event == "options":
            p = s.strain_params
            self._synced(lambda: (setattr(self._spacing, "value", p.max_peak_spacing),
                                  setattr(self._min_peaks, "value", p.min_num_peaks),
                                  setattr(self._frame, "value", p.frame_deg)))
        elif event == "overlays":
            self._sync_map_overlays()
        elif event == "maps":
            for n, view in self.map_views.items():
                shown, lim = value[n]
                with view.hold_sync():
                    view.set_image(shown)
                    view.vmin, view.vmax = -lim, lim
        elif event == "sigma_maps":
            self.sigma.show_maps(value)
        elif event == "sigma":
            self.sigma.show_limit(value)
        elif event == "route":
            self._synced(lambda: setattr(self._route, "value", value))
            self._sigma_box.layout.display = None if value == WHOLE_PATTERN else "none"
            if s.lowdose is not None:
                self.sigma.show_record(s.lowdose.record)
        elif event == "pattern" and self.pattern_view is not None:
            self._show_pattern(value)

    def _show_pattern(self, v: dict) -> None:
        pv = self.pattern_view
        pv.set_image(v["image"])
        pv.title = v["title"]
        pv.set_markers("peaks", v["peaks"], style="cross", color="#66ff66", radius=2.0)
        if v["lattice"] is None:
            pv.remove_overlays(["fit"])
            return
        o, a, b = v["lattice"]
        pv.set_overlay(make_overlay("lattice", "fit", "#ff9933", editable=False, x=o[0], y=o[1],
                                    ax=a[0], ay=a[1], bx=b[0], by=b[1], r=3.0))

    def _draw_pickers(self) -> None:
        s = self.session
        p, (cx, cy) = s.strain_params, s.center
        ovs = []
        if p.g1 is not None and p.g2 is not None:
            ovs.append(make_overlay("lattice", "lattice", "#b3b3ff", editable=False, x=cx, y=cy, ax=p.g1[0],
                                    ay=p.g1[1], bx=p.g2[0], by=p.g2[1], r=2.0))
        for name, colour in (("g1", "#ff4d4d"), ("g2", "#3dd6ff")):
            vec = s.picked[name]  # what the user picked, even when the pair is not usable
            x, y = (cx, cy) if vec is None else (cx + vec[0], cy + vec[1])
            ovs.append(make_overlay("point", name, colour, x=x, y=y, label=name))
        self._synced(lambda: setattr(self.bvm_view, "overlays", ovs))

    def _sync_map_overlays(self) -> None:
        ovs = [self.session.reference, self.session.position]
        self._synced(lambda: [setattr(view, "overlays", ovs) for view in self.map_views.values()])

    # --- browser -> session -----------------------------------------------------------------------
    def _on_pick_mode(self, change: dict) -> None:
        self.bvm_view.click_moves = change["new"]
        self.bvm_view.selected = change["new"]

    def _on_bvm_overlays(self, change: dict) -> None:
        if self._syncing or self.bvm_view.dragging:
            return
        cx, cy = self.session.center
        for ov in change["new"]:
            if ov["id"] in ("g1", "g2"):
                vec = self.session.picked[ov["id"]]
                if vec is None or not np.allclose((ov["x"] - cx, ov["y"] - cy), vec):
                    self.session.pick_at(ov["id"], ov["x"], ov["y"])
                    if ov["id"] == "g1" and self._pick.value == "g1":
                        self._pick.value = "g2"  # the next click picks the other vector
                    return

    def _on_options(self, change: dict) -> None:
        if not self._syncing:
            self.session.set_options(max_peak_spacing=float(self._spacing.value),
                                     min_num_peaks=int(self._min_peaks.value), frame_deg=float(self._frame.value))

    def _on_map_overlays(self, change: dict) -> None:
        view = change["owner"]
        if self._syncing or view.dragging:
            return  # the reference recomputes on release
        s = self.session
        for ov in view.overlays:
            if ov["id"] == REFERENCE_ID and ov != s.reference:
                s.set_reference(ov)
            elif ov["id"] == POSITION_ID and (ov["x"], ov["y"]) != (s.position["x"], s.position["y"]):
                s.select(round(ov["x"]), round(ov["y"]))
