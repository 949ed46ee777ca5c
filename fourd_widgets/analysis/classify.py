"""Decompositions and classification of scan positions through scikit-learn (py4DSTEM's Featurization).

Two steps, each a record plus a function in the one calling convention:

* :func:`decompose` (:class:`DecomposeParams`): PCA (with the scree of explained
  variance), NMF or ICA of the feature vectors; component maps and loadings drawn
  as diffraction patterns.
* :func:`classify` (:class:`ClassifyParams`): principal components, then a
  diagonal Gaussian mixture (number of classes by BIC when not given), k-means, or
  clustering regularised on the scan grid (connectivity); consensus over random
  restarts; a semi-supervised pass from painted labels. The fitted model is copied
  into the record (:class:`~fourd_widgets.analysis.class_model.ClassModel`): a
  record that holds a model is applied without refitting, bit-equal on replay and
  to other scans. Class mean and max patterns come from one engine pass over the cube.

Features come from :mod:`fourd_widgets.analysis.features` (one engine pass).
For scans whose feature matrix is too large for memory, ``incremental=True`` works over row
batches: ``MiniBatchNMF`` / ``MiniBatchKMeans``, and principal axes from the covariance accumulated
batch by batch (the exact PCA in one pass; ``IncrementalPCA`` above :data:`COVARIANCE_MAX_FEATURES`
features, where the covariance's eigendecomposition would cost more than the batch SVDs).

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import DataCube
>>> a = np.zeros((6, 6, 8, 8), np.float32); a[:3, :, 2, 2] = 1; a[3:, :, 5, 5] = 1
>>> r = classify(DataCube(a + 0.01), n_classes=2, n_components=2, features=FeatureParams(bin=1), progress=False)
>>> sorted(np.bincount(r.labels.ravel()).tolist()), r.mean_patterns.shape
([18, 18], (2, 8, 8))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from ..core.errors import ParameterError
from ..core.params import Params, param, record_from_dict
from ..engine.job import Buffer, Job
from ..engine.run import run_job
from .class_model import (ClassificationError, ClassModel, check_classes, labels_from_coordinates, model_from_labels,
                          project)
from .class_paint import spread_labels
from .features import FeatureParams, Features
from .features_polar import features_of
from .peaks import PeakTable
from .steps import RunContext, own_record, split_engine
from .virtual import virtual_diffraction

__all__ = ["DecomposeParams", "ClassifyParams", "Decomposition", "Classification", "decompose", "classify",
           "classify_step", "decompose_step", "ClassPatternJob", "class_patterns", "feature_matrix", "fit_model",
           "bic_curve", "consensus_labels"]

#: Largest feature matrix (float64) the in-memory route takes; larger ones need ``incremental=True``.
IN_MEMORY_LIMIT_MB = 4096
#: The incremental classification fits its principal axes over batches of float32 rows of about this
#: size (at least ``batch_size`` rows; the covariance route converts one batch at a time to float64).
#: For ``IncrementalPCA`` each partial fit is one SVD of its batch, and few large SVDs cost less than
#: many small ones (65536 rows of 256 features: 4 float32 batches take 1.3 s of CPU, 16 float64
#: batches of 4096 rows 2.0 s).
PCA_BATCH_BYTES = 16 * 2 ** 20
#: The incremental classification takes its principal axes from the covariance of the features,
#: accumulated over the same row batches in float64, when there are at most this many features (a
#: ``(n, n)`` float64 matrix: 32 MiB for 2048); above it, ``IncrementalPCA``'s per-batch SVDs.
#: The covariance route is the same PCA (exact, one pass, memory independent of the scan size) for a
#: fraction of the work: 65536 rows of 256 features take 0.15 s of CPU against 1.3 s for
#: ``IncrementalPCA``'s SVDs; its eigendecomposition grows as the cube of the number of features.
COVARIANCE_MAX_FEATURES = 2048


@dataclass(frozen=True, eq=False)
class DecomposeParams(Params):
    """Record of a decomposition: features, method and number of components."""

    step = "decompose"
    features: FeatureParams = param(FeatureParams(), doc="how each pattern becomes a feature vector")
    method: Literal["pca", "nmf", "ica"] = param("pca", doc="PCA/SVD, NMF (non-negative) or ICA")
    n_components: int = param(4, ge=1, doc="number of components")
    n_scree: int = param(32, ge=1, doc="PCA: explained variance reported for this many components")
    standardize: bool = param(False, doc="divide each feature by its standard deviation (PCA, ICA)")
    incremental: bool = param(False, doc="fit over row batches (IncrementalPCA, MiniBatchNMF) for large scans")
    batch_size: int = param(1024, ge=2, doc="incremental: rows per batch")
    max_iter: int = param(200, ge=1, doc="NMF, ICA: iterations at most")
    seed: int = param(0, ge=0, doc="random state")


@dataclass(frozen=True, eq=False)
class ClassifyParams(Params):
    """Record of a classification: features, components, clustering, and the fitted model once trained."""

    step = "classify"
    features: FeatureParams = param(FeatureParams(), doc="how each pattern becomes a feature vector")
    n_components: int = param(8, ge=1, doc="principal components the clustering works in")
    method: Literal["gmm", "kmeans", "connectivity"] = param(
        "gmm", doc="diagonal Gaussian mixture, k-means, or Ward clustering connected on the scan grid")
    n_classes: int | None = param(None, ge=1, doc="number of classes; None: chosen by BIC (gmm)")
    max_classes: int = param(8, ge=1, le=64, doc="largest number of classes BIC tries")
    standardize: bool = param(False, doc="divide each feature by its standard deviation")
    reg_covar: float = param(1e-2, ge=0, doc="gmm: variance floor, as a fraction of the mean component variance "
                                           "(keeps tight, noise-free classes from splitting under BIC)")
    incremental: bool = param(False, doc="PCA and MiniBatchKMeans over row batches (large scans): axes from the "
                                         "covariance summed batch by batch, IncrementalPCA above 2048 features")
    batch_size: int = param(1024, ge=2, doc="incremental: rows per batch (IncrementalPCA: at least this many)")
    restarts: int = param(1, ge=1, le=100, doc="random restarts; more than one: consensus labels by vote")
    probability: Literal["posterior", "unmixing"] = param(
        "posterior", doc="class probability: model posterior, or linear-unmixing fractions of the class centres")
    patterns: tuple[str, ...] = param(("mean", "max"), doc="class patterns to compute: mean, max, median")
    seeds: np.ndarray | None = param(None, doc="(Rx, Ry) int painted labels, -1 unset: a semi-supervised pass "
                                               "(label spreading in component space) instead of clustering")
    seed: int = param(0, ge=0, doc="random state")
    model: ClassModel | None = param(None, doc="a trained model: applied as it is, without refitting")

    def validate(self) -> None:
        bad = [p for p in self.patterns if p not in ("mean", "max", "median")]
        if bad:
            raise ParameterError(f"classify.patterns: {bad[0]!r} is not allowed; use mean, max, median",
                                 field="patterns")


@dataclass(frozen=True, eq=False)
class Decomposition:
    """Component maps and loadings.

    Attributes
    ----------
    maps : (Rx, Ry, k) array
    loadings : (k, n_features) array
    loading_images : (k, h, w) array
        Loadings drawn as diffraction patterns (pattern features) or as 1-row images.
    explained_variance_ratio : (m,) array or None
        PCA scree.
    params : DecomposeParams
    """

    maps: np.ndarray
    loadings: np.ndarray
    loading_images: np.ndarray
    explained_variance_ratio: np.ndarray | None
    params: DecomposeParams

    def to_h5(self, group: Any) -> None:
        """Write into an HDF5 group."""
        for n in ("maps", "loadings", "loading_images", "explained_variance_ratio"):
            if getattr(self, n) is not None:
                group.create_dataset(n, data=getattr(self, n))
        group.create_dataset("params_json", data=json.dumps(self.params.to_dict()))

    @classmethod
    def from_h5(cls, group: Any) -> "Decomposition":
        """Read what :meth:`to_h5` wrote."""
        ev = group["explained_variance_ratio"][()] if "explained_variance_ratio" in group else None
        return cls(group["maps"][()], group["loadings"][()], group["loading_images"][()], ev,
                   record_from_dict(json.loads(group["params_json"][()])))


@dataclass(frozen=True, eq=False)
class Classification:
    """Class map, probabilities, class patterns and the record with its trained model.

    Attributes
    ----------
    labels : (Rx, Ry) int64 array
    probabilities : (Rx, Ry, n_classes) array
    mean_patterns, max_patterns, median_patterns : (n_classes, Qx, Qy) arrays or None
    params : ClassifyParams
        With ``model`` set: replaying it gives the same labels, bit for bit.
    bic : (2, m) array or None
        Numbers of classes tried and their BIC (automatic choice).
    agreement : float or None
        Consensus: mean fraction of restarts agreeing with the voted label.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    mean_patterns: np.ndarray | None
    max_patterns: np.ndarray | None
    median_patterns: np.ndarray | None
    params: ClassifyParams
    bic: np.ndarray | None = None
    agreement: float | None = None
    _coordinates: np.ndarray | None = field(default=None, repr=False)

    @property
    def model(self) -> ClassModel:
        return self.params.model

    @property
    def n_classes(self) -> int:
        return int(self.probabilities.shape[-1])

    @property
    def coordinates(self) -> np.ndarray | None:
        """Component coordinates (Rx*Ry, k) of the positions (kept in memory only, for split)."""
        return self._coordinates

    def to_h5(self, group: Any) -> None:
        """Write into an HDF5 group (the record, with its model, as JSON text)."""
        for n in ("labels", "probabilities", "mean_patterns", "max_patterns", "median_patterns", "bic"):
            if getattr(self, n) is not None:
                group.create_dataset(n, data=getattr(self, n))
        group.create_dataset("params_json", data=json.dumps(self.params.to_dict()))
        if self.agreement is not None:
            group.attrs["agreement"] = self.agreement

    @classmethod
    def from_h5(cls, group: Any) -> "Classification":
        """Read what :meth:`to_h5` wrote."""
        get = lambda n: group[n][()] if n in group else None  # noqa: E731
        ag = group.attrs.get("agreement")
        return cls(get("labels"), get("probabilities"), get("mean_patterns"), get("max_patterns"),
                   get("median_patterns"), record_from_dict(json.loads(group["params_json"][()])), get("bic"),
                   None if ag is None else float(ag))


