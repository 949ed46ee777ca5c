"""A fitted classifier stored as arrays in a record, applied by plain numpy (bit-equal on replay).

scikit-learn fits the model (:mod:`fourd_widgets.analysis.classify`); what it learnt
(the scaler, the principal axes, the class centres and, for a Gaussian mixture, the
diagonal variances and weights) is copied into a :class:`ClassModel` record. Applying
the record needs no refit and no scikit-learn object, so the same record classifies
another scan of the same material, and a recipe replays to the bit.

Examples
--------
>>> import numpy as np
>>> m = ClassModel(kind="kmeans", mean=np.zeros(2), scale=np.ones(2), components=np.eye(2),
...                centres=np.array([[0.0, 0.0], [5.0, 5.0]]))
>>> labels, prob = apply_model(m, np.array([[0.1, 0.2], [4.0, 6.0]]))
>>> labels.tolist(), prob.tolist()
([0, 1], [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import nnls

from ..core.errors import FourDError, ParameterError
from ..core.params import Params, param

__all__ = ["ClassModel", "ClassificationError", "apply_model", "labels_from_coordinates", "project", "posterior", "unmix",
           "merge_classes", "split_class", "check_classes", "model_from_labels"]


#: Rows projected at a time (bounds the float64 copy of the features).
PROJECT_ROWS = 16384


class ClassificationError(FourDError, ValueError):
    """Features or classes cannot be used as asked (NaN rows, too many components, an empty class...)."""


@dataclass(frozen=True, eq=False)
class ClassModel(Params):
    """A trained classifier: scaler, principal axes and class centres, as arrays."""

    step = "class_model"
    mean: np.ndarray = param(doc="(n_features,) subtracted from each feature vector")
    scale: np.ndarray = param(doc="(n_features,) each feature is divided by it after centring")
    components: np.ndarray = param(doc="(k, n_features) principal axes the vectors are projected on")
    centres: np.ndarray = param(doc="(n_classes, k) class centres in component space")
    kind: Literal["gmm", "kmeans"] = param("kmeans", doc="gmm: diagonal Gaussian mixture; kmeans: nearest centre")
    variances: np.ndarray | None = param(None, doc="gmm: (n_classes, k) diagonal variances")
    weights: np.ndarray | None = param(None, doc="gmm: (n_classes,) mixture weights")

    def validate(self) -> None:
        f = self.mean.shape[0] if self.mean.ndim == 1 else -1
        if self.scale.shape != (f,) or self.components.ndim != 2 or self.components.shape[1] != f:
            raise ParameterError("class_model: mean, scale and components disagree on the number of features",
                                 field="components")
        if self.centres.ndim != 2 or self.centres.shape[1] != self.components.shape[0]:
            raise ParameterError("class_model: centres must be (n_classes, k) with k principal axes",
                                 field="centres")
        if self.kind == "gmm" and (self.variances is None or self.weights is None
                                   or self.variances.shape != self.centres.shape
                                   or self.weights.shape != self.centres.shape[:1]):
            raise ParameterError("class_model: a gmm needs variances (n_classes, k) and weights (n_classes,)",
                                 field="variances")

    @property
    def n_classes(self) -> int:
        return int(self.centres.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])


def project(model: ClassModel, x: np.ndarray) -> np.ndarray:
    """Component coordinates ``(n, k)`` of feature vectors ``x`` (n, n_features)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != model.n_features:
        raise ClassificationError(f"the model was trained on {model.n_features} features per position, these "
                                  f"vectors have {x.shape[-1]}; use the same feature record as for training")
    # in fixed batches of rows: a bounded float64 copy whatever the scan size
    out = np.empty((len(x), model.components.shape[0]))
    for i in range(0, len(x), PROJECT_ROWS):
        out[i:i + PROJECT_ROWS] = ((x[i:i + PROJECT_ROWS].astype(np.float64) - model.mean) / model.scale
                                   ) @ model.components.T
    return out


