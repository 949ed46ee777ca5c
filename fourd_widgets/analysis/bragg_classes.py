"""Classes from Bragg-vector co-occurrence (py4DSTEM's BraggVectorClassification), refined by NMF.

Bragg vectors that belong to one grain or phase appear together: at every scan
position where one of them is present, the others mostly are too. The steps:

1. occupancy: which Bragg-vector-map cells (or lattice sites) hold a peak at each
   position (:func:`~fourd_widgets.analysis.features.bragg_features`), keeping the
   sites present at a fraction ``min_presence`` of the positions at least;
2. seeds: sites are grouped by their co-occurrence (cosine similarity of their
   presence over the scan; Ward-free average linkage cut at ``min_cooccurrence``):
   one class per group;
3. refinement: a non-negative factorisation of the occupancy, started from the
   seeds (scikit-learn ``NMF`` with ``init='custom'``), gives each position a weight
   per class (its probability once normalised) and each class its sites;
4. merge: classes whose sites overlap (cosine above ``merge_above``) become one;
   split: a class whose members fall into two site groups of their own is split;
5. the user's edits (``edits``), in order: ``('merge', a, b)`` makes classes a and b
   one (kept at ``min(a, b)``, later classes move down); ``('split', k, 0)`` splits
   class k in two by 2-means over its members' occupancy (the new class comes last).
   They are part of the record, so a recipe replays the classes a user merged and
   split by clicking.

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.analysis.peaks import PeakTable
>>> qx = [4.0, 12, 4, 12, 8, 8, 8, 8]; qy = [8.0, 8, 8, 8, 4, 12, 4, 12]
>>> t = PeakTable((2, 2), [0, 2, 4, 6, 8], qx=qx, qy=qy, intensity=[1.0] * 8, correlation=[1.0] * 8)
>>> r = bragg_classes(t, BraggClassParams(bragg_bin=2.0), detector_shape=(16, 16), origin=(8.0, 8.0))
>>> lab = r.labels.tolist()
>>> lab[0][0] == lab[0][1], lab[0][0] != lab[1][0]
(True, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..core.errors import ParameterError
from .class_model import ClassificationError
from ..core.params import Params, param, record_from_dict
from .features import FeatureParams, bragg_features
from .peaks import PeakTable
from .steps import RunContext, own_record

__all__ = ["BraggClassParams", "BraggClasses", "bragg_classes", "bragg_classes_step"]


@dataclass(frozen=True, eq=False)
class BraggClassParams(Params):
    """Record of the co-occurrence classification of Bragg vectors."""

    step = "bragg_classes"
    bragg_bin: float = param(4.0, units="px", gt=0, doc="cell of the Bragg-vector map the peaks are counted in")
    sites: np.ndarray | None = param(None, units="px", doc="(m, 2) lattice sites relative to the origin; None: cells")
    site_radius: float = param(2.0, units="px", gt=0, doc="a peak within this radius occupies a site")
    min_presence: float = param(0.05, ge=0, le=1, doc="sites present at fewer positions (fraction) are dropped")
    min_cooccurrence: float = param(0.5, gt=0, le=1, doc="sites seen together at least this much seed one class")
    merge_above: float = param(0.7, gt=0, le=1, doc="classes whose sites overlap more than this are merged")
    split: bool = param(True, doc="split a class whose members fall into two groups of sites")
    edits: tuple[tuple[str, int, int], ...] = param(
        (), doc="the user's merges and splits, in order: ('merge', a, b) or ('split', k, 0)")
    max_iter: int = param(300, ge=1, doc="NMF iterations at most")
    seed: int = param(0, ge=0, doc="random state")

    def validate(self) -> None:
        for op, a, b in self.edits:
            if op not in ("merge", "split") or a < 0 or b < 0:
                raise ParameterError(f"bragg_classes.edits: {(op, a, b)} is not an edit; use ('merge', a, b) or "
                                     "('split', k, 0) with classes 0, 1, ...", field="edits")


@dataclass(frozen=True, eq=False)
class BraggClasses:
    """Classes of Bragg-vector co-occurrence.

    Attributes
    ----------
    labels : (Rx, Ry) int64 array
        Class of each position (-1 where no kept site is occupied).
    probabilities : (Rx, Ry, n_classes) array
        NMF weights normalised per position.
    class_sites : (n_classes, m) array
        Weight of each kept site in each class.
    site_cells : (m,) int64 array
        Index of each kept site among the cells (or given sites).
    params : BraggClassParams
    """

    labels: np.ndarray
    probabilities: np.ndarray
    class_sites: np.ndarray
    site_cells: np.ndarray
    params: BraggClassParams

    def to_h5(self, group: Any) -> None:
        """Write into an HDF5 group."""
        for n in ("labels", "probabilities", "class_sites", "site_cells"):
            group.create_dataset(n, data=getattr(self, n))
        group.create_dataset("params_json", data=json.dumps(self.params.to_dict()))

    @classmethod
    def from_h5(cls, group: Any) -> "BraggClasses":
        """Read what :meth:`to_h5` wrote."""
        return cls(*(group[n][()] for n in ("labels", "probabilities", "class_sites", "site_cells")),
                   record_from_dict(json.loads(group["params_json"][()])))


def _cosine(a: np.ndarray) -> np.ndarray:
    """Cosine similarity of the columns of ``a`` (n, m) -> (m, m)."""
    norm = np.sqrt((a * a).sum(axis=0))
    norm[norm == 0] = 1.0
    b = a / norm
    return b.T @ b


def _site_groups(occ: np.ndarray, threshold: float) -> np.ndarray:
    """Group label of each site: average linkage on 1 - co-occurrence, cut at 1 - threshold."""
    m = occ.shape[1]
    if m < 2:
        return np.zeros(m, np.int64)
    from sklearn.cluster import AgglomerativeClustering

    dist = np.clip(1.0 - _cosine(occ), 0.0, None)
    return AgglomerativeClustering(None, metric="precomputed", linkage="average",
                                   distance_threshold=1.0 - threshold).fit_predict(dist).astype(np.int64)


def _refine(occ: np.ndarray, groups: np.ndarray, p: BraggClassParams) -> tuple[np.ndarray, np.ndarray]:
    """NMF of the occupancy from the seed groups: (positions x classes) weights, (classes x sites) sites."""
    from sklearn.decomposition import NMF

    k = int(groups.max()) + 1
    h0 = (groups[None, :] == np.arange(k)[:, None]).astype(float) + 1e-3
    w0 = occ @ h0.T / h0.sum(axis=1)[None] + 1e-3
    est = NMF(k, init="custom", max_iter=p.max_iter, random_state=p.seed)
    w = est.fit_transform(occ, W=w0, H=h0)
    return w, est.components_


def _merge(w: np.ndarray, h: np.ndarray, above: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge classes whose site weights overlap (cosine) more than ``above``, repeatedly."""
    while h.shape[0] > 1:
        c = _cosine(h.T)
        np.fill_diagonal(c, -1.0)
        i, j = np.unravel_index(np.argmax(c), c.shape)
        if c[i, j] <= above:
            break
        a, b = min(i, j), max(i, j)
        h = np.delete(np.vstack([h, h[a] + h[b]]), [a, b], axis=0)
        w = np.delete(np.hstack([w, (w[:, a] + w[:, b])[:, None]]), [a, b], axis=1)
    return w, h