# --- feature matrix -----------------------------------------------------------------------
def feature_matrix(features: Features, incremental: bool) -> np.ndarray:
    """``(Rx*Ry, n)`` float64 rows of ``features``, checked for NaN rows and for size."""
    x = features.values.reshape(-1, features.values.shape[-1])
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.argwhere(bad.reshape(features.values.shape[:2]))[:3].tolist()
        raise ClassificationError(f"{int(bad.sum())} feature vectors hold NaN or inf (scan positions {rows}...); "
                                  "mask those detector pixels (features mask=...) or fix the data there")
    mb = x.shape[0] * x.shape[1] * 8 / 2 ** 20
    if not incremental and mb > IN_MEMORY_LIMIT_MB:
        raise ClassificationError(f"the feature matrix needs {mb:.0f} MB in memory (limit {IN_MEMORY_LIMIT_MB}); "
                                  "use the incremental route (incremental=True) or bin the patterns more")
    # the incremental route keeps the float32 features and converts one batch at a time
    return x if incremental else x.astype(np.float64)


def _check_components(k: int, x: np.ndarray, incremental: bool = False, batch: int = 0) -> None:
    n, f = x.shape
    top = min(n, f, batch) if incremental else min(n, f)
    if k > top:
        raise ClassificationError(f"{k} components asked but the features allow at most {top} "
                                  f"({n} positions, {f} features{', batch ' + str(batch) if incremental else ''}); "
                                  f"choose n_components <= {top}")


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# --- decomposition ------------------------------------------------------------------------
def decompose(cube: Any, params: DecomposeParams | None = None, *, peaks: PeakTable | None = None,
              **options: Any) -> Decomposition:
    """PCA, NMF or ICA of the feature vectors of every scan position.

    Parameters
    ----------
    cube : DataCube
    params : DecomposeParams, optional
    peaks : PeakTable, optional
        For Bragg-vector features.
    **options
        Engine options and :class:`DecomposeParams` field overrides.

    Returns
    -------
    Decomposition
    """
    engine, changes = split_engine(options)
    p = own_record(params, DecomposeParams, changes, "decompose")
    feats = features_of(cube, p.features, peaks=peaks, **engine)
    x = feature_matrix(feats, p.incremental)
    _check_components(p.n_components, x, p.incremental, p.batch_size)
    with threadpool_limits(1):  # see classify_features
        return decompose_matrix(x, feats, p)


