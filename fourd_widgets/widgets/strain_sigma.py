"""σ maps, the σ-limit slider and the fit's dose and pooling controls of the whole-pattern strain route.

Each strain map's standard-error map (``σ``, from the Fisher information of each pattern's
Poisson fit) is drawn with the magma colormap from 0; the "σ limit" slider (percent; its right
end: no limit) masks positions whose largest strain σ exceeds it, which the session applies
without a refit (:meth:`~fourd_widgets.tools.strain_lowdose.LowDoseStrainSession.set_sigma_limit`).
The dose scale (electrons per data unit) and the scan pooling are fields of the fit: they refit.
"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as w
import numpy as np

from ..tools.strain_compute import MAP_NAMES
from ..tools.strain_lowdose import SIGMA_NAMES
from .image_view import ImageView

__all__ = ["SigmaPanel", "STRAIN_TITLES"]

#: Titles of the four strain maps (percent, θ in degrees).
STRAIN_TITLES = {"exx": "ε_xx (%)", "eyy": "ε_yy (%)", "exy": "ε_xy (%)", "theta_deg": "θ (°)"}


class SigmaPanel:
    """The σ maps (``sigma_views``), the σ-limit slider (``sigma_limit``), dose and pooling (``controls``).

    Parameters
    ----------
    view : ToolView
        The view the panel belongs to (its ``_synced`` / ``_unless_syncing`` keep slider echoes out).
    set_limit : callable
        ``set_limit(fraction or None)``: what dragging the slider does.
    set_options : callable
        ``set_options(**fields)`` of the whole-pattern fit (``counts_per_unit``, ``pool_sigma``).
    size : int
        Canvas width of each σ map, CSS px.
    axes : dict
        Scan axis options of the ImageViews (names, pixel size, units).
    """

    def __init__(self, view: Any, set_limit: Callable[[float | None], Any], set_options: Callable[..., Any], *,
                 size: int, **axes: Any) -> None:
        self._view, self._set_limit = view, set_limit
        self._dose = w.BoundedFloatText(value=1.0, min=1e-9, max=1e12, description="e⁻ per unit",
                                        layout=w.Layout(width="200px"),
                                        tooltip="Electrons per data unit (1 for counted data): sets the σ maps")
        self._pool = w.BoundedFloatText(value=0.0, min=0, max=100, step=0.5, description="pool σ (steps)",
                                        layout=w.Layout(width="200px"),
                                        tooltip="Average the fitted lattice over a Gaussian scan neighbourhood")
        self.controls = w.HBox([self._dose, self._pool])
        for ctl, field in ((self._dose, "counts_per_unit"), (self._pool, "pool_sigma")):
            ctl.observe(lambda ch, f=field: view._unless_syncing(lambda v: set_options(**{f: float(v)}), ch["new"]),
                        names="value")
        self.sigma_views = {sn: ImageView(title="σ " + STRAIN_TITLES[n], colormap="magma", contrast="absolute",
                                          size=size, value_units="°" if n == "theta_deg" else "%", **axes)
                            for n, sn in zip(MAP_NAMES, SIGMA_NAMES)}
        self.sigma_limit = w.FloatSlider(value=1.0, min=0.01, max=1.0, step=0.001, description="σ limit (%)",
                                         readout_format=".3f", continuous_update=False,
                                         layout=w.Layout(width="360px"),
                                         tooltip="Mask positions whose largest strain σ exceeds this "
                                         "(right end: no limit)")
        self.sigma_limit.observe(lambda ch: view._unless_syncing(self._on_limit, ch["new"]), names="value")

    def percent(self, percent: float | None) -> None:
        """Mask positions whose largest strain σ exceeds ``percent`` % (None: no limit)."""
        self._set_limit(None if percent is None else percent / 100.0)

    def _on_limit(self, value: float) -> None:
        self.percent(None if value >= self.sigma_limit.max else max(value, self.sigma_limit.min))

    def show_record(self, record: Any) -> None:
        """Set the dose and pooling controls from the fit's record (a WholePatternFitParams)."""
        self._view._synced(lambda: (setattr(self._dose, "value", record.counts_per_unit),
                                    setattr(self._pool, "value", record.pool_sigma)))

    def show_maps(self, maps: dict[str, tuple[np.ndarray, float]]) -> None:
        """Draw the σ maps of ``{name: (shown, limit)}`` (other names are ignored)."""
        for name, (shown, lim) in maps.items():
            view = self.sigma_views.get(name)
            if view is not None:
                with view.hold_sync():
                    view.set_image(shown)
                    view.vmin, view.vmax = 0.0, lim

    def show_limit(self, value: tuple[float | None, tuple[float, float]]) -> None:
        """Set the slider from the session's ``'sigma'`` event: the limit and the σ range (fractions)."""
        limit, (lo, hi) = value
        s = self.sigma_limit

        def sync() -> None:
            top = 100.0 * hi * 1.05 if np.isfinite(hi) and hi > 0 else 1.0
            bottom = 100.0 * lo * 0.95 if np.isfinite(lo) and 0 < lo < hi else top / 100
            s.max = max(top, 1e-6)
            s.min = min(bottom, s.max / 2)  # the left end keeps some positions
            s.step = (s.max - s.min) / 500
            s.value = s.max if limit is None else min(100.0 * limit, s.max)
        self._view._synced(sync)
