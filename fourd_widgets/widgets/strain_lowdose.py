"""``LowDoseStrainMapper``: strain maps of the whole-pattern lattice fit with a σ map beside each, and a σ limit.

A view over :class:`fourd_widgets.tools.strain_lowdose.LowDoseStrainSession`. The four maps
``ε_xx, ε_yy, ε_xy`` (shared symmetric limits, %) and ``θ`` (°) each have their standard-error
map beside them (``σ``, from the Fisher information of each pattern's Poisson fit). Dragging the
"σ limit" slider masks the positions whose largest strain σ exceeds it (no refit; the limit is
the record's ``max_sigma``, so the saved recipe replays the same mask). The dose scale
(electrons per data unit) and the scan pooling are fields of the fit and refit when changed.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np

from ..analysis.lattice_fit import WholePatternFitParams
from ..core.datacube import DataCube
from ..tools.strain_compute import MAP_NAMES
from ..tools.strain_lowdose import SIGMA_NAMES, LowDoseStrainSession
from .image_view import ImageView
from .strain_sigma import STRAIN_TITLES, SigmaPanel
from .tool_view import Busy, ToolView, message_label

__all__ = ["LowDoseStrainMapper"]


class LowDoseStrainMapper(ToolView):
    """Strain at low dose: whole-pattern lattice fit, strain maps, σ maps and a σ limit to drag.

    Parameters
    ----------
    cube : DataCube
    params : WholePatternFitParams, optional
    template : ProbeTemplate or (Qx, Qy) array, optional
        The probe, e.g. a vacuum recording.
    reference : StrainMap or (g1, g2), optional
    size : int
        Canvas width of each map, CSS px.

    Attributes
    ----------
    session : LowDoseStrainSession
    map_views, sigma_views : dict of str -> ImageView
        The strain maps and their σ maps (``'sigma_exx'``...).
    sigma_limit : ipywidgets.FloatSlider
        The σ limit in percent (the slider's right end: no limit).
    """

    def __init__(self, cube: DataCube, params: WholePatternFitParams | None = None, *, template: Any = None,
                 reference: Any = None, size: int = 200) -> None:
        self.session = s = LowDoseStrainSession(cube, params, template=template, reference=reference, start=False)
        cal = cube.calibration
        self.busy = Busy(s)
        self.fit_message = message_label()
        lay = w.Layout
        p = s.record
        axes = dict(axis_names=["rx", "ry"], pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px")
        self.map_views = {n: ImageView(title=STRAIN_TITLES[n], colormap="rdbu", contrast="absolute", size=size,
                                       value_units="°" if n == "theta_deg" else "%", **axes) for n in MAP_NAMES}
        self.sigma = SigmaPanel(self, s.set_sigma_limit, size=size, **axes)
        self.sigma_views, self.sigma_limit = self.sigma.sigma_views, self.sigma.sigma_limit
        self._dose = w.BoundedFloatText(value=p.counts_per_unit, min=1e-9, max=1e12, description="e⁻ per unit",
                                        layout=lay(width="200px"),
                                        tooltip="Electrons per data unit (1 for counted data): sets the σ maps")
        self._pool = w.BoundedFloatText(value=p.pool_sigma, min=0, max=100, step=0.5, description="pool σ (steps)",
                                        layout=lay(width="200px"),
                                        tooltip="Average the fitted lattice over a Gaussian scan neighbourhood")
        rows = [w.HBox([self.map_views[n], self.sigma_views[sn]]) for n, sn in zip(MAP_NAMES, SIGMA_NAMES)]
        self.widget = w.VBox([self.busy.box, w.HBox([self._dose, self._pool]), self.fit_message, self.sigma_limit,
                              w.HBox([w.VBox(rows[:2]), w.VBox(rows[2:])],
                                     layout=lay(flex_flow="row wrap", align_items="flex-start"))])
        self.widget.add_class("fw-lowdose-strain")
        s.listen(self._on_session)
        self._dose.observe(lambda ch: s.set_options(counts_per_unit=float(ch["new"])), names="value")
        self._pool.observe(lambda ch: s.set_options(pool_sigma=float(ch["new"])), names="value")
        s.start()

    @classmethod
    def from_params(cls, cube: DataCube, params: Any, **options: Any) -> "LowDoseStrainMapper":
        """Rebuild the mapper from its :attr:`params` (a Recipe, its dict or JSON)."""
        rec = LowDoseStrainSession.from_params(cube, params, start=False)
        rec.close()
        return cls(cube, rec.record, **options)

    strain = property(lambda self: self.session.strain, doc="The maps shown (a StrainSigmaMap).")

    def set_sigma_limit(self, percent: float | None) -> None:
        """Mask positions whose largest strain σ exceeds ``percent`` % (None: no limit): what the slider does."""
        self.sigma.percent(percent)

    def _on_session(self, event: str, value: Any) -> None:
        if event == "maps":
            for name, (shown, lim) in value.items():
                if name in self.map_views:
                    view = self.map_views[name]
                    view.set_image(shown)
                    view.vmin, view.vmax = -lim, lim
            self.sigma.show_maps(value)
        elif event == "sigma":
            self.sigma.show_limit(value)
        elif event == "message":
            where, text, _level = value
            if where == "fit":
                self.fit_message.value = text and f"<span style='color:#b00'>{text}</span>"

    def _views(self) -> list[Any]:
        return [*self.map_views.values(), *self.sigma_views.values()]