def decompose_matrix(x: np.ndarray, feats: Features, p: DecomposeParams) -> Decomposition:
    """:func:`decompose` on a feature matrix already computed (the tools reuse it while tuning)."""
    # one BLAS thread here too (the tools call this directly): as in classify_features; spinning BLAS
    # threads tripled the CPU time of an NMF refit on a busy 2-core machine
    with threadpool_limits(1):
        return _decompose_matrix(x, feats, p)


def _decompose_matrix(x: np.ndarray, feats: Features, p: DecomposeParams) -> Decomposition:
    from sklearn.decomposition import NMF, PCA, FastICA, IncrementalPCA, MiniBatchNMF

    shape = feats.values.shape[:2]
    ratio = None
    if p.method == "nmf":
        if (x < 0).any():
            raise ClassificationError("NMF needs non-negative features; use scaling 'sqrt' or 'log' on counts, "
                                      "or PCA/ICA")
        est = (MiniBatchNMF(p.n_components, batch_size=p.batch_size, max_iter=p.max_iter, random_state=p.seed)
               if p.incremental else NMF(p.n_components, init="nndsvda", max_iter=p.max_iter, tol=1e-3, random_state=p.seed))
        # in float32: each update costs half (for 4096 x 1024 features: 0.19 s against 0.35 s), and the
        # fit is the same (relative reconstruction error equal to 5 digits); float32 features anyway
        maps = est.fit_transform(np.asarray(x, dtype=np.float32)).astype(np.float64)
        loadings = est.components_.astype(np.float64)
    else:
        z = x
        if p.standardize:
            z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        if p.method == "ica":
            # ICA of the principal scores (whitening on k columns, not on every feature): the same
            # unmixing as on the full matrix restricted to the top k directions, much cheaper
            pca = PCA(p.n_components, svd_solver=_svd_solver(p.n_components, z.shape), random_state=p.seed)
            scores = pca.fit_transform(z)
            est = FastICA(p.n_components, max_iter=p.max_iter, random_state=p.seed, whiten="unit-variance")
            maps = est.fit_transform(scores)
            loadings = est.mixing_.T @ pca.components_
        else:
            m = max(p.n_components, min(p.n_scree, x.shape[0], x.shape[1]))
            if p.incremental:
                m = min(m, p.batch_size)
                est = IncrementalPCA(m)
                for s in _batches(len(z), max(p.batch_size, m)):
                    if s.stop - s.start >= m:
                        est.partial_fit(z[s])
            else:
                est = PCA(m, random_state=p.seed, svd_solver=_svd_solver(m, z.shape))
                est.fit(z)
            ratio = est.explained_variance_ratio_.copy()
            maps = est.transform(z)[:, :p.n_components]
            loadings = est.components_[:p.n_components]
    return Decomposition(maps.reshape(*shape, -1), loadings, feats.as_images(loadings), ratio, p)