def bragg_classes(peaks: PeakTable, params: BraggClassParams | None = None, *,
                  detector_shape: tuple[int, int] | None = None, origin: Any = None,
                  **overrides: Any) -> BraggClasses:
    """Classify positions by which Bragg vectors occur together.

    Parameters
    ----------
    peaks : PeakTable
        In detector pixels.
    params : BraggClassParams, optional
    detector_shape : (Qx, Qy)
        Needed (a peak table does not record its detector).
    origin : (2,) or (Rx, Ry, 2) array
        Beam origin, px. Needed.
    **overrides
        :class:`BraggClassParams` fields.

    Returns
    -------
    BraggClasses
    """
    p = own_record(params, BraggClassParams, overrides, "bragg_classes")
    if detector_shape is None or origin is None:
        raise ParameterError("bragg_classes needs detector_shape=(Qx, Qy) and origin= (the beam origin in px, "
                             "one (x, y) or a map): a peak table records neither", field="detector_shape")
    fp = FeatureParams(kind="bragg", bragg_bin=p.bragg_bin, sites=p.sites, site_radius=p.site_radius)
    f = bragg_features(peaks, fp, tuple(detector_shape), origin)
    scan = f.values.shape[:2]
    occ_all = (f.values.reshape(-1, f.values.shape[-1]) > 0).astype(float)
    keep = np.nonzero(occ_all.mean(axis=0) >= max(p.min_presence, 1e-12))[0]
    if keep.size == 0:
        raise ParameterError("bragg_classes: no Bragg vector is present at min_presence of the positions; "
                             "lower min_presence or find more peaks", field="min_presence")
    occ = occ_all[:, keep]
    with threadpool_limits(1):
        groups = _site_groups(occ, p.min_cooccurrence)
        w, h = _refine(occ, groups, p)
        w, h = _merge(w, h, p.merge_above)
        if p.split and h.shape[0] > 0:
            w, h = _split(occ, w, h, p)
        for op, a, b in p.edits:
            w, h = _merge_two(w, h, a, b) if op == "merge" else _split_one(occ, w, h, a, p.seed)
    total = w.sum(axis=1, keepdims=True)
    prob = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)
    labels = np.where(total[:, 0] > 0, np.argmax(w, axis=1), -1).astype(np.int64)
    return BraggClasses(labels.reshape(scan), prob.reshape(*scan, -1), h, keep.astype(np.int64), p)


