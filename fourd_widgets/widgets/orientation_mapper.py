"""``fw.OrientationMapper``: the orientation mapper's view over an :class:`OrientationSession`.

Left: the route (detected peaks or raw patterns) with the raw route's own controls (:data:`RAW_CONTROLS`:
what is read, the two-grain decomposition; hidden and disabled on the peak route), the plan and matching
controls, the selected pattern with the indexed spots of its three
best matches (yellow, cyan, magenta), the matches table (with each match's weight when the patterns
are decomposed into two grains), the correlation against the in-plane
angle and the stereographic heat map of the correlation over the zone axes. Right: the map (the
best correlation per position; click a position to show it), "run on all", the IPF-z map painted
as chunks finish (with its colour key), and the grain threshold.
"""

from __future__ import annotations

import dataclasses
import html
import typing
from typing import Any, Literal

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..analysis.orientation import OrientationMapParams
from ..analysis.orientation_raw import OrientationMapRawParams
from ..tools.orientation import OrientationSession
from ..tools.orientation_route import PATTERNS
from .colormaps import png_bytes
from .image_view import ImageView
from .overlays import make_overlay
from .tool_view import Busy, ToolView, error_text

__all__ = ["OrientationMapper", "POSITION_ID", "MATCH_COLORS", "RAW_CONTROLS", "field_control"]

POSITION_ID = "position"
MATCH_COLORS = ("#ffd23d", "#3dd9ff", "#ff3df2")
_INITIAL = {"description_width": "initial"}
#: The raw-pattern route's own record fields shown as controls: field -> (label, tooltip, one tooltip per
#: choice). A boolean, number or choice field of OrientationMapRawParams becomes a control with one line here;
#: a line naming a field the record does not have is skipped.
RAW_CONTROLS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "read": ("read", "What each raw pattern is matched on (raw-patterns route)",
             ("The intensity: for spots, or disks that do not overlap",
              "Where the disk rims are: each resolved disk read as a spot at its centre, also where the disks "
              "of two grains overlap (needs the disk radius: the convergence semi-angle)")),
    "decompose": ("two grains", "Fit each pattern as the sum of two orientations' spots, for the two grains under "
                  "the probe at a boundary: matches 1 and 2 are the two grains, with their weights (each one's "
                  "share of the fitted spot intensity). Slower: 4-8x the matching time", ()),
    # shown when the record has the field (the analysis's second pass over the grains around each position)
    "boundary_radius_px": ("grains within (scan px)", "With two grains, in run on all only: the grains found within "
                           "this many scan positions are tried as the pair at each position, and kept where they "
                           "explain its pattern nearly as well (0: each pattern alone)", ()),
}


def _rgb_png(rgb: np.ndarray) -> bytes:
    """(Rx, Ry, 3) in [0, 1] -> PNG bytes with scan x across (as the image views show it)."""
    a = np.clip(np.nan_to_num(np.transpose(rgb, (1, 0, 2))), 0, 1)
    rgba = np.concatenate([a, np.ones(a.shape[:2] + (1,))], -1)
    return png_bytes(np.round(rgba[::-1] * 255).astype(np.uint8))


def field_control(record: type, name: str, label: str, tooltip: str, choice_tips: tuple[str, ...] = ()) -> w.Widget:
    """A control for the field ``name`` of the record class ``record``, from its type, default and range.

    A choice (``Literal``) gives toggle buttons (underscores read as spaces), a bool a checkbox, an int or
    float a bounded number box.

    >>> field_control(OrientationMapRawParams, "read", "read", "what is read").options
    (('intensity', 'intensity'), ('disk rims', 'disk_rims'))
    >>> type(field_control(OrientationMapRawParams, "decompose", "two grains", "fit two")).__name__
    'Checkbox'
    >>> box = field_control(OrientationMapRawParams, "radial_step_px", "radial step", "bin width, px")
    >>> type(box).__name__, box.min, box.max, box.value
    ('BoundedFloatText', 0.0, 4.0, 0.5)
    """
    f = {f.name: f for f in dataclasses.fields(record)}[name]
    kind, meta = typing.get_type_hints(record)[name], f.metadata
    if typing.get_origin(kind) is Literal:
        opts = [(str(v).replace("_", " "), v) for v in typing.get_args(kind)]
        return w.ToggleButtons(options=opts, value=f.default, description=label, tooltip=tooltip,
                               tooltips=list(choice_tips) or [tooltip] * len(opts), style={"button_width": "90px"})
    if kind is bool:
        return w.Checkbox(value=f.default, description=label, tooltip=tooltip, indent=False,
                          layout=w.Layout(width="120px"))
    if kind in (int, float):
        lo = next((meta[k] for k in ("ge", "gt") if meta.get(k) is not None), -1e9)
        hi = next((meta[k] for k in ("le", "lt") if meta.get(k) is not None), 1e9)
        box = w.BoundedIntText if kind is int else w.BoundedFloatText
        return box(value=f.default, min=lo, max=hi, description=label, tooltip=tooltip, style=_INITIAL,
                   layout=w.Layout(width="210px"))
    raise TypeError(f"no control for {record.__name__}.{name} of type {kind}")


