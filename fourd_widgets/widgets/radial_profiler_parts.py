"""Parts of the RadialProfiler view: its bqplot figures and the help lines of its controls.

>>> plots = Plots(units="1/Å")
>>> plots.show_profiles({"k": np.array([0.1, 0.2]), "mean": np.array([1.0, 2.0]), "V": np.array([0.1, 0.3]),
...                      "V_variance_of_mean": np.array([0.1, 0.2]), "V_band": np.array([np.nan, 0.3]), "units": "1/Å", "bands": ((0.15, 0.25),),
...                      "band_mean": 0.2})
>>> plots.V.y.tolist(), plots.V_figure.title
([0.1, 0.3], 'V(k): band mean 0.2')
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np

__all__ = ["Plots", "HELP"]

#: Tooltips of the profiler's controls (see :func:`fourd_widgets.widgets.help_text.explain_controls`).
HELP = {
    "map": "Map over the scan of the k bands: 'local FEM' = variance over the ring divided by its mean squared "
           "(bright where crystals diffract into the band); 'symmetry n' = strength of n-fold angular order.",
    "add band": "Add a k band (an annulus on the pattern); the map shows all bands together (e.g. {111} + {220}).",
    "remove band": "Remove the last k band.",
    "region": "Profiles, V(k) and G(r) of the scan positions inside a rectangle drawn on the map, instead of "
              "the whole scan. Drag the rectangle on the map.",
    "density": "Number density of the sample in atoms/Å³ (a-Si about 0.05) for g(r) and the RDF; leave empty "
               "for G(r) only.",
    "damping": "B of an extra exp(-B k²) damping of the structure function (Å²): smoother G(r), broader peaks.",
    "Lorch": "Apply the Lorch window: less termination ripple in G(r), slightly broader peaks.",
    "r max": "Largest r of G(r), in Å.",
}


def _figure(title: str, xlabel: str, ylabel: str, marks: list, xs: Any, ys: Any, width: str = "380px") -> Any:
    import bqplot as bq

    return bq.Figure(marks=marks, title=title,
                     axes=[bq.Axis(scale=xs, label=xlabel, tick_format="~g"),
                           bq.Axis(scale=ys, side="left", label=ylabel, tick_format=".2~g", label_offset="48px")],
                     layout=w.Layout(width=width, height="240px"),
                     fig_margin={"top": 30, "bottom": 40, "left": 72, "right": 10})


def _finite(values: Any) -> np.ndarray:
    """A curve for bqplot: NaN stays NaN (a gap), as float64."""
    return np.asarray(values, dtype=np.float64)


class Plots:
    """The mean profile, V(k) (with the part inside the bands drawn thick) and G(r)."""

    def __init__(self, units: str = "1/Å") -> None:
        import bqplot as bq

        k = f"k ({units})"
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.mean = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#1f77b4"])
        self.mean_band = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#e0a800"], stroke_width=4)
        self.mean_figure = _figure("mean radial profile", k, "mean intensity", [self.mean, self.mean_band], xs, ys)
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.V = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#2e7d32"],
                          labels=["annular mean of variance"])
        self.V_mean = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#9e9e9e"], line_style="dashed",
                               labels=["variance of annular mean"])
        self.V_band = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#e0a800"], stroke_width=4)
        self.V_figure = _figure("V(k)", k, "V(k)", [self.V, self.V_mean, self.V_band], xs, ys)
        self.V_figure.add_class("fw-profiler-vk")
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.G = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#c62828"])
        self.G_figure = _figure("G(r)", "r (Å)", "G(r) (Å⁻²)", [self.G], xs, ys, width="760px")

    def show_profiles(self, c: dict[str, Any]) -> None:
        """Curves from a session 'profiles' event."""
        k = _finite(c["k"])
        inside = np.isfinite(_finite(c["V_band"]))
        with self.mean.hold_sync():
            self.mean.x, self.mean.y = k, _finite(c["mean"])
        with self.mean_band.hold_sync():
            self.mean_band.x, self.mean_band.y = k, np.where(inside, _finite(c["mean"]), np.nan)
        with self.V.hold_sync():
            self.V.x, self.V.y = k, _finite(c["V"])
        with self.V_mean.hold_sync():
            self.V_mean.x, self.V_mean.y = k, _finite(c["V_variance_of_mean"])
        with self.V_band.hold_sync():
            self.V_band.x, self.V_band.y = k, _finite(c["V_band"])
        self.V_figure.title = f"V(k): band mean {c['band_mean']:.3g}"

    def show_pdf(self, c: dict[str, Any] | None) -> None:
        """G(r) from a session 'pdf' event (None: an empty plot)."""
        if c is None:
            with self.G.hold_sync():
                self.G.x, self.G.y = [0.0], [0.0]
            self.G_figure.title = "G(r): not available (see the message)"
            return
        with self.G.hold_sync():
            self.G.x, self.G.y = _finite(c["r"]), _finite(c["G"])
        self.G_figure.title = "G(r)"
