"""The DiskTuner's route choice in the view: detector-based find_disks, or the whole-pattern lattice fit.

:func:`route_controls` makes the route buttons and the lattice record's controls;
:func:`on_route_event` maps the session's route events onto the tuner's views (the fitted
sites as a marker set on every strip pattern, the σ(ε_xx) map after "run on all");
:func:`wire_route` feeds the controls back to the session (see
:mod:`fourd_widgets.tools.disk_tuner_route`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import ipywidgets as w
import numpy as np

from ..tools.disk_tuner_route import DISKS, WHOLE_PATTERN
from .tool_view import message_html

__all__ = ["route_controls", "wire_route", "show_route", "on_route_event", "paint_lattice", "lattice_marker_counts",
           "ROUTE_LABELS", "LATTICE_MARKERS", "LATTICE_FIELDS"]

#: Route buttons -> the session's route names.
ROUTE_LABELS = {"disk detection": DISKS, "whole-pattern fit": WHOLE_PATTERN}
#: Marker set of the fitted lattice sites on the strip views.
LATTICE_MARKERS = "lattice"
#: Lattice controls -> the WholePatternFitParams field each sets.
LATTICE_FIELDS = {"_lat_max_index": "max_index", "_lat_dose": "counts_per_unit", "_lat_window": "window"}


def route_controls() -> SimpleNamespace:
    """The route buttons and the lattice controls (hidden on the detector route), by the view's attribute names."""
    lay = w.Layout
    c = SimpleNamespace(
        _route=w.ToggleButtons(options=list(ROUTE_LABELS), description="route", style={"button_width": "95px"},
                               tooltips=["Detect each disk by template matching (find_disks): for patterns with "
                                         "clear disks.",
                                         "Fit the lattice (origin, g1, g2) to each whole pattern at once, weak "
                                         "disks included, with a standard error (whole_pattern_fit): for low dose."]),
        _lat_max_index=w.IntSlider(min=1, max=20, value=6, description="max |h|, |k|",
                                   tooltip="Largest lattice index of the sites in the model (sites off the "
                                           "detector are left out)."),
        _lat_dose=w.BoundedFloatText(min=1e-9, max=1e12, value=1.0, description="e⁻ per unit",
                                     layout=lay(width="200px"),
                                     tooltip="Electrons per data unit (1 for counted data): the standard errors "
                                             "assume Poisson counts."),
        _lat_window=w.FloatSlider(min=0.5, max=20, step=0.5, value=3.0, description="window (px)",
                                  tooltip="Margin beyond the disk radius over which each site's probe image is "
                                          "modelled."),
        lattice_message=w.HTML("", layout=lay(max_width="420px")),
    )
    c._route.add_class("fw-tuner-route")
    c.lattice_box = w.VBox([c._lat_max_index, c._lat_dose, c._lat_window, c.lattice_message],
                           layout=lay(display="none"))
    c.lattice_box.add_class("fw-tuner-lattice")
    return c


def show_route(view: Any) -> None:
    """Set the route buttons and lattice controls from the session (the caller holds its syncing flag)."""
    s = view.session
    view._route.value = next(k for k, v in ROUTE_LABELS.items() if v == s.route)
    lattice = s.route == WHOLE_PATTERN
    view.lattice_box.layout.display = "" if lattice else "none"
    view._detect_row.layout.display = "none" if lattice else ""
    p = s.lattice_params
    if p is not None:
        view._lat_max_index.value = min(p.max_index, view._lat_max_index.max)
        view._lat_dose.value = p.counts_per_unit
        view._lat_window.value = p.window


def wire_route(view: Any) -> None:
    """Controls -> session: the route buttons and each lattice control."""
    def on_route(change: dict) -> None:
        if not view._syncing:
            view.session.set_route(ROUTE_LABELS[change["new"]])

    def on_field(name: str, value: Any) -> None:
        if not view._syncing and view.session.route == WHOLE_PATTERN:
            view.session.set_lattice(**{name: value})

    view._route.observe(on_route, names="value")
    for attr, name in LATTICE_FIELDS.items():
        getattr(view, attr).observe(lambda ch, n=name: on_field(n, ch["new"]), names="value")


def paint_lattice(strip_views: list, preview: Any, colors: tuple) -> None:
    """The fitted sites of each strip pattern as crosses (None: hide them)."""
    if preview is None:
        for v in strip_views:
            v.set_markers(LATTICE_MARKERS, np.zeros((0, 2)), visible=False)
        return
    for k, v in enumerate(strip_views[:len(preview.positions)]):
        x, y = preview.positions[k]
        with v.hold_sync():
            v.set_markers(LATTICE_MARKERS, preview.centers[k], style="cross", radius=2.5,
                          color=colors[k % len(colors)])
            s = preview.sigma_exx[k]
            v.title = (f"{k + 1}: ({x}, {y}) · lattice " + ("not converged" if preview.status[k] else
                                                            f"σ(ε_xx) {100 * s:.2g} %"))


def lattice_marker_counts(strip_views: list) -> list[int]:
    """Lattice-site markers each strip view holds (what the browser draws)."""
    out = []
    for v in strip_views:
        try:
            out.append(len(v.marker_points(LATTICE_MARKERS)[0]))
        except KeyError:
            out.append(0)
    return out


def on_route_event(view: Any, event: str, value: Any, colors: tuple) -> bool:
    """Show a route event of the session on the tuner ``view``; False when the event is not the route's."""
    if event in ("route", "lattice_params"):
        view._synced(lambda: show_route(view))
    elif event == "lattice":
        paint_lattice(view.strip_views, value, colors)
    elif event == "lattice_map":
        with view.count_view.hold_sync():
            view.count_view.set_image(value.sigma_exx * 100)
            view.count_view.title = "σ(ε_xx) (%) of the lattice fit"
    elif event == "message" and value[0] == "lattice":
        view.lattice_message.value = message_html(value[1], value[2])
    else:
        return False
    return True
