"""The Segmenter's brush: paint labels on the scan for a semi-supervised pass (a session mixin).

Painted labels live in the classification record (``ClassifyParams.seeds``), so
the recipe replays them; the pass itself (label spreading in component space,
:mod:`fourd_widgets.analysis.class_paint`) runs in the classification step's
fit, and its model is stored in the record like any trained model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.class_model import ClassificationError
from ..analysis.class_paint import brush_mask, painted

__all__ = ["SegmenterBrush"]


class SegmenterBrush:
    """Painting actions of :class:`~fourd_widgets.tools.segmenter.SegmenterSession`."""

    cube: Any
    classify_record: Any

    def paint_labels(self, where: Any, label: int, radius: float = 0.0) -> Any:
        """Paint class ``label`` (-1 erases) under a brush stroke or a mask, then refit semi-supervised.

        Parameters
        ----------
        where : (m, 2) array_like or (Rx, Ry) bool array
            A stroke: scan positions (rx, ry) the brush passed through, in order; or the
            positions themselves as a mask.
        label : int
            Class 0, 1, ... (paint every class from 0 up), or -1 to erase.
        radius : float
            Brush radius in scan steps (0: one position under each point of the stroke).
        """
        shape = tuple(self.cube.scan_shape)
        arr = np.asarray(where)
        mask = arr if arr.dtype == np.bool_ and arr.shape == shape else brush_mask(shape, arr, float(radius))
        try:
            seeds = painted(self.classify_record.seeds, mask, int(label))
        except ClassificationError as exc:
            self._fail("classes", exc)  # type: ignore[attr-defined]
            return self
        if not (seeds >= 0).any():
            return self.clear_paint()
        # the painted classes set the number of classes
        return self.set(seeds=seeds, n_classes=None)  # type: ignore[attr-defined]

    def erase_labels(self, where: Any, radius: float = 0.0) -> Any:
        """Erase painted labels under a stroke or a mask."""
        return self.paint_labels(where, -1, radius)

    def clear_paint(self) -> Any:
        """Forget painted labels; classes are fitted unsupervised again (with as many classes as painted)."""
        seeds = self.classify_record.seeds
        n = None if seeds is None or not (np.asarray(seeds) >= 0).any() else int(np.asarray(seeds).max()) + 1
        return self.set(seeds=None, n_classes=n or self.classify_record.n_classes)  # type: ignore[attr-defined]

    @property
    def painted_labels(self) -> np.ndarray | None:
        """(Rx, Ry) int painted classes, -1 where unpainted; None before any painting."""
        s = self.classify_record.seeds
        return None if s is None else np.asarray(s)
