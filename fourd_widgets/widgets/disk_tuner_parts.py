"""Parts of the DiskTuner view: its bqplot figures and the controls of its record.

:func:`tuner_controls` makes the template and detection controls (named as the
fields they set); :func:`show_record` sets them from a record without feeding it back.
"""

from __future__ import annotations

import html
import math
from types import SimpleNamespace
from typing import Any

import ipywidgets as w
import numpy as np

from ..analysis.disks import FindDisksParams
from ..tools.disk_tuner_compute import MIN_LOG_REL, TEMPLATE_SOURCES, refinement_note

__all__ = ["profile_figure", "histogram_figure", "tuner_controls", "show_record", "paint_strip", "paint_histogram",
           "marker_counts", "TEMPLATE_FIELDS", "DETECT_FIELDS", "COLORS", "MARKERS"]

#: Marker set of the disks on the strip views.
MARKERS = "disks"
#: Colours of the strip slots (their points on the real-space view and their markers).
COLORS = ("#ffd23d", "#5ad1ff", "#ff6f91", "#9dff6f", "#c79bff", "#ffa64d", "#ffffff", "#ff4d4d")

#: Template controls -> the ProbeTemplateParams field each sets.
TEMPLATE_FIELDS = {"_kernel": "kernel", "_radius": "radius", "_sigma": "sigma", "_radii": "radii"}
#: Detection controls -> the FindDisksParams field each sets.
DETECT_FIELDS = {"_corr_power": "corr_power", "_sigma_cc": "sigma_cc", "_subpixel": "subpixel",
                 "_probe_fit": "probe_fit",
                 "_min_rel": "min_relative_intensity", "_rel_to": "relative_to_peak",
                 "_min_abs": "min_absolute_intensity", "_spacing": "min_peak_spacing", "_edge": "edge_boundary",
                 "_max_peaks": "max_num_peaks"}


def tuner_controls(detector_shape: tuple[int, int], has_vacuum_image: bool) -> SimpleNamespace:
    """The tuner's controls, by the attribute names the view gives them."""
    lay = w.Layout
    q = min(detector_shape)
    sources = [k for k, v in TEMPLATE_SOURCES.items() if v != "vacuum_image" or has_vacuum_image]
    c = SimpleNamespace(
        _source=w.ToggleButtons(options=sources, description="template", style={"button_width": "95px"}),
        _region_kind=w.Dropdown(options=("rectangle", "polygon"), description="region", layout=lay(width="180px")),
        _kernel=w.Dropdown(options=("flat", "gaussian", "sigmoid"), description="kernel", layout=lay(width="180px")),
        _measure=w.ToggleButtons(options=("measured", "set"), description="radius", style={"button_width": "70px"}),
        _radius=w.FloatSlider(min=0.5, max=q / 4, step=0.05, description="disk radius", readout_format=".2f"),
        _sigma=w.FloatSlider(min=0.5, max=q / 4, step=0.1, description="gauss σ", readout_format=".1f"),
        _radii=w.FloatRangeSlider(min=0.0, max=q / 3, step=0.25, description="trench r", readout_format=".2f"),
        _corr_power=w.FloatSlider(min=0, max=1, step=0.05, description="corr power"),
        _sigma_cc=w.FloatSlider(min=0, max=8, step=0.25, description="σ corr"),
        _subpixel=w.Dropdown(options=("auto", "none", "parabola", "dft", "disk", "edge", "spot"),
                             description="subpixel",
                             layout=lay(width="180px")),
        _probe_fit=w.Checkbox(description="fit probe", indent=False, layout=lay(width="100px")),
        _subpixel_note=w.HTML(layout=lay(margin="0 0 0 8px")),
        _min_rel=w.FloatLogSlider(min=MIN_LOG_REL, max=0, step=0.05, base=10, description="min rel",
                                  readout_format=".4f"),
        _rel_to=w.BoundedIntText(min=0, max=20, description="rel. to peak", layout=lay(width="170px")),
        _min_abs=w.BoundedFloatText(min=0, max=1e30, description="min abs", layout=lay(width="200px")),
        _spacing=w.FloatSlider(min=0, max=q / 4, step=0.5, description="min spacing"),
        _edge=w.FloatSlider(min=0, max=q / 4, step=0.5, description="edge"),
        _max_peaks=w.IntSlider(min=1, max=200, description="max peaks"),
    )
    c._min_rel.add_class("fw-tuner-min-rel")
    c._min_abs.add_class("fw-tuner-min-abs")
    return c


