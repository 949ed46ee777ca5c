"""Headless half of ``fw.Segmenter``: features, decomposition and classes tuned live.

The session holds three records: the features (:class:`FeatureParams`), the
decomposition (:class:`DecomposeParams`) and the classification
(:class:`ClassifyParams`, whose trained model it keeps). Features come from one
engine pass and are cached per feature record; a PCA is fitted once for the
scree's number of components, so dragging the number of components only slices
it (no refit). Classes are refitted on the worker; the previous result stays shown
until the new one arrives (newest request wins).

Merging, splitting and painted labels edit the classification record (its model
or its seeds), so ``fw.run(session.params, cube)`` replays exactly what is shown.

View events: ``'scree'`` (explained variance ratio), ``'components'``
(:class:`Decomposition`), ``'classes'`` (:class:`Classification`),
``'class_pattern'`` (``(k, mean pattern)``), plus those of :class:`Tool`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.class_model import ClassificationError, check_classes, merge_classes, split_class
from ..analysis.classify import (Classification, ClassifyParams, Decomposition, DecomposeParams, classify_features,
                                 decompose_matrix, feature_matrix)
from ..analysis.bragg_classes import BraggClassParams
from ..analysis.disks import FindDisksParams
from ..analysis.features import FeatureParams, Features
from ..analysis.features_polar import features_of, with_changes
from ..analysis.peaks import PeakTable
from ..core.recipe import Recipe
from .base import Request, Tool
from .segmenter_bragg import SegmenterBragg
from .segmenter_brush import SegmenterBrush

__all__ = ["SegmenterSession", "SegmenterRequest"]


@dataclass(frozen=True)
class SegmenterRequest:
    """What the worker computes: the three records (the features are the classification's)."""

    decompose: DecomposeParams
    classify: ClassifyParams
    bragg: BraggClassParams | None = None
    disks: FindDisksParams | None = None


class SegmenterSession(SegmenterBrush, SegmenterBragg, Tool):
    """Features, decomposition and classification of a cube, with live tuning.

    Parameters
    ----------
    cube : DataCube
    params : Recipe, ClassifyParams or DecomposeParams, optional
        Records to start from (a recipe may hold both; one with a bragg_classes step
        starts on the Bragg route).
    peaks : PeakTable, optional
        Bragg peaks (detector px) for the Bragg route; without them it finds the disks itself.
    disks : FindDisksParams, optional
        How the Bragg route finds the disks (default: the disk step's defaults).
    """

    name = "segmenter"

    def __init__(self, cube: Any, params: Any = None, peaks: PeakTable | None = None,
                 disks: FindDisksParams | None = None) -> None:
        super().__init__(cube)
        self._init_bragg(peaks, disks)
        self.decompose_record = DecomposeParams(n_components=4)
        self.classify_record = ClassifyParams(n_components=4, patterns=("mean", "max"))
        given = _records(params)
        for rec in given:
            if isinstance(rec, DecomposeParams):
                self.decompose_record = rec
            elif isinstance(rec, ClassifyParams):
                self.classify_record = rec
            elif isinstance(rec, BraggClassParams):
                self.bragg_record = rec
            elif isinstance(rec, FindDisksParams) and peaks is None:
                self.disks_record = rec
        if not any(isinstance(rec, DecomposeParams) for rec in given):
            # one set of features for both; the maps start with the classification's components
            c = self.classify_record
            self.decompose_record = DecomposeParams(features=c.features, n_components=c.n_components)
        self.features: Features | None = None
        self.decomposition: Decomposition | None = None
        self.classification: Classification | None = None
        self.selected_class: int | None = None
        self._pending_check: str | None = None  # what a model edit was, to name it if a class ends empty
        self._feature_cache: tuple[FeatureParams, Features, np.ndarray] | None = None
        self._pca_cache: tuple[Any, Decomposition] | None = None
        self._class_cache: dict = {}  # principal axes of the classification, per feature matrix
        self._worker = self._add_worker(self._compute, self._deliver)
        self._submit()

    # --- the tool contract ----------------------------------------------------------------------
    @property
    def params(self) -> Recipe:
        """The decomposition and classification records (with the trained model once fitted); on the Bragg
        route the disk-finding record (when the session found the disks) and the Bragg-class record."""
        if self.bragg_record is not None:
            disks = () if self.peaks is not None or self.disks_record is None else (self.disks_record,)
            return Recipe((self.decompose_record, *disks, self.bragg_record), calibration=self.cube.calibration)
        return Recipe((self.decompose_record, self.classify_record), calibration=self.cube.calibration)

    @classmethod
    def from_params(cls, cube: Any, params: Any, **options: Any) -> "SegmenterSession":
        return cls(cube, params, **options)

    def results(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.decomposition is not None:
            out["decompose"] = self.decomposition
        if self.classification is not None:
            out["classify"] = self.classification
            out["class_map"] = self.classification.labels
        if self.bragg_result is not None:
            out["bragg_classes"] = self.bragg_result
        return out

    def run_on_all(self) -> "SegmenterSession":
        """The session works on the whole scan already: wait for it."""
        return self.wait()

    # --- user actions -------------------------------------------------------------------------
    def set_features(self, **changes: Any) -> "SegmenterSession":
        """Change the feature record (kind, bin, crop, scaling...); both records use it; refits."""
        f = with_changes(self.classify_record.features, **changes)
        self.decompose_record = self.decompose_record.replace(features=f)
        self.classify_record = self.classify_record.replace(features=f, model=None)
        return self._submit()

    def set_decomposition(self, **changes: Any) -> "SegmenterSession":
        """Change the decomposition (method, n_components...); PCA only slices its cached fit."""
        self.decompose_record = self.decompose_record.replace(**changes)
        return self._submit()

    def set(self, **changes: Any) -> "SegmenterSession":
        """Change the classification (n_components, method, n_classes...); the model is refitted."""
        changes.setdefault("model", None)
        self.classify_record = self.classify_record.replace(**changes)
        return self._submit()

    def select_class(self, k: int) -> np.ndarray | None:
        """Show class ``k``'s mean pattern (event ``'class_pattern'``) and return it."""
        c = self.classification
        if c is None or c.mean_patterns is None or not 0 <= k < c.n_classes:
            return None
        self.selected_class = int(k)
        self._emit("class_pattern", (int(k), c.mean_patterns[k]))
        return c.mean_patterns[k]

    def class_at(self, rx: float, ry: float) -> int | None:
        """The class shown at scan position (rx, ry) (rounded, clamped), or None before classes exist."""
        if self.classification is None:
            return None
        Rx, Ry = self.classification.labels.shape
        return int(self.classification.labels[int(np.clip(round(rx), 0, Rx - 1)), int(np.clip(round(ry), 0, Ry - 1))])

    def merge(self, a: int, b: int) -> "SegmenterSession":
        """Make classes ``a`` and ``b`` one (the trained model is edited, not refitted; Bragg route: an edit)."""
        if self.bragg_record is not None:
            return self._bragg_edit("merge", a, b)
        return self._edit_model(lambda m, c: merge_classes(m, a, b), "the merge")

    def split(self, k: int) -> "SegmenterSession":
        """Split class ``k`` in two (2-means over its members)."""
        if self.bragg_record is not None:
            return self._bragg_edit("split", k, 0)
        return self._edit_model(lambda m, c: split_class(m, c.coordinates, c.labels.reshape(-1), k,
                                                          self.classify_record.seed), "the split")

    def paint(self, positions: Any, label: int) -> "SegmenterSession":
        """Label scan positions ``[(rx, ry), ...]`` with class ``label`` (-1 erases) for a semi-supervised pass
        (each position alone; :meth:`paint_labels` paints strokes and masks with a brush)."""
        pts = np.asarray(positions, dtype=float).reshape(-1, 2)
        shape = tuple(self.cube.scan_shape)
        mask = np.zeros(shape, bool)
        mask[np.clip(np.rint(pts[:, 0]).astype(int), 0, shape[0] - 1),
             np.clip(np.rint(pts[:, 1]).astype(int), 0, shape[1] - 1)] = True
        return self.paint_labels(mask, label)

    # --- worker ---------------------------------------------------------------------------------
    def _submit(self) -> "SegmenterSession":
        self.messages.pop("classes", None)
        self._worker.submit(Request(SegmenterRequest(self.decompose_record, self.classify_record, self.bragg_record,
                                                     self.disks_record)))
        return self

    def _edit_model(self, edit: Any, what: str) -> "SegmenterSession":
        c = self.classification
        if c is None:
            self._say("classes", "no classes yet: wait for the classification", "warning")
            return self
        try:
            model = edit(c.model, c)
        except ClassificationError as exc:
            self._fail("classes", exc)
            return self
        self.classify_record = self.classify_record.replace(model=model, seeds=None)
        self._pending_check = what
        return self._submit()

    def _features(self, p: FeatureParams, token: Any) -> tuple[Features, np.ndarray]:
        cached = self._feature_cache
        if cached is not None and cached[0] == p:
            return cached[1], cached[2]
        feats = features_of(self.cube, p, progress=self._report, cancel=token)
        x = feature_matrix(feats, self.classify_record.incremental)
        self._feature_cache = (p, feats, x)
        self._pca_cache = None
        self._class_cache = {}
        return feats, x

    def _decompose(self, feats: Features, x: np.ndarray, p: DecomposeParams) -> Decomposition:
        if p.method != "pca":
            return decompose_matrix(x, feats, p)
        key = (p.standardize, p.incremental, p.batch_size, p.n_scree, p.seed)
        m = min(max(p.n_components, p.n_scree), *x.shape)
        if p.n_components > m:
            raise ClassificationError(f"{p.n_components} components asked but the features allow at most {m}")
        if self._pca_cache is None or self._pca_cache[0] != key or self._pca_cache[1].loadings.shape[0] < m:
            self._pca_cache = (key, decompose_matrix(x, feats, p.replace(n_components=m)))
        full = self._pca_cache[1]
        k = p.n_components
        return Decomposition(full.maps[..., :k], full.loadings[:k], full.loading_images[:k],
                             full.explained_variance_ratio, p)

    def _compute(self, req: Request) -> tuple[Decomposition, Classification]:
        r: SegmenterRequest = req.params
        token = self._start("features", req.cancel)
        try:
            feats, x = self._features(r.classify.features, token)
            self._set_status("decomposing")
            dec = self._decompose(feats, x, r.decompose)
            self._deliver_components(dec)
            self._set_status("classifying")
            if r.bragg is not None:
                return dec, self._bragg_classify(r.bragg, r.disks, token)
            cls = classify_features(self.cube, feats, r.classify, cache=self._class_cache, progress=self._report,
                                    cancel=token)
            what = self._pending_check
            if what is not None:
                self._pending_check = None
                check_classes(cls.labels, cls.n_classes, what)
            return dec, cls
        finally:
            self._finish(token)

    def _deliver_components(self, dec: Decomposition) -> None:
        self.decomposition = dec
        self._emit("scree", dec.explained_variance_ratio)
        self._emit("components", dec)

    def _deliver(self, req: Request, out: tuple[Decomposition, Classification]) -> None:
        dec, cls = out
        if isinstance(cls, tuple):  # the Bragg route: (classification, Bragg classes)
            cls, self.bragg_result = cls
        self.classification = cls
        if self.messages.get("error", ("", ""))[0]:
            self._say("error", "", "info")  # a good fit clears the last failed one's message
        # the trained model joins the record: the recipe replays these classes bit for bit
        if req.params.classify is self.classify_record:
            self.classify_record = cls.params
        self._emit("classes", cls)
        if self.selected_class is not None:
            self.select_class(min(self.selected_class, cls.n_classes - 1))
        self._set_status(f"{cls.n_classes} classes")
        self._notify()


def _records(params: Any) -> list[Any]:
    if params is None:
        return []
    if isinstance(params, (ClassifyParams, DecomposeParams, BraggClassParams)):
        return [params]
    return list(Recipe.coerce(params).steps)