# --- classification -----------------------------------------------------------------------
def _scaler(x: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0, dtype=np.float64)
    sd = x.std(axis=0, dtype=np.float64)
    return mean, (np.where(sd > 0, sd, 1.0) if standardize else np.ones_like(mean))


def _pca(z: np.ndarray, p: ClassifyParams) -> np.ndarray:
    """Principal axes (k, n_features) of centred, scaled rows ``z`` in memory (incremental: :func:`_incremental_axes`)."""
    from sklearn.decomposition import PCA

    solver = _svd_solver(p.n_components, z.shape)
    # the axes from float32 rows (features are float32): half the work of the randomized SVD (64x64 scan,
    # 1024 features: 70 ms against 140 ms), the same axes to ~1e-6; the coordinates stay float64
    est = PCA(p.n_components, svd_solver=solver, random_state=p.seed).fit(np.asarray(z, dtype=np.float32))
    return est.components_.astype(np.float64)


def _incremental_axes(x: np.ndarray, p: ClassifyParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaler (mean, scale) and principal axes of rows ``x``, one row batch at a time.

    Up to :data:`COVARIANCE_MAX_FEATURES` features: from the covariance accumulated over the
    batches (:func:`_covariance_axes`); more: ``IncrementalPCA`` over float32 batches. Without
    standardising, the raw float32 rows go to ``IncrementalPCA``, which centres them itself, and
    its running mean is the model's: one pass over the features, no float64 copy.
    """
    from sklearn.decomposition import IncrementalPCA

    k = p.n_components
    rows = max(p.batch_size, k, PCA_BATCH_BYTES // (4 * x.shape[1]))
    if x.shape[1] <= COVARIANCE_MAX_FEATURES:
        return _covariance_axes(x, k, p.standardize, rows)
    est = IncrementalPCA(k)
    if p.standardize:
        mean, scale = _scaler(x, True)
        m32, s32 = mean.astype(np.float32), scale.astype(np.float32)
    for s in _fit_batches(len(x), rows, k):
        batch = np.asarray(x[s], dtype=np.float32)
        est.partial_fit((batch - m32) / s32 if p.standardize else batch)
    if not p.standardize:
        mean, scale = est.mean_.astype(np.float64), np.ones(x.shape[1])
    return mean, scale, est.components_.astype(np.float64)


def _covariance_axes(x: np.ndarray, k: int, standardize: bool,
                     rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, scale and the ``k`` principal axes of rows ``x`` from their covariance, in one pass of row batches.

    Each batch is converted to float64 and shifted by the first batch's mean (so that the sums of
    squares do not cancel when the mean is large against the spread), then its sums and its Gram
    matrix are added up. The mean and covariance follow exactly; the axes are the leading
    eigenvectors of the covariance (of the correlation matrix when standardising), each signed
    so that its largest loading is positive (as scikit-learn signs its PCA axes).

    Parameters
    ----------
    x : (n, f) array
        Feature rows (float32 or float64).
    k : int
        Number of axes.
    standardize : bool
        Scale each feature by its standard deviation before the PCA.
    rows : int
        Rows per batch (bounds the float64 copy).

    Returns
    -------
    mean : (f,) float64 array
    scale : (f,) float64 array
        Standard deviations (zeros replaced by 1) or ones.
    components : (k, f) float64 array

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3)) * [1.0, 5.0, 0.1] + 100.0
    >>> mean, scale, axes = _covariance_axes(x, 1, False, 64)
    >>> np.round(axes, 2).tolist(), bool(np.allclose(mean, x.mean(axis=0)))
    ([[0.0, 1.0, 0.0]], True)
    """
    n, f = x.shape
    shift = np.asarray(x[:rows], dtype=np.float64).mean(axis=0)
    total = np.zeros(f)
    gram = np.zeros((f, f))
    for s in _batches(n, rows):
        b = np.asarray(x[s], dtype=np.float64) - shift
        total += b.sum(axis=0)
        gram += b.T @ b  # numpy hands b.T @ b to BLAS as one symmetric rank-k update
    d = total / n
    cov = (gram - n * np.outer(d, d)) / max(n - 1, 1)
    mean = shift + d
    if standardize:
        sd = np.sqrt(np.clip(np.diag(cov), 0, None) * (n - 1) / n)  # as numpy's std (ddof 0), the in-memory scaler
        scale = np.where(sd > 0, sd, 1.0)
        cov = cov / np.outer(scale, scale)
    else:
        scale = np.ones(f)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    axes = vectors[:, ::-1][:, :k].T.copy()
    top = np.argmax(np.abs(axes), axis=1)
    axes *= np.sign(axes[np.arange(len(axes)), top])[:, None]
    return mean, scale, axes


def _fit_batches(n: int, size: int, least: int) -> list[slice]:
    """Row batches of ``size`` (the last one joins the one before when it has fewer than ``least`` rows).

    >>> [(s.start, s.stop) for s in _fit_batches(10, 4, 3)]
    [(0, 4), (4, 10)]
    """
    out = _batches(n, size)
    if len(out) > 1 and out[-1].stop - out[-1].start < least:
        out[-2:] = [slice(out[-2].start, n)]
    return out


def _svd_solver(k: int, shape: tuple[int, int]) -> str:
    """A randomized SVD (seeded: deterministic) for a few components of a large matrix, else the full one."""
    return "randomized" if min(shape) > 200 and k < 0.5 * min(shape) else "full"


def _cluster(y: np.ndarray, p: ClassifyParams, n: int, seed: int, shape: tuple[int, int],
             init: np.ndarray | None, reg: float) -> np.ndarray:
    """Labels of component coordinates ``y`` by the record's method."""
    from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans
    from sklearn.feature_extraction.image import grid_to_graph
    from sklearn.mixture import GaussianMixture

    if p.method == "gmm":
        if p.incremental:
            raise ClassificationError("a Gaussian mixture has no incremental route here; use method='kmeans' "
                                      "with incremental=True")
        g = GaussianMixture(n, covariance_type="diag", random_state=seed, n_init=1 if init is not None else 2,
                            means_init=init, reg_covar=reg)
        return g.fit_predict(y)
    if p.method == "kmeans":
        kw = {"init": init, "n_init": 1} if init is not None else {"n_init": 4}
        est = (MiniBatchKMeans(n, batch_size=p.batch_size, random_state=seed, **kw) if p.incremental
               else KMeans(n, random_state=seed, **kw))
        return est.fit_predict(y)
    conn = grid_to_graph(*shape)
    return AgglomerativeClustering(n, connectivity=conn, linkage="ward").fit_predict(y)


def bic_curve(y: np.ndarray, max_classes: int, seed: int, reg: float) -> np.ndarray:
    """``(2, m)``: numbers of classes 1..max and the BIC of a diagonal Gaussian mixture for each."""
    from sklearn.mixture import GaussianMixture

    ns = np.arange(1, min(max_classes, len(y)) + 1)
    bic = [GaussianMixture(int(n), covariance_type="diag", random_state=seed, n_init=2, reg_covar=reg)
           .fit(y).bic(y) for n in ns]
    return np.vstack([ns, bic]).astype(float)


def consensus_labels(runs: list[np.ndarray], n: int) -> tuple[np.ndarray, float]:
    """Vote over restarts: each run's labels matched to the first (Hungarian), then the majority."""
    from scipy.optimize import linear_sum_assignment

    ref = runs[0]
    aligned = [ref]
    for r in runs[1:]:
        table = np.zeros((n, n))
        np.add.at(table, (r, ref), 1)
        rows, cols = linear_sum_assignment(-table)
        lut = np.empty(n, np.int64)
        lut[rows] = cols
        aligned.append(lut[r])
    stack = np.stack(aligned)
    votes = np.stack([(stack == k).sum(axis=0) for k in range(n)])
    labels = np.argmax(votes, axis=0)
    return labels, float((stack == labels).mean())


def fit_model(x: np.ndarray, p: ClassifyParams, shape: tuple[int, int],
              cache: dict | None = None) -> tuple[ClassModel, dict]:
    """Train the model of record ``p`` on rows ``x`` (Rx*Ry, n_features); also the BIC curve and agreement.

    ``cache`` (a dict the caller keeps for one feature matrix) holds the scaler and principal
    axes, so a change of the clustering alone does not refit the PCA.
    """
    _check_components(p.n_components, x, p.incremental, p.batch_size)
    key = (p.n_components, p.standardize, p.incremental, p.batch_size, p.seed)
    if cache is not None and key in cache:
        mean, scale, comps, y = cache[key]
    else:
        if p.incremental:  # batches of rows, never the whole scaled matrix
            mean, scale, comps = _incremental_axes(x, p)
            # as the trained model projects (class_model.project): classify_features reuses these
            y = project(ClassModel(mean=mean, scale=scale, components=comps, centres=np.zeros((1, len(comps)))), x)
        else:
            mean, scale = _scaler(x, p.standardize)
            z = (x - mean) / scale
            comps = _pca(z, p)
            y = z @ comps.T
        if cache is not None:
            cache[key] = (mean, scale, comps, y)
    reg = max(p.reg_covar * float(y.var(axis=0).mean()), 1e-12)
    # incremental: y is what the trained model's projection gives, bit for bit (reused for the labels)
    info: dict = {"coordinates": y} if p.incremental else {}
    painted = None
    n = p.n_classes
    if p.seeds is not None and (np.asarray(p.seeds) >= 0).any():
        painted = np.asarray(p.seeds).reshape(-1)
        n = int(painted.max()) + 1
        check_classes(painted[painted >= 0], n, "painting (paint every class from 0 up)")
    if n is None:
        if p.method != "gmm":
            raise ClassificationError(f"method {p.method!r} needs n_classes; only 'gmm' chooses it (by BIC)")
        info["bic"] = bic_curve(y, p.max_classes, p.seed, reg)
        n = int(info["bic"][0, np.argmin(info["bic"][1])])
    if n > len(y):
        raise ClassificationError(f"{n} classes asked for {len(y)} positions; choose fewer classes")
    if painted is not None:  # semi-supervised: the painted labels spread over a kNN graph (class_paint)
        labels, info["agreement"] = spread_labels(y, painted, n), None
    else:
        runs = [_cluster(y, p, n, p.seed + i, shape, None, reg) for i in range(p.restarts)]
        labels, info["agreement"] = consensus_labels(runs, n) if len(runs) > 1 else (runs[0], None)
    base = ClassModel(mean=mean, scale=scale, components=comps, centres=np.zeros((n, comps.shape[0])),
                      kind="kmeans" if p.method == "kmeans" else "gmm",
                      variances=None if p.method == "kmeans" else np.ones((n, comps.shape[0])),
                      weights=None if p.method == "kmeans" else np.full(n, 1.0 / n))
    return model_from_labels(base, y, np.asarray(labels, np.int64), n, reg), info


class ClassPatternJob(Job):
    """Sum and maximum pattern of every class, in one pass (the sum by one GEMM per block)."""

    name = "class patterns"

    def __init__(self, labels: np.ndarray, n_classes: int) -> None:
        self.labels = labels
        self.n = n_classes

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        return {"sum": Buffer("single", (self.n,) + tuple(cube.detector_shape)),
                "max": Buffer("single", (self.n,) + tuple(cube.detector_shape), reduce="max")}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, np.ndarray]:
        lab = self.labels[rx, ry].reshape(-1)
        raw = block.reshape(lab.size, -1)
        # float32 within a chunk (relative error ~1e-7 of a chunk's sum), float64 across chunks
        onehot = (lab[None, :] == np.arange(self.n)[:, None]).astype(np.float32)
        mx = np.full((self.n, raw.shape[1]), -np.inf)
        for k in np.unique(lab):
            mx[k] = raw[lab == k].max(axis=0)
        shape = (self.n,) + block.shape[2:]
        return {"sum": (onehot @ raw.astype(np.float32)).reshape(shape), "max": mx.reshape(shape)}