def _split(occ: np.ndarray, w: np.ndarray, h: np.ndarray, p: BraggClassParams) -> tuple[np.ndarray, np.ndarray]:
    """Split each class whose members' sites form two co-occurrence groups of their own."""
    labels = np.argmax(w, axis=1)
    ws, hs = [], []
    for k in range(h.shape[0]):
        members = occ[labels == k]
        used = np.nonzero(members.sum(axis=0) > 0)[0]
        groups = _site_groups(members[:, used], p.min_cooccurrence) if len(members) > 1 else np.zeros(used.size)
        if used.size < 2 or int(groups.max()) < 1:
            ws.append(w[:, k:k + 1])
            hs.append(h[k:k + 1])
            continue
        for g in range(int(groups.max()) + 1):
            row = np.zeros(h.shape[1])
            row[used[groups == g]] = h[k, used[groups == g]]
            ws.append((w[:, k] * (occ[:, used[groups == g]].sum(axis=1) > 0))[:, None])
            hs.append(row[None])
    return np.hstack(ws), np.vstack(hs)


def _merge_two(w: np.ndarray, h: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes ``a`` and ``b`` made one, kept at ``min(a, b)``."""
    n = h.shape[0]
    if a == b or not (0 <= a < n and 0 <= b < n):
        raise ClassificationError(f"merge needs two different classes among 0..{n - 1}, got {a} and {b}")
    lo, hi = min(a, b), max(a, b)
    w, h = w.copy(), h.copy()
    w[:, lo] += w[:, hi]
    h[lo] += h[hi]
    return np.delete(w, hi, axis=1), np.delete(h, hi, axis=0)


def _split_one(occ: np.ndarray, w: np.ndarray, h: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class ``k`` split by 2-means over its members' occupancy; the second half becomes the last class."""
    from sklearn.cluster import KMeans

    n = h.shape[0]
    if not 0 <= k < n:
        raise ClassificationError(f"split needs a class among 0..{n - 1}, got {k}")
    total = w.sum(axis=1)
    idx = np.nonzero((np.argmax(w, axis=1) == k) & (total > 0))[0]
    rows = occ[idx]
    if len(idx) < 2 or len(np.unique(rows, axis=0)) < 2:
        raise ClassificationError(f"class {k} has {len(idx)} position(s) with {len(np.unique(rows, axis=0))} "
                                  "different sets of Bragg vectors; it cannot be split")
    sub = KMeans(2, n_init=4, random_state=seed).fit_predict(rows)
    moved = idx[sub == 1]
    w_new = np.zeros((w.shape[0], 1))
    w_new[moved, 0] = w[moved, k]
    w = w.copy()
    w[moved, k] = 0.0
    h = h.copy()
    h_new = occ[moved].mean(axis=0) * h[k].sum() / max(occ[idx].mean(axis=0).sum(), 1e-12)
    h[k] = occ[idx[sub == 0]].mean(axis=0) * h[k].sum() / max(occ[idx].mean(axis=0).sum(), 1e-12)
    return np.hstack([w, w_new]), np.vstack([h, h_new[None]])


def bragg_classes_step(cube: Any, params: BraggClassParams, context: RunContext) -> BraggClasses:
    """Recipe adapter: the newest peak table of the recipe, the cube's detector and origin."""
    peaks = next((v for v in reversed(list(context.results.values())) if isinstance(v, PeakTable)), None)
    if peaks is None:
        raise ParameterError("bragg_classes needs a peak table: put a find_disks step before it", field="step")
    cal = cube.calibration
    origin = cal.origin_map if cal.origin_map is not None else cal.origin
    if origin is None:
        origin = (cube.detector_shape[0] / 2, cube.detector_shape[1] / 2)
    return bragg_classes(peaks, params, detector_shape=cube.detector_shape, origin=origin)
