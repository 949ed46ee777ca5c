"""The Segmenter's Bragg route: classes of Bragg-vector co-occurrence, merged and split by clicking.

A session mixin. With a peak table given (``SegmenterSession(cube, peaks=...)``),
or found with the disk step's defaults (a :class:`FindDisksParams` record, which
then joins the recipe), :meth:`use_bragg` classifies positions by which Bragg
vectors occur together (:func:`~fourd_widgets.analysis.bragg_classes.bragg_classes`)
instead of clustering features. The class map, class patterns and clicks work as
on the feature route; a merge or split is appended to the record's ``edits``, so
``fw.run(session.params, cube)`` replays the classes shown (with peaks found by
the recipe's own find_disks step; a peak table given by hand is not in the recipe,
so put the find_disks record that made it first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.bragg_classes import BraggClasses, BraggClassParams, bragg_classes
from ..analysis.class_model import ClassificationError
from ..analysis.classify import Classification, class_patterns
from ..analysis.disks import FindDisksParams, find_disks
from ..analysis.peaks import PeakTable

__all__ = ["SegmenterBragg"]


class SegmenterBragg:
    """Bragg-route state and actions of :class:`~fourd_widgets.tools.segmenter.SegmenterSession`."""

    cube: Any
    classify_record: Any
    classification: Any

    def _init_bragg(self, peaks: PeakTable | None, disks: FindDisksParams | None) -> None:
        self.peaks = peaks
        self.disks_record: FindDisksParams | None = disks
        self.bragg_record: BraggClassParams | None = None
        self.bragg_result: BraggClasses | None = None
        self._peak_cache: tuple[Any, PeakTable] | None = None

    def use_bragg(self, **changes: Any) -> Any:
        """Classify by Bragg-vector co-occurrence (``changes``: :class:`BraggClassParams` fields).

        Without a peak table the disks are found with the disk step's defaults
        (or the ``disks`` record given), once.
        """
        rec = self.bragg_record or BraggClassParams()
        self.bragg_record = rec.replace(**changes) if changes else rec
        if self.peaks is None and self.disks_record is None:
            self.disks_record = FindDisksParams()
        return self._submit()  # type: ignore[attr-defined]

    def use_features(self) -> Any:
        """Back to classes from features (the Bragg record is dropped)."""
        self.bragg_record = None
        self.bragg_result = None
        return self._submit()  # type: ignore[attr-defined]

    def _bragg_edit(self, op: str, a: int, b: int) -> Any:
        n = None if self.classification is None else self.classification.n_classes
        bad = (op == "merge" and (a == b or not (0 <= a < (n or 0) and 0 <= b < (n or 0)))) or \
              (op == "split" and not 0 <= a < (n or 0))
        if n is None or bad:
            what = f"two different classes among 0..{(n or 1) - 1}" if op == "merge" else "a class"
            self._fail("classes", ClassificationError(  # type: ignore[attr-defined]
                f"{op} needs {what}, got {a}" + (f" and {b}" if op == "merge" else "")))
            return self
        self.bragg_record = self.bragg_record.replace(edits=self.bragg_record.edits + ((op, int(a), int(b)),))
        return self._submit()  # type: ignore[attr-defined]

    def _peaks_for(self, disks: FindDisksParams | None, token: Any) -> PeakTable:
        if self.peaks is not None:
            return self.peaks
        cached = self._peak_cache
        if cached is not None and cached[0] == disks:
            return cached[1]
        self._set_status("finding disks")  # type: ignore[attr-defined]
        table = find_disks(self.cube, disks, progress=self._report, cancel=token)  # type: ignore[attr-defined]
        self._peak_cache = (disks, table)
        return table

    def _bragg_classify(self, rec: BraggClassParams, disks: FindDisksParams | None,
                        token: Any) -> tuple[Classification, BraggClasses]:
        """The Bragg classes as a :class:`Classification` (class map, probabilities, class patterns)."""
        peaks = self._peaks_for(disks, token)
        cal = self.cube.calibration
        origin = cal.origin_map if cal.origin_map is not None else cal.origin
        if origin is None:
            origin = (self.cube.detector_shape[0] / 2, self.cube.detector_shape[1] / 2)
        res = bragg_classes(peaks, rec, detector_shape=self.cube.detector_shape, origin=origin)
        n = res.probabilities.shape[-1]
        # positions where no kept Bragg vector is seen (label -1) pool in an extra class, left out
        pooled = np.where(res.labels >= 0, res.labels, n)
        pats = class_patterns(self.cube, pooled, n + 1, ("mean", "max"), progress=self._report,  # type: ignore
                              cancel=token)
        cls = Classification(res.labels, res.probabilities, pats["mean"][:n], pats["max"][:n], None,
                             self.classify_record)
        return cls, res