def class_patterns(cube: Any, labels: np.ndarray, n_classes: int, which: tuple[str, ...] = ("mean", "max"),
                   **engine: Any) -> dict[str, np.ndarray]:
    """Mean and max patterns per class from one engine pass; the median (if asked) one pass per class."""
    out: dict[str, np.ndarray] = {}
    if "mean" in which or "max" in which:
        acc = run_job(cube, ClassPatternJob(labels, n_classes), **{"progress": False, **engine})
        counts = np.bincount(labels.reshape(-1), minlength=n_classes).astype(float)
        out["mean"] = acc["sum"] / np.maximum(counts, 1)[:, None, None]
        out["max"] = acc["max"]
    if "median" in which:
        out["median"] = np.stack([virtual_diffraction(cube, method="median", region=labels == k,
                                                      **{"progress": False, **engine}) for k in range(n_classes)])
    return {k: v for k, v in out.items() if k in which}


def classify(cube: Any, params: ClassifyParams | None = None, *, peaks: PeakTable | None = None,
             **options: Any) -> Classification:
    """Classify every scan position: fit (or apply the record's trained model), class maps and patterns.

    Parameters
    ----------
    cube : DataCube
    params : ClassifyParams, optional
        With ``model`` set, the model is applied without refitting.
    peaks : PeakTable, optional
        For Bragg-vector features.
    **options
        Engine options and :class:`ClassifyParams` field overrides.

    Returns
    -------
    Classification
        Its ``params`` hold the trained model: ``fw.run`` of them gives the same labels.
    """
    engine, changes = split_engine(options)
    p = own_record(params, ClassifyParams, changes, "classify")
    feats = features_of(cube, p.features, peaks=peaks, **engine)
    return classify_features(cube, feats, p, **engine)


