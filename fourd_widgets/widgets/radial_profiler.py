"""``RadialProfiler``: the mean pattern with its k bands as annuli, V(k), the mean profile and G(r), live.

A view over :class:`fourd_widgets.tools.radial_profiler.RadialProfilerSession`
(``profiler.session``), which holds the records and the radial statistics of
every pattern, and decides what to recompute (a k band or the region only
redoes V(k) and the maps from the kept statistics; the PDF record redoes G(r)):

* the mean pattern (log scale) carries one annulus per k band of the FEM map
  and one for the k range of G(r): drag their edges and the plots follow while
  you drag (the newest drag wins);
* three bqplot plots: the mean radial profile, V(k) (the annular mean of the
  normalised variance; thick where it lies inside the bands) and G(r);
* the map of the bands (local FEM, or an annular symmetry order) over the scan;
  tick "region" and drag the rectangle on it to get the profiles, V(k) and G(r)
  of the positions inside.

``fw.run(profiler.params, cube)`` gives the ``radial_statistics``, ``fem`` and
``pdf`` results shown.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..analysis.fem import RadialStatisticsParams
from ..analysis.fem_maps import FEMParams
from ..analysis.pdf import PDFParams
from ..core.datacube import DataCube
from ..core.recipe import Recipe
from ..tools.radial_profiler import MAP_FEM, REGION_ID, RadialProfilerSession
from .help_text import explain_controls
from .image_view import ImageView
from .radial_profiler_parts import HELP, Plots
from .tool_view import Busy, ToolView, message_html, message_label

__all__ = ["RadialProfiler"]


class RadialProfiler(ToolView):
    """Radial profiles, FEM V(k), band maps and G(r), with the k ranges dragged on the pattern.

    Parameters
    ----------
    cube : DataCube
        With a calibrated origin; k in 1/Å (``reciprocal_step``) for G(r).
    statistics, fem, pdf : records, optional
        As :class:`~fourd_widgets.tools.radial_profiler.RadialProfilerSession`.
    size : int
        Canvas width of the pattern and the map, CSS px.

    Attributes
    ----------
    session : RadialProfilerSession
    pattern_view, map_view : ImageView
    plots : Plots
        The bqplot figures and their lines (``plots.V``, ``plots.V_band``, ``plots.mean``, ``plots.G``).

    Examples
    --------
    >>> import numpy as np
    >>> from fourd_widgets.core import Calibration
    >>> x, y = np.meshgrid(np.arange(32) - 15.5, np.arange(32) - 15.5, indexing="ij")
    >>> ring = np.exp(-0.5 * ((np.hypot(x, y) - 9) / 1.5) ** 2)
    >>> p = RadialProfiler(DataCube(np.ones((3, 3, 1, 1)) * ring, Calibration(origin=(15.5, 15.5)))).wait()
    >>> [ov["id"] for ov in p.pattern_view.overlays], p.map_view.image_shape
    (['band0'], [3, 3])
    >>> p.close()
    """

    def __init__(self, cube: DataCube, statistics: RadialStatisticsParams | None = None, *,
                 fem: FEMParams | None = None, pdf: PDFParams | None = None, size: int = 300) -> None:
        self.session = s = RadialProfilerSession(cube, statistics, fem=fem, pdf=pdf, start=False)
        cal = cube.calibration
        lay = w.Layout
        self.busy = Busy(s)
        self.statistics_message, self.bands_message = message_label(), message_label()
        self.region_message, self.pdf_message = message_label(), message_label()
        self.pattern_view = ImageView(title="mean pattern: drag the k bands", colormap="magma", scale="log",
                                      size=size, axis_names=["qx", "qy"], pixel_size=cal.reciprocal_step,
                                      units=cal.reciprocal_units if cal.reciprocal_step else "px")
        self.map_view = ImageView(title=MAP_FEM, colormap="viridis", size=size, axis_names=["rx", "ry"],
                                  pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px")
        maps = [MAP_FEM] + [f"symmetry {n}" for n in s.stats_params.symmetry_orders]
        self._map = w.Dropdown(options=maps, value=MAP_FEM, description="map", layout=lay(width="200px"))
        self._add = w.Button(description="add band", layout=lay(width="90px"))
        self._remove = w.Button(description="remove band", layout=lay(width="110px"))
        self._region = w.Checkbox(value=False, description="region", indent=False, layout=lay(width="90px"))
        self._density = w.Text(value="" if s.pdf_params.density is None else f"{s.pdf_params.density:g}",
                               description="density", placeholder="atoms/Å³", layout=lay(width="190px"))
        self._damping = w.BoundedFloatText(value=s.pdf_params.damping, min=0, max=100, step=0.1,
                                           description="damping", layout=lay(width="160px"))
        self._lorch = w.Checkbox(value=s.pdf_params.lorch, description="Lorch", indent=False,
                                 layout=lay(width="80px"))
        self._r_max = w.BoundedFloatText(value=s.pdf_params.r_max, min=1, max=200, step=1, description="r max",
                                         layout=lay(width="150px"))
        self.plots = Plots(units=cal.reciprocal_units if cal.reciprocal_step else "px")
        left = [w.HBox([self._add, self._remove]), self.bands_message, self.pattern_view]
        right = [w.HBox([self._map, self._region]), self.region_message, self.map_view]
        pdf_row = w.HBox([self._density, self._damping, self._lorch, self._r_max])
        self.widget = w.VBox([self.busy.box, self.statistics_message,
                              w.HBox([w.VBox(left), w.VBox(right)], layout=lay(flex_flow="row wrap")),
                              w.HBox([self.plots.mean_figure, self.plots.V_figure], layout=lay(flex_flow="row wrap")),
                              pdf_row, self.pdf_message, self.plots.G_figure])
        self.widget.add_class("fw-radial-profiler")
        explain_controls(self.widget, HELP)

        s.listen(self._on_session)
        self.pattern_view.observe(self._on_pattern_overlays, names=["overlays", "dragging"])
        self.map_view.observe(self._on_map_overlays, names=["overlays", "dragging"])
        self._map.observe(self._on_map_choice, names="value")
        self._region.observe(self._on_region_toggle, names="value")
        self._add.on_click(lambda _: self._add_band())
        self._remove.on_click(lambda _: s.remove_band(len(s.fem_params.k_ranges) - 1))
        self._density.observe(self._on_density, names="value")
        for ctl, field in ((self._damping, "damping"), (self._lorch, "lorch"), (self._r_max, "r_max")):
            ctl.observe(lambda ch, f=field: self._unless_syncing(lambda: s.set_pdf(**{f: ch["new"]})), names="value")
        s.start()

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, **options: Any) -> "RadialProfiler":
        """Rebuild a profiler from its :attr:`params` (a Recipe, its dict or its JSON)."""
        cube, stats, fem, pdf = RadialProfilerSession.recipe_arguments(cube, params)
        return cls(cube, stats, fem=fem, pdf=pdf, **options)

    # --- the session's state, as the profiler's ---------------------------------------------------
    stats = property(lambda self: self.session.stats, doc="The radial statistics of every pattern.")
    result = property(lambda self: self.session.result, doc="V(k) and the maps shown (a FEMResult).")
    pdf = property(lambda self: self.session.pdf, doc="G(r) shown (a PDFResult), or None.")

    def set_band(self, index: int, k_range: Any) -> None:
        """Move k band ``index`` to ``(lo, hi)`` (what dragging its annulus does)."""
        self.session.set_band(index, k_range)

    def set_region(self, overlay: dict | None) -> None:
        """Profiles of the positions inside a rectangle or polygon (scan px); None: the whole scan."""
        self.session.set_region(overlay)

    def set_pdf(self, **changes: Any) -> None:
        """Change fields of the PDF record (density, damping, lorch, r_max, k_min, k_max...)."""
        self.session.set_pdf(**changes)

    def _views(self) -> list[Any]:
        return [self.pattern_view, self.map_view]

    # --- session -> views -----------------------------------------------------------------------
    def _on_session(self, event: str, value: Any) -> None:
        if event == "message":
            where, text, level = value
            target = {"statistics": self.statistics_message, "bands": self.bands_message, "error": self.bands_message,
                      "region": self.region_message, "pdf": self.pdf_message}.get(where)
            if target is not None:
                target.value = message_html(text, level)
        elif event == "pattern":
            self.pattern_view.set_image(value)
        elif event == "overlays":
            if not self.pattern_view.dragging:  # a drag in progress keeps the user's annulus under the mouse
                self._synced(lambda: setattr(self.pattern_view, "overlays", value))
        elif event == "profiles":
            self.plots.show_profiles(value)
        elif event == "pdf":
            self.plots.show_pdf(value)
        elif event == "maps":
            image = value.get(self._map.value, value.get(MAP_FEM))
            if image is not None:
                self.map_view.set_image(image)
                self.map_view.title = self._map.value if self._map.value in value else MAP_FEM
        elif event == "region" and not self.map_view.dragging:
            self._synced(lambda: setattr(self.map_view, "overlays", [value]))

    # --- browser -> session -----------------------------------------------------------------------
    def _on_pattern_overlays(self, change: dict) -> None:
        if self._syncing:
            return
        s = self.session
        shown = {ov["id"]: ov for ov in s.overlays()}
        for ov in self.pattern_view.overlays:
            old = shown.get(ov["id"])
            if old is not None and (ov["r_in"], ov["r_out"]) != (old["r_in"], old["r_out"]):
                s.set_band_overlay(ov)  # live, while dragging too: the newest request wins
                return
        if not self.pattern_view.dragging and any((ov["x"], ov["y"]) != s.origin for ov in self.pattern_view.overlays):
            self._synced(lambda: setattr(self.pattern_view, "overlays", s.overlays()))  # bands stay on the origin

    def _on_map_overlays(self, change: dict) -> None:
        if self._syncing or not self._region.value:
            return
        for ov in self.map_view.overlays:
            if ov["id"] == REGION_ID and ov != self.session.region_overlay:
                self.session.set_region(ov)

    def _on_region_toggle(self, change: dict) -> None:
        if change["new"]:
            self.session.set_region(self.session.default_region())
        else:
            self._synced(lambda: setattr(self.map_view, "overlays", []))
            self.session.set_region(None)

    def _on_map_choice(self, change: dict) -> None:
        name = change["new"]
        order = None if name == MAP_FEM else int(name.split()[-1])
        self.session.set_fem(symmetry_order=order)

    def _on_density(self, change: dict) -> None:
        text = change["new"].strip()
        if not text:
            self.session.set_pdf(density=None, r_cut=None)
            return
        try:
            value = float(text)
        except ValueError:
            self.pdf_message.value = message_html(f"density: {text!r} is not a number (atoms/Å³, a-Si: 0.05)")
            return
        self.session.set_pdf(density=value)

    def _add_band(self) -> None:
        s = self.session
        if s.stats is None:
            return
        lo, hi = s.fem_params.k_ranges[-1]
        width = hi - lo
        end = float(s.stats.axis[-1])
        start = hi + width if hi + 2 * width <= end else max(float(s.stats.axis[0]), lo - 2 * width)
        s.set_band(len(s.fem_params.k_ranges), (round(start, 4), round(start + width, 4)))