def show_record(view: Any, p: FindDisksParams, radius: float | None) -> None:
    """Set every control of ``view`` from record ``p`` (``radius``: the measured one, for automatic values).

    The caller holds its syncing flag; sliders remember what they show (``view._show_slider``)
    so that a slider's snapped echo is not taken for an edit.
    """
    t = p.template
    src = next(k for k, v in TEMPLATE_SOURCES.items() if v == t.source)
    if src in view._source.options:
        view._source.value = src
    view._kernel.value = t.kernel
    view._measure.value = "measured" if t.radius is None else "set"
    view._radius.disabled = t.radius is None
    view._show_slider("radius", view._radius, t.radius if t.radius is not None else radius)
    view._show_slider("sigma", view._sigma, t.sigma if t.sigma is not None else radius)
    r = t.radii if t.radii is not None else ((radius, radius + max(2.0, radius / 2)) if radius else None)
    if r is not None:
        view._radii.max = max(view._radii.max, float(r[1]))
        view._radii.value = (float(r[0]), float(r[1]))
        view._shown["radii"] = ((float(r[0]), float(r[1])), view._radii.step)
    view._sigma.layout.display = "" if t.kernel == "gaussian" else "none"
    view._radii.layout.display = "" if t.kernel == "sigmoid" else "none"
    view._region_kind.layout.display = "" if t.source == "vacuum_region" else "none"
    view._corr_power.value = p.corr_power
    view._sigma_cc.value = min(p.sigma_cc, view._sigma_cc.max)
    view._subpixel.value = p.subpixel
    view._probe_fit.value = p.probe_fit
    view._subpixel_note.value = f"<small>{html.escape(refinement_note(p, radius))}</small>"
    view._min_rel.value = max(p.min_relative_intensity, 10.0 ** view._min_rel.min)
    view._rel_to.value = min(p.relative_to_peak, view._rel_to.max)
    view._min_abs.value = p.min_absolute_intensity
    view._show_slider("min_peak_spacing", view._spacing,
                      p.min_peak_spacing if p.min_peak_spacing is not None else radius)
    view._show_slider("edge_boundary", view._edge, p.edge_boundary if p.edge_boundary is not None else radius)
    view._shown["min_relative_intensity"] = (view._min_rel.value, 0.0)
    view._max_peaks.value = min(p.max_num_peaks, view._max_peaks.max)
    x = math.log10(max(p.min_relative_intensity, 10.0 ** view._min_rel.min))
    view._hist_line.x = [x, x]
    view._hist_handle.x = [x]


def profile_figure() -> tuple[Any, Any]:
    """A small bqplot figure with the kernel's radial profile."""
    import bqplot as bq

    # round ticks (d3's, at 1, 2, 5 x 10^k: no num_ticks, which spaces them evenly over the data's range)
    # and r from 0; the y label outside the tick labels (positive offset: away from the plot)
    xs, ys = bq.LinearScale(min=0.0), bq.LinearScale()
    line = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#1f77b4"])
    fig = bq.Figure(marks=[line], axes=[bq.Axis(scale=xs, label="radius r (px)", tick_format="~g"),
                                        bq.Axis(scale=ys, side="left", tick_format=".2~g", label="kernel value",
                                                label_offset="48px")],
                    title="radial profile", layout=w.Layout(width="290px", height="200px"),
                    fig_margin={"top": 30, "bottom": 40, "left": 72, "right": 10})
    return fig, line


def histogram_figure() -> tuple[Any, Any, Any, Any]:
    """Histogram of candidate values (log10 of value / reference peak), threshold line and its handle."""
    import bqplot as bq

    xs, ys = bq.LinearScale(), bq.LinearScale(min=0)
    bars = bq.Bars(x=[0.0], y=[[0], [0]], scales={"x": xs, "y": ys}, type="stacked", padding=0.05,
                   colors=["#ffb000", "#9e9e9e"], labels=["kept", "rejected"])
    line = bq.Lines(x=[-1.7, -1.7], y=[0.0, 1.0], scales={"x": xs, "y": ys}, colors=["#e65100"],
                    stroke_width=2)
    handle = bq.Scatter(x=[-1.7], y=[1.0], scales={"x": xs, "y": ys}, colors=["#e65100"], marker="triangle-down",
                        default_size=200, enable_move=True, restrict_x=True, update_on_move=True)
    fig = bq.Figure(marks=[bars, line, handle],
                    axes=[bq.Axis(scale=xs, label="log10(candidate / reference peak)"),
                          bq.Axis(scale=ys, side="left", label="count")],
                    title="candidate peaks (drag ▼ = min rel)", layout=w.Layout(width="420px", height="280px"),
                    fig_margin={"top": 35, "bottom": 40, "left": 50, "right": 10})
    fig.add_class("fw-tuner-histogram")
    return fig, bars, line, handle


def paint_strip(strip_views: list, value: Any) -> None:
    """Markers and titles of the strip views from a session 'strip' event (None: no template, no markers)."""
    if value is None:  # no template: no markers
        for v in strip_views:
            v.set_markers(MARKERS, np.zeros((0, 2)), visible=False)
        return
    positions, up = value
    counts = up.peaks.counts().reshape(-1)
    radius = up.template.radius if up.template is not None else 3.0
    for k, (v, (x, y)) in enumerate(zip(strip_views, positions)):
        pk = up.peaks.at(k)
        bad = up.valid is not None and not up.valid[k]
        with v.hold_sync():
            v.set_markers(MARKERS, np.column_stack([pk["qx"], pk["qy"]]), radius=radius,
                          color=COLORS[k % len(COLORS)])
            v.title = f"{k + 1}: ({x}, {y}) · " + ("NaN: skipped" if bad else f"{int(counts[k])} disks")
            v.badge = "NaN" if bad else ""


def paint_histogram(bars: Any, line: Any, handle: Any, hist: Any) -> None:
    """The candidate histogram from a session 'histogram' event (None: empty)."""
    if hist is None:
        bars.x, bars.y = [0.0], [[0], [0]]
        return
    centres, counts = hist
    with bars.hold_sync():
        bars.x, bars.y = centres, counts
    top = float(max(counts.sum(axis=0).max(), 1))
    line.y = [0.0, top]
    handle.y = [top]


def marker_counts(strip_views: list) -> list[int]:
    """Disk markers each strip view holds (what the browser draws)."""
    out = []
    for v in strip_views:
        try:
            out.append(len(v.marker_points(MARKERS)[0]))
        except KeyError:
            out.append(0)
    return out