def classify_features(cube: Any, feats: Features, p: ClassifyParams, *, cache: dict | None = None,
                      **engine: Any) -> Classification:
    """:func:`classify` on features already computed (the tools reuse them, and ``cache``, while tuning)."""
    shape = feats.values.shape[:2]
    x = feature_matrix(feats, p.incremental)
    info: dict = {}
    # one BLAS thread: sums in one order whatever the machine (bit-equal replay), and no
    # spinning BLAS threads fighting the engine's workers on a busy machine
    with threadpool_limits(1):
        if p.model is None:
            model, info = fit_model(x, p, shape, cache)
            p = p.replace(model=model)
        # the coordinates once, for the labels and for split (the fit may have projected already)
        y = info.get("coordinates")
        y = project(p.model, x) if y is None else y
        labels, prob = labels_from_coordinates(p.model, y, p.probability)
    labels = labels.reshape(shape)
    pats = class_patterns(cube, labels, p.model.n_classes, p.patterns, **engine) if cube is not None else {}
    return Classification(labels, prob.reshape(*shape, -1), pats.get("mean"), pats.get("max"), pats.get("median"),
                          p, info.get("bic"), info.get("agreement"), y)


def _peaks_from(context: RunContext | None) -> PeakTable | None:
    for v in reversed(list((context.results if context else {}).values())):
        if isinstance(v, PeakTable):
            return v
    return None


def classify_step(cube: Any, params: ClassifyParams, context: RunContext) -> Classification:
    """Recipe adapter: Bragg-vector features read the newest peak table of the recipe."""
    return classify(cube, params, peaks=_peaks_from(context), **context.engine)


def decompose_step(cube: Any, params: DecomposeParams, context: RunContext) -> Decomposition:
    """Recipe adapter of :func:`decompose` (peak table from earlier steps, as :func:`classify_step`)."""
    return decompose(cube, params, peaks=_peaks_from(context), **context.engine)
