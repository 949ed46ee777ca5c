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
from .tool_view import Busy, ToolView, message_label

__all__ = ["LowDoseStrainMapper"]

_TITLES = {"exx": "ε_xx (%)", "eyy": "ε_yy (%)", "exy": "ε_xy (%)", "theta_deg": "θ (°)"}


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
        self.map_views = {n: ImageView(title=_TITLES[n], colormap="rdbu", contrast="absolute", size=size,
                                       value_units="°" if n == "theta_deg" else "%", **axes) for n in MAP_NAMES}
        self.sigma_views = {sn: ImageView(title="σ " + _TITLES[n], colormap="magma", contrast="absolute", size=size,
                                          value_units="°" if n == "theta_deg" else "%", **axes)
                            for n, sn in zip(MAP_NAMES, SIGMA_NAMES)}
        self._dose = w.BoundedFloatText(value=p.counts_per_unit, min=1e-9, max=1e12, description="e⁻ per unit",
                                        layout=lay(width="200px"),
                                        tooltip="Electrons per data unit (1 for counted data): sets the σ maps")
        self._pool = w.BoundedFloatText(value=p.pool_sigma, min=0, max=100, step=0.5, description="pool σ (steps)",
                                        layout=lay(width="200px"),
                                        tooltip="Average the fitted lattice over a Gaussian scan neighbourhood")
        self.sigma_limit = w.FloatSlider(value=1.0, min=0.01, max=1.0, step=0.001, description="σ limit (%)",
                                         readout_format=".3f", continuous_update=False, layout=lay(width="360px"),
                                         tooltip="Mask positions whose largest strain σ exceeds this "
                                         "(right end: no limit)")
        rows = [w.HBox([self.map_views[n], self.sigma_views[sn]]) for n, sn in zip(MAP_NAMES, SIGMA_NAMES)]
        self.widget = w.VBox([self.busy.box, w.HBox([self._dose, self._pool]), self.fit_message, self.sigma_limit,
                              w.HBox([w.VBox(rows[:2]), w.VBox(rows[2:])],
                                     layout=lay(flex_flow="row wrap", align_items="flex-start"))])
        self.widget.add_class("fw-lowdose-strain")
        self._top = 1.0
        s.listen(self._on_session)
        self._dose.observe(lambda ch: s.set_options(counts_per_unit=float(ch["new"])), names="value")
        self._pool.observe(lambda ch: s.set_options(pool_sigma=float(ch["new"])), names="value")
        self.sigma_limit.observe(lambda ch: self._unless_syncing(self._on_limit, ch["new"]), names="value")
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
        self.session.set_sigma_limit(None if percent is None else percent / 100.0)

    def _on_limit(self, value: float) -> None:
        self.set_sigma_limit(None if value >= self.sigma_limit.max else max(value, self.sigma_limit.min))

    def _on_session(self, event: str, value: Any) -> None:
        if event == "maps":
            for name, (shown, lim) in value.items():
                view = self.map_views.get(name) or self.sigma_views[name]
                view.set_image(shown)
                if name in self.map_views:
                    view.vmin, view.vmax = -lim, lim
                else:
                    view.vmin, view.vmax = 0.0, lim
        elif event == "sigma":
            limit, (lo, hi) = value

            def sync() -> None:
                top = 100.0 * hi * 1.05 if np.isfinite(hi) and hi > 0 else 1.0
                bottom = 100.0 * lo * 0.95 if np.isfinite(lo) and 0 < lo < hi else top / 100
                self.sigma_limit.max = max(top, 1e-6)
                self.sigma_limit.min = min(bottom, self.sigma_limit.max / 2)  # the left end keeps some positions
                self.sigma_limit.step = (self.sigma_limit.max - self.sigma_limit.min) / 500
                self.sigma_limit.value = self.sigma_limit.max if limit is None else min(100.0 * limit,
                                                                                       self.sigma_limit.max)
            self._synced(sync)
        elif event == "message":
            where, text, _level = value
            if where == "fit":
                self.fit_message.value = text and f"<span style='color:#b00'>{text}</span>"

    def _views(self) -> list[Any]:
        return [*self.map_views.values(), *self.sigma_views.values()]
