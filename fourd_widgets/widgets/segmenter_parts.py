"""Parts of the Segmenter view: the label brush (paint by dragging the marker over the class map).

In paint mode a click on the class map dabs the paint class there; dragging the
white marker paints a stroke along its path (with the brush radius), sent to the
session as one stroke when the drag ends, so one refit follows a stroke. The
painted positions are drawn as crosses coloured by their class.
"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as w
import numpy as np

__all__ = ["Brush", "PAINT_MARKERS", "show_painted"]

#: Id of the marker set that shows the painted positions.
PAINT_MARKERS = "painted"


class Brush:
    """Strokes of the pick marker in paint mode, painted through ``paint(points, label, radius)``.

    Parameters
    ----------
    paint : callable
        ``paint(points, label, radius)``: the session's :meth:`paint_labels`.
    """

    def __init__(self, paint: Callable[[list, int, float], Any]) -> None:
        self._paint = paint
        self.label = w.BoundedIntText(value=0, min=-1, max=63, description="paint class",
                                      tooltip="-1 erases", layout=w.Layout(width="300px"))
        self.radius = w.FloatSlider(value=0.0, min=0.0, max=5.0, step=0.5, description="brush radius",
                                    tooltip="in scan steps; 0: one position", continuous_update=False,
                                    layout=w.Layout(width="300px"))
        self.label.add_class("fw-seg-paint-class")
        self.radius.add_class("fw-seg-brush-radius")
        self.points: list[tuple[float, float]] = []

    def start(self, x: float, y: float) -> None:
        """A drag of the marker begins at (x, y)."""
        self.points = [(float(x), float(y))]

    def moved(self, x: float, y: float, dragging: bool) -> None:
        """The marker is at (x, y): one more point of the stroke, the stroke's last, or a dab."""
        if dragging:
            self.points.append((float(x), float(y)))
        elif self.points:  # the final position of a drag
            self.points.append((float(x), float(y)))
            self.finish()
        else:
            self._paint([(float(x), float(y))], self.label.value, self.radius.value)

    def finish(self) -> None:
        """The drag ended: paint the stroke (once)."""
        pts, self.points = self.points, []
        if pts:
            self._paint(pts, self.label.value, self.radius.value)


def show_painted(view: Any, seeds: np.ndarray | None) -> None:
    """Crosses on the painted positions of ``view`` (a class map), coloured by their class."""
    if seeds is None:
        view.set_markers(PAINT_MARKERS, np.zeros((0, 2)), style="cross")
        return
    s = np.asarray(seeds)
    xy = np.argwhere(s >= 0).astype(float)
    view.set_markers(PAINT_MARKERS, xy, style="cross", radius=0.4, values=s[s >= 0].astype(float),
                     colormap="viridis", vmin=0.0, vmax=float(max(s.max(), 1)))