def _row(marker: str, m: dict[str, Any], weighted: bool, strongest: str) -> str:
    """One match as a row of the matches table (HTML)."""
    weight = (f"<td>{m['weight']:.2f}</td>" if "weight" in m else "<td>–</td>") if weighted else ""
    return (f"<tr><td>{marker}</td><td>{html.escape(m['phase'])}</td>"
            f"<td>[{' '.join(f'{x:.2f}' for x in m['zone_axis'])}]</td><td>{m['in_plane_deg']:.2f}°</td>"
            f"<td>{m['correlation']:.3f}</td>{weight}<td>{strongest}</td></tr>")


class OrientationMapper(ToolView):
    """Orientation and phase mapping of Bragg peaks or raw patterns, with why each pattern matched what it did.

    Parameters
    ----------
    cube : DataCube
        Calibrated: origin, reciprocal step and beam energy.
    peaks : PeakTable, optional
        Detected disks (default: ``find_disks`` with default parameters).
    crystals : sequence of Crystal or CrystalParams, optional
        The phases (default Si).
    params : OrientationMapParams or OrientationMapRawParams, optional
        The record (an ``orientation_map_raw`` record opens on the raw-pattern route).
    size : int
        Pixel size of the image views.
    """

    def __init__(self, cube: Any, peaks: Any = None, crystals: Any = None, *,
                 params: OrientationMapParams | None = None, size: int = 300, **options: Any) -> None:
        s = self.session = OrientationSession(cube, peaks, crystals, params=params, start=False, **options)
        p = s.record
        self._route = w.ToggleButtons(options=[("peaks", "peaks"), ("raw patterns", "patterns")], value=s.route,
                                      description="match", style={"button_width": "100px"},
                                      tooltips=["Match the Bragg peaks found by disk detection (orientation_map)",
                                                "Match the raw patterns by polar template matching, for spotty or "
                                                "precession data (orientation_map_raw)"])
        lay = lambda width="210px": w.Layout(width=width)  # noqa: E731
        self.raw_controls = {name: field_control(OrientationMapRawParams, name, *spec)
                             for name, spec in RAW_CONTROLS.items()
                             if name in OrientationMapRawParams.__dataclass_fields__}
        self.raw_box = w.HBox(list(self.raw_controls.values()))
        self._zone_step = w.BoundedFloatText(value=p.plan.zone_axis_step_deg, min=0.25, max=20, step=0.25,
                                             description="zone step °", layout=lay(), style=_INITIAL,
                                             tooltip="Zone-axis sampling of the plan, degrees (rebuilds the plan)")
        self._plane_step = w.BoundedFloatText(value=p.plan.in_plane_step_deg, min=0.25, max=10, step=0.25,
                                              description="in-plane °", layout=lay(), style=_INITIAL,
                                              tooltip="In-plane angle bins of the plan, degrees (rebuilds the plan)")
        self._kernel = w.FloatSlider(value=p.plan.kernel_size, min=0.01, max=0.2, step=0.005,
                                     description="kernel 1/Å", readout_format=".3f", layout=lay("280px"),
                                     style=_INITIAL, tooltip="Correlation kernel size in 1/Å: how far a peak may sit from a template spot (rebuilds the plan)")
        self._ipower = w.FloatSlider(value=p.plan.intensity_power, min=0, max=1, step=0.05,
                                     description="I power", layout=lay("280px"), style=_INITIAL,
                                     tooltip="Spot weight = intensity^power: 0 counts spots only, 1 trusts kinematic intensities (rebuilds the plan)")
        self._matches = w.IntSlider(value=p.num_matches, min=1, max=5, description="matches", layout=lay("280px"),
                                     style=_INITIAL, tooltip="How many matches are kept per position")
        self._min_angle = w.FloatSlider(value=p.min_angle_deg, min=0, max=30, step=0.5, description="min angle °",
                                        layout=lay("280px"), style=_INITIAL,
                                        tooltip="Smallest misorientation between two kept matches, degrees")
        self._refine = w.Checkbox(value=p.refine, description="refine", layout=lay("120px"),
                                   tooltip="Refine the best match on finer beam tilts and fit the in-plane angle to the spots")
        self._run = w.Button(description="run on all", button_style="primary",
                              tooltip="Match every position; the IPF map paints as chunks finish")
        self._grain = w.FloatSlider(value=s.grain_threshold_deg, min=0.5, max=30, step=0.5,
                                    description="grain °", layout=lay("280px"), style=_INITIAL,
                                    tooltip="Misorientation threshold between neighbours of one grain, degrees")
        self.message = w.HTML("")
        self.table = w.HTML("")
        self.busy = Busy(s)
        self.busy.cancel_button.tooltip = "Stop the plan build or the run on all (partial maps stay)"
        self.pattern_view = ImageView(title="pattern and best matches", colormap="gray", scale="log", size=size)
        self.map_view = ImageView(np.zeros(cube.scan_shape), title="best correlation (click a position)",
                                  colormap="viridis", size=size, axis_names=["rx", "ry"], click_moves=POSITION_ID,
                                  selected=POSITION_ID)
        rx, ry = s.selected
        self.map_view.set_overlay(make_overlay("point", POSITION_ID, "#ff3333", x=rx, y=ry))
        self.ipf = w.Image(format="png", layout=w.Layout(width=f"{size}px"))
        self.grain_label = w.Label("")
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.angle_line = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys})
        self.angle_plot = bq.Figure(marks=[self.angle_line], title="correlation vs in-plane angle",
                                    axes=[bq.Axis(scale=xs, label="angle (°)"),
                                          bq.Axis(scale=ys, orientation="vertical")],
                                    layout=w.Layout(width=f"{size}px", height="220px"))
        sx, sy, sc = bq.LinearScale(), bq.LinearScale(), bq.ColorScale(scheme="viridis")
        self.stereo = bq.Scatter(x=[0.0], y=[0.0], color=[0.0], scales={"x": sx, "y": sy, "color": sc},
                                 default_size=12)
        self.stereo_plot = bq.Figure(marks=[self.stereo], title="correlation over the zone axes (stereographic)",
                                     axes=[bq.Axis(scale=sx), bq.Axis(scale=sy, orientation="vertical")],
                                     layout=w.Layout(width=f"{size}px", height=f"{size}px"))
        controls = w.VBox([self._route, self.raw_box, w.HBox([self._zone_step, self._plane_step]), self._kernel,
                           self._ipower,
                           w.HBox([self._matches, self._refine]), self._min_angle, self.message])
        left = w.VBox([controls, self.pattern_view, self.table, w.HBox([self.angle_plot, self.stereo_plot])])
        right = w.VBox([self.map_view, w.HBox([self._run]), self.ipf, self._grain, self.grain_label])
        self.widget = w.VBox([self.busy.box, w.HBox([left, right], layout=w.Layout(flex_flow="row wrap"))])
        for ctl, field in ((self._zone_step, "zone_axis_step_deg"), (self._plane_step, "in_plane_step_deg"),
                           (self._kernel, "kernel_size"), (self._ipower, "intensity_power"),
                           (self._matches, "num_matches"), (self._min_angle, "min_angle_deg"),
                           (self._refine, "refine")):
            ctl.observe(lambda ch, f=field: self._unless_syncing(self._change, f, ch["new"]), names="value")
        for field, ctl in self.raw_controls.items():
            ctl.observe(lambda ch, f=field: self._unless_syncing(self._change, f, ch["new"]), names="value")
        self._synced(self._show_record)
        self._route.observe(lambda ch: self._unless_syncing(self._set_route, ch["new"]), names="value")
        self._run.on_click(lambda _: self.session.run_on_all())
        self._grain.observe(lambda ch: self.session.set_grain_threshold(ch["new"]), names="value")
        self.map_view.observe(self._on_map_overlays, names=["overlays", "dragging"])
        s.listen(self._on_event)
        s.set()  # build the plan and match the chosen patterns, now that the view listens

    def _change(self, field: str, value: Any) -> None:
        try:
            self.session.set(**{field: value})
            self.message.value = ""
        except Exception as exc:  # noqa: BLE001 - a refused value is shown beside the controls
            self.message.value = error_text(exc)

    def _show_record(self) -> None:
        """The raw route's controls from the session's record: shown and enabled on the raw route only."""
        s = self.session
        raw = s.route == PATTERNS
        self.raw_box.layout.display = "" if raw else "none"
        for name, ctl in self.raw_controls.items():
            ctl.disabled = not raw
            if raw:
                ctl.value = getattr(s.record, name)

    def _set_route(self, route: str) -> None:
        try:
            self.session.set_route(route)
            self.message.value = ""
        except Exception as exc:  # noqa: BLE001 - a refused route is shown beside the controls
            self.message.value = error_text(exc)

    def _on_map_overlays(self, change: dict) -> None:
        if self._syncing or self.map_view.dragging:
            return
        for ov in self.map_view.overlays:
            if ov["id"] == POSITION_ID and (round(ov["x"]), round(ov["y"])) != self.session.selected:
                try:
                    self.session.select(round(ov["x"]), round(ov["y"]))
                except Exception as exc:  # noqa: BLE001
                    self.message.value = error_text(exc)

    def _on_event(self, event: str, value: Any) -> None:
        if event == "pattern":
            self._show_pattern(value)
        elif event == "ipf":
            rgb, done, total = value
            self.ipf.value = _rgb_png(rgb)
            if self.session.result is not None and done == total:
                self.map_view.set_image(np.nan_to_num(self.session.result.correlation[..., 0]))
        elif event == "route":
            self._synced(lambda: setattr(self._route, "value", value))
            self._synced(self._show_record)
        elif event == "record":
            self._synced(self._show_record)
        elif event == "grains":
            st = value.statistics()
            self.grain_label.value = (f"{value.count} grains, mean {st['mean']:.1f} positions "
                                      f"(threshold {value.threshold_deg:g}°)")
        elif event == "message":
            where, text, level = value
            self.message.value = error_text(RuntimeError(text)) if text and level == "error" else ""

    def _show_pattern(self, v: dict[str, Any]) -> None:
        pv = self.pattern_view
        pv.set_image(v["image"])
        pv.remove_markers([f"match{k}" for k in range(5)])
        rows = []
        weighted = any("weight" in m for m in v["matches"]) or bool(v.get("map_matches"))  # two grains
        for k, (spots, m) in enumerate(zip(v["spots"], v["matches"])):
            pv.set_markers(f"match{k}", spots["xy"], style="circle", color=MATCH_COLORS[k % 3],
                           radius=4.0 if k == 0 else 3.0)
            strongest = ", ".join("(" + " ".join(str(int(i)) for i in h) + ")" for h in spots["hkl"][:4])
            rows.append(_row(f"<span style='color:{MATCH_COLORS[k % 3]}'>●</span>", m, weighted, strongest))
        if v.get("map_matches"):  # the whole-scan decomposition may also use the grains around the position
            rows.append("<tr><td colspan='7'><i>run on all, this position:</i></td></tr>")
            rows += [_row("map", m, weighted, "") for m in v["map_matches"]]
        rel = v.get("reliability", float("nan"))
        self.table.value = (f"<b>position {v['position']}</b>, reliability {rel:.2f}<table><tr><th></th><th>phase</th>"
                            "<th>zone axis</th><th>in-plane</th><th>corr.</th>"
                            + ("<th>weight</th>" if weighted else "")
                            + "<th>strongest spots</th></tr>" + "".join(rows) + "</table>"
                            + ("<small>weight: each grain's share of the fitted spot intensity (two grains under the "
                               "probe); the coloured rows from this pattern alone, the 'map' rows from run on all"
                               "</small>"
                               if weighted else ""))
        if len(v.get("angle_correlation", ())):
            self.angle_line.x, self.angle_line.y = v["angles_deg"], v["angle_correlation"]
            xy = v["stereo_xy"]
            self.stereo.x, self.stereo.y, self.stereo.color = xy[:, 0], xy[:, 1], v["zone_correlation"]

    def _views(self) -> list[Any]:
        return [self.pattern_view, self.map_view]