def posterior(model: ClassModel, y: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` of component coordinates ``y``."""
    if model.kind == "kmeans":
        d2 = ((y[:, None, :] - model.centres[None]) ** 2).sum(axis=2)
        out = np.zeros_like(d2)
        out[np.arange(len(y)), np.argmin(d2, axis=1)] = 1.0
        return out
    var = model.variances
    logp = (np.log(model.weights)[None] - 0.5 * (np.log(2 * np.pi * var).sum(axis=1)[None]
                                                 + (((y[:, None, :] - model.centres[None]) ** 2) / var[None]).sum(2)))
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def unmix(model: ClassModel, y: np.ndarray) -> np.ndarray:
    """Fractions ``(n, n_classes)`` of each class centre in each vector: non-negative, summing to one.

    A pattern that is a mix of two grains lies between their centres; the fraction
    of each centre is its probability (linear unmixing, least squares with the
    sum-to-one row weighted strongly).
    """
    c = model.centres
    w = 1e3 * max(1.0, float(np.abs(c).max()))
    a = np.vstack([c.T, np.full((1, c.shape[0]), w)])
    out = np.empty((len(y), c.shape[0]))
    for i, v in enumerate(y):
        out[i] = nnls(a, np.append(v, w))[0]
    s = out.sum(axis=1, keepdims=True)
    return out / np.where(s > 0, s, 1.0)


def apply_model(model: ClassModel, x: np.ndarray, probability: str = "posterior") -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` int64 and probabilities ``(n, n_classes)`` of feature vectors ``x`` (n, n_features).

    Labels are the most probable class under the model (posterior or nearest centre);
    ``probability='unmixing'`` gives linear-unmixing fractions instead of posteriors.
    """
    return labels_from_coordinates(model, project(model, x), probability)


def labels_from_coordinates(model: ClassModel, y: np.ndarray,
                            probability: str = "posterior") -> tuple[np.ndarray, np.ndarray]:
    """:func:`apply_model` on coordinates ``y`` (n, k) already projected by :func:`project`."""
    prob = posterior(model, y)
    labels = np.argmax(prob, axis=1).astype(np.int64)
    if probability == "unmixing":
        prob = unmix(model, y)
    return labels, prob


def check_classes(labels: np.ndarray, n_classes: int, after: str) -> None:
    """Raise :class:`ClassificationError` naming any class with no position."""
    empty = sorted(set(range(n_classes)) - set(np.unique(labels).tolist()))
    if empty:
        raise ClassificationError(f"class {empty[0]} has no position after {after}; merge it into another class "
                                  f"(merge_classes) or choose fewer classes")


def model_from_labels(base: ClassModel, y: np.ndarray, labels: np.ndarray, n_classes: int,
                      floor: float | None = None) -> ClassModel:
    """``base`` with its centres (and variances, weights) re-estimated from labelled coordinates ``y``."""
    check_classes(labels, n_classes, "relabelling")
    centres = np.stack([y[labels == k].mean(axis=0) for k in range(n_classes)])
    if base.kind == "kmeans":
        return base.replace(centres=centres)
    if floor is None:  # keep the floor the model was fitted with (its smallest variance)
        floor = float(base.variances.min()) if base.variances is not None else 1e-12
    var = np.stack([y[labels == k].var(axis=0) for k in range(n_classes)]) + max(floor, 1e-12)
    weights = np.bincount(labels, minlength=n_classes) / len(labels)
    return base.replace(centres=centres, variances=var, weights=weights)


def merge_classes(model: ClassModel, a: int, b: int) -> ClassModel:
    """The model with classes ``a`` and ``b`` made one (kept at ``min(a, b)``; later classes move down).

    Centres are averaged with the mixture weights (equal for k-means); variances are
    moment-matched, so the merged Gaussian covers both.
    """
    c = model.n_classes
    if a == b or not (0 <= a < c and 0 <= b < c):
        raise ClassificationError(f"merge needs two different classes among 0..{c - 1}, got {a} and {b}")
    if c < 2:
        raise ClassificationError("there is only one class; nothing to merge")
    lo, hi = min(a, b), max(a, b)
    w = np.ones(c) if model.weights is None else np.asarray(model.weights, dtype=float)
    wa, wb = w[lo], w[hi]
    mu = (wa * model.centres[lo] + wb * model.centres[hi]) / (wa + wb)
    centres = np.delete(model.centres, hi, axis=0)
    centres[lo] = mu
    changes: dict = {"centres": centres}
    if model.kind == "gmm":
        v = model.variances
        var = (wa * (v[lo] + (model.centres[lo] - mu) ** 2) + wb * (v[hi] + (model.centres[hi] - mu) ** 2)) / (wa + wb)
        variances = np.delete(v, hi, axis=0)
        variances[lo] = var
        weights = np.delete(w, hi)
        weights[lo] = wa + wb
        changes.update(variances=variances, weights=weights)
    return model.replace(**changes)


def split_class(model: ClassModel, y: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> ClassModel:
    """The model with class ``k`` split in two by 2-means over its members' coordinates ``y``.

    The new class is appended last.
    """
    from sklearn.cluster import KMeans

    members = y[labels == k]
    if len(members) < 2:
        raise ClassificationError(f"class {k} has {len(members)} position(s); a class needs two to be split")
    sub = KMeans(2, n_init=4, random_state=seed).fit(members)
    sl = sub.labels_
    new_labels = labels.copy()
    idx = np.nonzero(labels == k)[0]
    new_labels[idx[sl == 1]] = model.n_classes
    grown = model.replace(centres=np.vstack([model.centres, sub.cluster_centers_[1]]),
                          **({} if model.kind == "kmeans" else
                             {"variances": np.vstack([model.variances, model.variances[k]]),
                              "weights": np.append(model.weights, model.weights[k])}))
    return model_from_labels(grown, y, new_labels, model.n_classes + 1)
