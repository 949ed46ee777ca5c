"""Painted labels: a brush on the scan grid, and the semi-supervised pass that spreads them.

A user paints a few scan positions with a class (``ClassifyParams.seeds``, an
``(Rx, Ry)`` int map, -1 where unpainted). :func:`spread_labels` gives every
position a class by label spreading over the nearest neighbours in component
space (scikit-learn ``LabelSpreading``, kNN kernel): a painted class reaches the
positions whose patterns resemble its painted ones, however its members are
spread in the scan. The classification step then stores the model of those
labels (class centres, variances) in its record, so the painted pass replays
bit-equal and classifies other scans like any trained model.

Examples
--------
>>> import numpy as np
>>> y = np.r_[np.random.default_rng(0).normal(0, 0.1, (20, 2)), np.random.default_rng(1).normal(3, 0.1, (20, 2))]
>>> seeds = np.full(40, -1); seeds[0] = 0; seeds[39] = 1
>>> labels = spread_labels(y, seeds, 2)
>>> labels[:20].tolist() == [0] * 20, labels[20:].tolist() == [1] * 20
(True, True)
>>> brush_mask((5, 5), [(0, 0), (0, 4)], 0.0)[0].tolist()
[True, True, True, True, True]
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .class_model import ClassificationError

__all__ = ["spread_labels", "brush_mask", "painted", "NEIGHBOURS"]

#: Neighbours in component space each position takes its class from (kNN graph of the spreading).
NEIGHBOURS = 7


def spread_labels(y: np.ndarray, seeds: np.ndarray, n_classes: int, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """Class of every row of ``y`` from the painted ones, by label spreading on a kNN graph.

    Parameters
    ----------
    y : (n, k) array
        Component coordinates of the positions.
    seeds : (n,) int array
        Painted class of each position, -1 where unpainted.
    n_classes : int
        Classes 0..n_classes-1, each painted somewhere.
    neighbours : int
        Size of each position's neighbourhood.

    Returns
    -------
    (n,) int64 array
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.semi_supervised import LabelSpreading

    s = np.asarray(seeds, np.int64).reshape(-1)
    if s.size != len(y):
        raise ClassificationError(f"the painted labels cover {s.size} positions, the scan has {len(y)}; paint "
                                  "on this scan (or clear the painting)")
    if len(y) < 2:
        return np.zeros(len(y), np.int64)
    est = LabelSpreading(kernel="knn", n_neighbors=int(min(neighbours, len(y) - 1)), alpha=0.2, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(y, s)
    # classes are the painted ones in order (0..n-1), so the columns are the classes
    dist = np.nan_to_num(est.label_distributions_, nan=0.0)
    labels = est.classes_[np.argmax(dist, axis=1)].astype(np.int64)
    # a position no painted one reaches (another component of the graph) keeps the nearest painted class
    lost = dist.sum(axis=1) == 0
    if lost.any():
        centres = np.stack([y[s == k].mean(axis=0) for k in range(n_classes)])
        labels[lost] = np.argmin(((y[lost, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    return labels


def brush_mask(shape: tuple[int, int], points: Any, radius: float) -> np.ndarray:
    """Scan positions a brush stroke covers: within ``radius`` of the polyline through ``points``.

    Parameters
    ----------
    shape : (Rx, Ry)
    points : (m, 2) array_like
        The stroke, in scan positions (rx, ry); one point is a dab.
    radius : float
        Brush radius in scan steps (0: the nearest position to each point of the stroke).

    Returns
    -------
    (Rx, Ry) bool array
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    out = np.zeros(shape, bool)
    if pts.size == 0:
        return out
    # the stroke sampled every quarter step, so no position between two samples is skipped
    dense = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(int(np.ceil(4 * np.abs(b - a).max())), 1)
        dense.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
    q = np.concatenate(dense)
    if radius <= 0:
        i = np.clip(np.rint(q[:, 0]).astype(int), 0, shape[0] - 1)
        j = np.clip(np.rint(q[:, 1]).astype(int), 0, shape[1] - 1)
        out[i, j] = True
        return out
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for x, y in q:
        out |= (ii - x) ** 2 + (jj - y) ** 2 <= radius ** 2
    return out


def painted(seeds: np.ndarray | None, mask: np.ndarray, label: int) -> np.ndarray:
    """``seeds`` (or an unpainted map) with the positions of ``mask`` set to ``label`` (-1 erases)."""
    out = np.full(mask.shape, -1, np.int64) if seeds is None else np.array(seeds, dtype=np.int64)
    if out.shape != mask.shape:
        raise ClassificationError(f"the painting is {out.shape}, the brush {mask.shape}; clear the painting first")
    if label < -1:
        raise ClassificationError(f"paint class {label}: use a class 0, 1, ... or -1 to erase")
    out[mask] = int(label)
    return out
