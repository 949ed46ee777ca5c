"""Probe templates for Bragg disk detection: the vacuum probe and the correlation kernels made from it.

A template starts from an image of the probe — the mean of a vacuum region of
the scan (patterns aligned to each other first), a separate vacuum recording,
or a synthetic disk whose radius is measured from the mean pattern — and turns
it into a correlation kernel centred at pixel (0, 0) (the corner, for FFT
correlation):

* ``'flat'``: the probe itself, normalised to unit sum;
* ``'gaussian'``: the probe minus a Gaussian of width ``sigma`` and the same
  integral (the kernel sums to zero, which suppresses the smooth background);
* ``'sigmoid'``: the probe minus an annular sine² trench between the radii
  ``(inner, outer)``, with the same integral (again zero sum).

These follow py4DSTEM's ``Probe.get_kernel`` modes ``'flat'``,
``'gaussian'`` and ``'sigmoid'`` [1]_.

Examples
--------
>>> import numpy as np
>>> img = synthetic_disk((32, 32), radius=5.0, center=(16, 16))
>>> t = probe_template(img, ProbeTemplateParams(source="vacuum_image", kernel="gaussian"))
>>> abs(t.radius - 5.0) < 0.1, t.kernel.shape, bool(abs(t.kernel.sum()) < 1e-9)
(True, (32, 32), True)
>>> image, r, profile = t.preview()
>>> image.shape, float(r[0]), profile.shape == r.shape
((32, 32), 0.0, True)

References
----------
.. [1] B. H. Savitzky et al., "py4DSTEM: A Software Package for Four-Dimensional
   Scanning Transmission Electron Microscopy Data Analysis", Microsc.
   Microanal. 27, 712-743 (2021).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Job
from ..engine.run import run_job
from .steps import own_record, renamed_keyword, split_engine

__all__ = [
    "ProbeTemplateParams",
    "ProbeTemplate",
    "probe_template",
    "measure_disk",
    "synthetic_disk",
    "vacuum_probe_from_region",
    "make_kernel",
    "fourier_shift",
    "mean_pattern",
    "MeanPatternJob",
]

#: A vacuum mean pattern may hold at most this fraction of its intensity outside
#: 1.5 disk radii (thin crystals put a few % into Bragg disks: 3.5 % for the
#: 2.7 nm Si test sets; a vacuum probe has < 0.1 %).
VACUUM_MAX_OUTSIDE = 0.01


@dataclass(frozen=True)
class ProbeTemplateParams(Params):
    """How to make the probe template (see :func:`probe_template`).

    py4DSTEM equivalents: ``get_vacuum_probe(ROI=region, align=align)``,
    ``Probe.from_vacuum_data``, ``Probe.generate_synthetic_probe(radius, width)``
    and ``Probe.get_kernel(mode, sigma=, radii=)``.
    """

    step = "probe_template"

    source: Literal["synthetic", "vacuum_region", "vacuum_image"] = param(
        "synthetic", doc="synthetic disk measured from the mean pattern, mean of a vacuum "
        "region of the scan, or a separate vacuum image")
    region: np.ndarray | None = param(None, doc="(Rx, Ry) bool mask of vacuum scan positions "
                                      "(source='vacuum_region')")
    image: np.ndarray | None = param(None, doc="(Qx, Qy) vacuum probe image (source='vacuum_image'); "
                                     "None: pass it to probe_template instead")
    align: bool = param(True, doc="align vacuum patterns by cross-correlation before averaging")
    radius: float | None = param(None, units="px", gt=0, doc="synthetic disk radius; None: measured "
                                 "from the mean pattern")
    edge_width: float = param(0.5, units="px", ge=0, doc="width of the synthetic disk's logistic edge")
    threshold: float = param(0.5, gt=0, lt=1, doc="fraction of the maximum that outlines the disk "
                             "when measuring its radius and centre")
    kernel: Literal["flat", "gaussian", "sigmoid"] = param("flat", doc="correlation kernel type")
    sigma: float | None = param(None, units="px", gt=0, doc="'gaussian' kernel width; None: the disk radius")
    radii: tuple[float, float] | None = param(None, units="px", doc="'sigmoid' trench (inner, outer) "
                                              "radii; None: (r, r + max(2, r/2))")

    def validate(self) -> None:
        if self.radii is not None and not 0 <= self.radii[0] < self.radii[1]:
            raise ParameterError(f"probe_template.radii: need 0 <= inner < outer, got {self.radii}",
                                 field="radii")
        if self.source == "vacuum_region" and self.region is not None:
            r = np.asarray(self.region)
            if r.ndim != 2 or r.dtype != bool:
                raise ParameterError("probe_template.region must be an (Rx, Ry) bool mask", field="region")
        if self.image is not None and np.asarray(self.image).ndim != 2:
            raise ParameterError("probe_template.image must be a 2-D (Qx, Qy) image", field="image")


def fourier_shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Shift an image by a sub-pixel amount, periodically, through its Fourier transform.

    Parameters
    ----------
    image : (H, W) array
    shift : (2,) float
        ``(dx, dy)``: ``out[i + dx, j + dy] = image[i, j]``.

    Returns
    -------
    (H, W) float64 array

    Examples
    --------
    >>> a = np.zeros((8, 8)); a[2, 3] = 1
    >>> np.unravel_index(int(np.argmax(fourier_shift(a, (1, -2)))), (8, 8))
    (np.int64(3), np.int64(1))
    """
    H, W = image.shape
    F = sfft.rfft2(np.asarray(image, dtype=np.float64))
    u = sfft.fftfreq(H)[:, None]
    v = sfft.rfftfreq(W)[None, :]
    F *= np.exp(-2j * np.pi * (u * shift[0] + v * shift[1]))
    return sfft.irfft2(F, s=(H, W))


def measure_disk(image: np.ndarray, threshold: float = 0.5) -> tuple[tuple[float, float], float]:
    """Centre and radius of the bright disk that holds the image's maximum.

    The image is thresholded at ``threshold`` times its maximum; the connected
    region holding the maximum gives the radius ``sqrt(area / pi)`` (the area
    counted with linear interpolation across the threshold, so it is sub-pixel)
    and the centre as the intensity centroid over that region dilated by
    ``max(4, r / 2)`` pixels.

    Parameters
    ----------
    image : (H, W) array
    threshold : float
        Fraction of the maximum, in (0, 1).

    Returns
    -------
    centre : (float, float)
        ``(qx, qy)`` in px.
    radius : float
        In px.

    Examples
    --------
    >>> (cx, cy), r = measure_disk(synthetic_disk((64, 64), 10.0, (30.25, 33.5)))
    >>> round(cx, 2), round(cy, 2), round(r, 1)
    (30.25, 33.5, 10.0)
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ShapeError(f"measure_disk needs a 2-D image, got shape {img.shape}")
    img = np.where(np.isfinite(img), img, 0.0)
    top = img.max()
    if not top > 0:
        raise ParameterError("the probe image is empty or all zero (its maximum is not positive); "
                             "pass an image of the probe in vacuum", field="image")
    level = threshold * top
    labels, _ = ndimage.label(img >= level)
    region = labels == labels[np.unravel_index(np.argmax(img), img.shape)]
    # sub-pixel area: sort the values of the region and its outer ring, and find
    # where the sorted sequence crosses the level by linear interpolation
    vals = np.sort(img[ndimage.binary_dilation(region)])[::-1]
    k = int(region.sum())
    if k < vals.size and vals[k - 1] > vals[k]:
        area = k - 0.5 + (vals[k - 1] - level) / (vals[k - 1] - vals[k])
    else:
        area = float(k)
    radius = math.sqrt(max(area, 1e-12) / math.pi)
    support = ndimage.binary_dilation(region, iterations=max(4, int(radius / 2)))
    w = np.where(support, img, 0.0)
    X, Y = np.indices(img.shape)
    total = w.sum()
    centre = (float((X * w).sum() / total), float((Y * w).sum() / total))
    return centre, float(radius)


def synthetic_disk(shape: tuple[int, int], radius: float, center: tuple[float, float] | None = None,
                   edge_width: float = 0.5, **deprecated: Any) -> np.ndarray:
    """A disk of unit height with a logistic edge (py4DSTEM's ``generate_synthetic_probe``).

    Parameters
    ----------
    shape : (H, W)
    radius : float
        Radius at half height, px.
    center : (float, float), optional
        Default: the detector center ``(H // 2, W // 2)`` (``centre=`` is the
        deprecated spelling).
    edge_width : float
        Logistic width, px (0: a hard edge with 4x4 supersampled anti-aliasing).

    Returns
    -------
    (H, W) float64 array
    """
    center = renamed_keyword(deprecated, "centre", "center", center, "synthetic_disk")
    H, W = shape
    cx, cy = center if center is not None else (H // 2, W // 2)
    if edge_width > 0:
        X, Y = np.indices(shape, dtype=np.float64)
        r = np.hypot(X - cx, Y - cy)
        return 1.0 / (1.0 + np.exp(np.clip((r - radius) / edge_width, -50, 50)))
    s = 4
    X, Y = np.indices((H * s, W * s), dtype=np.float64)
    inside = np.hypot((X + 0.5) / s - 0.5 - cx, (Y + 0.5) / s - 0.5 - cy) <= radius
    return inside.reshape(H, s, W, s).mean(axis=(1, 3))


def _check_image(image: Any, what: str) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=0)
    if img.ndim != 2:
        raise ShapeError(f"{what} must be a 2-D (Qx, Qy) image or a stack of them, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ParameterError(f"{what} contains NaN or infinite values", field="image")
    if not np.any(img != 0):
        raise ParameterError(f"{what} is all zero; pass an image of the probe in vacuum", field="image")
    return img


def _align_to(ref_spec: np.ndarray, img: np.ndarray) -> np.ndarray:
    """Shift ``img`` onto the reference (given by its conj rfft2) by cross-correlation."""
    H, W = img.shape
    cc = sfft.irfft2(sfft.rfft2(img) * ref_spec, s=(H, W))
    i, j = np.unravel_index(int(np.argmax(cc)), cc.shape)
    d = []
    for axis, k in ((0, i), (1, j)):
        n = cc.shape[axis]
        a = cc[(k - 1) % n, j] if axis == 0 else cc[i, (k - 1) % n]
        c = cc[(k + 1) % n, j] if axis == 0 else cc[i, (k + 1) % n]
        b = cc[i, j]
        den = a - 2 * b + c
        off = 0.5 * (a - c) / den if den < 0 else 0.0
        s = k + off
        d.append(s - n if s > n / 2 else s)
    return fourier_shift(img, (-d[0], -d[1]))


class MeanPatternJob(Job):
    """Mean pattern (float64) over the scan positions a mask selects; non-finite pixels are left
    out pixel by pixel. Sums in chunk order, as ``DataCube.mean_pattern(ignore_nan=True)``, so
    both give the same bits for the same chunking."""

    name = "mean pattern"

    def __init__(self, mask: np.ndarray | None) -> None:
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)

    def init(self, cube: Any) -> list:
        return [np.zeros(tuple(cube.detector_shape), np.float64), 0]

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> tuple | None:
        data = block.reshape(-1, *block.shape[2:])
        if self.mask is not None:
            sel = self.mask[rx, ry].ravel()
            if not sel.any():
                return None
            data = data[sel]
        if data.dtype.kind in "fc":
            finite = np.isfinite(data)
            return np.where(finite, data, 0).sum(axis=0, dtype=np.float64), finite.sum(axis=0)
        return data.sum(axis=0, dtype=np.float64), data.shape[0]

    def merge(self, acc: list, partial: tuple | None, rx: slice, ry: slice) -> list:
        if partial is not None:
            acc[0] += partial[0]
            acc[1] = acc[1] + partial[1]
        return acc

    def finalize(self, acc: list) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return acc[0] / acc[1]


def mean_pattern(cube: Any, region: np.ndarray | None = None, **engine: Any) -> np.ndarray:
    """Mean pattern of a cube (or of the positions ``region`` selects) through the engine.

    Non-finite pixels are left out pixel by pixel; ``engine`` takes the options of
    :func:`fourd_widgets.engine.run_job` (``progress``, ``cancel``, ``on_partial``,
    ``workers``, ``scheduler``, ``chunk_bytes``).

    >>> from fourd_widgets.core import DataCube
    >>> mean_pattern(DataCube(np.ones((2, 3, 4, 4))), progress=False)[0, 0]
    np.float64(1.0)
    """
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != tuple(cube.scan_shape):
            raise ShapeError(f"region has shape {region.shape}; it must match the scan shape {cube.scan_shape}")
        if not region.any():
            raise ShapeError("the real-space region selects no scan positions")
    engine.setdefault("progress", False)
    return run_job(cube, MeanPatternJob(region), **engine)


class _AlignedSumJob(Job):
    """Sum of the selected patterns, each shifted onto a reference spectrum (vacuum probe)."""

    name = "aligned probe"

    def __init__(self, mask: np.ndarray, ref: np.ndarray) -> None:
        self.mask, self.ref = mask, ref

    def init(self, cube: Any) -> np.ndarray:
        return np.zeros(tuple(cube.detector_shape), np.float64)

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> list:
        sub = self.mask[rx, ry]
        out = []
        for i, j in zip(*np.nonzero(sub)):
            img = np.asarray(block[i, j], dtype=np.float64)
            out.append(_align_to(self.ref, np.where(np.isfinite(img), img, 0.0)))
        return out

    def merge(self, acc: np.ndarray, partial: list, rx: slice, ry: slice) -> np.ndarray:
        for img in partial:  # one at a time, in scan order: the same sum whatever ran process
            acc += img
        return acc


def vacuum_probe_from_region(cube: Any, region: np.ndarray, align: bool = True, **engine: Any) -> np.ndarray:
    """Mean pattern of the vacuum scan positions in ``region``, optionally aligned first.

    Parameters
    ----------
    cube : DataCube
    region : (Rx, Ry) bool array
        The vacuum positions.
    align : bool
        Cross-correlate each pattern with the plain mean and shift it onto it
        (sub-pixel, Fourier shift) before averaging.
    **engine
        Options of :func:`fourd_widgets.engine.run_job` for the passes over the cube.

    Returns
    -------
    (Qx, Qy) float64 array

    Raises
    ------
    ShapeError
        ``region`` does not match the scan shape.
    ParameterError
        The region is empty, or its mean pattern is not a vacuum probe (more than
        1 % of the intensity lies outside 1.5 disk radii).
    """
    mask = np.asarray(region)
    if mask.shape != tuple(cube.scan_shape):
        raise ShapeError(f"vacuum region has shape {mask.shape}; it must match the scan shape {cube.scan_shape}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ParameterError("the vacuum region is empty: select at least one scan position in vacuum",
                             field="region")
    mean = _check_image(mean_pattern(cube, mask, **engine), "the mean pattern of the vacuum region")
    (cx, cy), r = measure_disk(mean)
    X, Y = np.indices(mean.shape)
    outside = mean[np.hypot(X - cx, Y - cy) > 1.5 * r + 1].sum() / mean.sum()
    if outside > VACUUM_MAX_OUTSIDE:
        raise ParameterError(
            f"the vacuum region does not look like vacuum: {100 * outside:.1f} % of its mean intensity lies "
            f"outside the central disk (radius {r:.1f} px), more than {100 * VACUUM_MAX_OUTSIDE:.0f} %; "
            "choose scan positions where the beam passes through vacuum", field="region")
    if not align or mask.sum() == 1:
        return mean
    engine.setdefault("progress", False)
    acc = run_job(cube, _AlignedSumJob(mask, np.conj(sfft.rfft2(mean))), **engine)
    return acc / mask.sum()


def make_kernel(probe: np.ndarray, kind: str = "flat", center: tuple[float, float] | None = None,
                radius: float | None = None, sigma: float | None = None,
                radii: tuple[float, float] | None = None, **deprecated: Any) -> np.ndarray:
    """Correlation kernel from a probe image, centred at pixel (0, 0).

    Parameters
    ----------
    probe : (H, W) array
        Probe image.
    kind : {'flat', 'gaussian', 'sigmoid'}
    center : (float, float), optional
        Probe center (default: measured by :func:`measure_disk`; ``centre=`` is
        the deprecated spelling).
    radius : float, optional
        Disk radius for the defaults of ``sigma`` and ``radii`` (default: measured).
    sigma : float, optional
        Gaussian width for ``'gaussian'`` (default: ``radius``).
    radii : (float, float), optional
        Trench radii for ``'sigmoid'`` (default ``(r, r + max(2, r / 2))``).

    Returns
    -------
    (H, W) float64 array
        ``'flat'`` sums to one; ``'gaussian'`` and ``'sigmoid'`` to zero.
    """
    img = _check_image(probe, "the probe image")
    centre = renamed_keyword(deprecated, "centre", "center", center, "make_kernel")
    if centre is None or radius is None:
        c, r = measure_disk(img)
        centre = c if centre is None else centre
        radius = r if radius is None else radius
    k = fourier_shift(img, (-centre[0], -centre[1]))
    k /= k.sum()
    if kind == "flat":
        return k
    H, W = img.shape
    u = np.minimum(np.arange(H), H - np.arange(H)).astype(np.float64)[:, None]
    v = np.minimum(np.arange(W), W - np.arange(W)).astype(np.float64)[None, :]
    rr = np.hypot(u, v)
    if kind == "gaussian":
        s = float(sigma if sigma is not None else radius)
        g = np.exp(-0.5 * (rr / s) ** 2)
        return k - g / g.sum()
    if kind == "sigmoid":
        ri, ro = radii if radii is not None else (radius, radius + max(2.0, radius / 2))
        t = np.where((rr > ri) & (rr < ro), np.sin(np.pi * (rr - ri) / (ro - ri)) ** 2, 0.0)
        if not t.sum() > 0:
            raise ParameterError(f"sigmoid trench radii {ri}, {ro} hold no detector pixel", field="radii")
        return k - t / t.sum()
    raise ParameterError(f"unknown kernel {kind!r}; choose 'flat', 'gaussian' or 'sigmoid'", field="kernel")


class ProbeTemplate:
    """A probe image and the correlation kernel made from it.

    Attributes
    ----------
    probe : (Qx, Qy) float64 array
        The probe image as recorded (or synthesised), not shifted.
    center : (float, float)
        Its measured center, px (``centre``: the deprecated spelling).
    radius : float
        Its measured disk radius, px.
    kernel : (Qx, Qy) float64 array
        The correlation kernel, centred at pixel (0, 0).
    kind : str
        Kernel type.
    recorded : (Qx, Qy) float64 array
        The central disk as recorded: the vacuum image, or for a synthetic template the mean
        pattern it was measured from (what ``FindDisksParams.probe_fit`` fits each disk with).
    recorded_center : (float, float)
        Its disk's centre, px.
    """

    def __init__(self, probe: np.ndarray, kernel: np.ndarray, center: tuple[float, float], radius: float,
                 kind: str = "flat", recorded: np.ndarray | None = None,
                 recorded_center: tuple[float, float] | None = None) -> None:
        self.probe = np.asarray(probe, dtype=np.float64)
        self.kernel = np.asarray(kernel, dtype=np.float64)
        self.center = (float(center[0]), float(center[1]))
        self.radius = float(radius)
        self.kind = kind
        self.recorded = self.probe if recorded is None else np.asarray(recorded, dtype=np.float64)
        rc = self.center if recorded_center is None else recorded_center
        self.recorded_center = (float(rc[0]), float(rc[1]))
        self._spec: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.kernel.shape  # type: ignore[return-value]

    def spectrum(self) -> np.ndarray:
        """``conj(rfft2(kernel))`` as complex64, computed once and cached."""
        if self._spec is None:
            self._spec = np.conj(sfft.rfft2(self.kernel)).astype(np.complex64)
        return self._spec

    def preview(self, nbins: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Kernel image centred on the detector, and its azimuthally averaged radial profile.

        Returns
        -------
        image : (Qx, Qy) float64 array
            ``fftshift(kernel)``: the kernel's (0, 0) at the detector centre.
        r : (n,) float64 array
            Radii 0, 1, 2... px.
        profile : (n,) float64 array
            Mean kernel value in each 1-px ring.
        """
        img = np.fft.fftshift(self.kernel)
        H, W = img.shape
        X, Y = np.indices(img.shape)
        rb = np.rint(np.hypot(X - H // 2, Y - W // 2)).astype(np.int64)
        n = int(nbins or min(H, W) // 2)
        sel = rb < n
        s = np.bincount(rb[sel], weights=img[sel], minlength=n)
        c = np.bincount(rb[sel], minlength=n)
        return img, np.arange(n, dtype=np.float64), s / np.maximum(c, 1)

    @property
    def centre(self) -> tuple[float, float]:
        """Deprecated spelling of :attr:`center` (kept for one release)."""
        warnings.warn("ProbeTemplate.centre is deprecated, use .center", DeprecationWarning, stacklevel=2)
        return self.center

    def to_h5(self, group: Any) -> None:
        """Write the template into an HDF5 group (results files)."""
        group.create_dataset("probe", data=self.probe)
        group.create_dataset("kernel", data=self.kernel)
        group.attrs["center"] = np.asarray(self.center, dtype=np.float64)
        group.attrs["radius"] = self.radius
        group.attrs["kind"] = self.kind
        if self.recorded is not self.probe:
            group.create_dataset("recorded", data=self.recorded, compression="gzip")
        group.attrs["recorded_center"] = np.asarray(self.recorded_center, dtype=np.float64)

    @classmethod
    def from_h5(cls, group: Any) -> "ProbeTemplate":
        """Read a template written by :meth:`to_h5`."""
        c = group.attrs["center"]
        # files written before the recorded disk was kept: the probe stands for it
        rc = group.attrs.get("recorded_center", c)
        return cls(group["probe"][()], group["kernel"][()], (float(c[0]), float(c[1])),
                   float(group.attrs["radius"]), str(group.attrs["kind"]),
                   group["recorded"][()] if "recorded" in group else None, (float(rc[0]), float(rc[1])))

    def __reduce__(self) -> tuple:
        return (ProbeTemplate, (self.probe, self.kernel, self.center, self.radius, self.kind, self.recorded,
                                self.recorded_center))

    def __repr__(self) -> str:
        return (f"ProbeTemplate(kind={self.kind!r}, shape={self.shape}, radius={self.radius:.2f}, "
                f"center=({self.center[0]:.2f}, {self.center[1]:.2f}))")


def _cube_mean(cube: Any, engine: dict) -> np.ndarray:
    """The mean pattern of a cube through the engine (anything else: its own ``mean_pattern``)."""
    if hasattr(cube, "chunk_slices") and hasattr(cube, "read"):
        return mean_pattern(cube, **engine)
    return cube.mean_pattern(ignore_nan=True)


def probe_template(source: Any, params: ProbeTemplateParams | None = None, **options: Any) -> ProbeTemplate:
    """Make a probe template.

    Parameters
    ----------
    source : DataCube or array
        A cube (for ``'synthetic'`` and ``'vacuum_region'``, and for
        ``'vacuum_image'`` when ``params.image`` is set), or the vacuum image
        itself: a 2-D ``(Qx, Qy)`` array, a stack ``(n, Qx, Qy)`` (averaged) or
        a vacuum cube (its mean pattern).
    params : ProbeTemplateParams, optional
        Default ``ProbeTemplateParams()``, or ``source='vacuum_image'`` when
        ``source`` is an array.
    **options
        Engine options of :func:`fourd_widgets.engine.run_job` for the pass over
        the cube (``progress``, ``cancel``, ``on_partial``, ``workers``,
        ``scheduler``, ``chunk_bytes``), and record field overrides, e.g.
        ``kernel='gaussian'``.

    Returns
    -------
    ProbeTemplate

    Raises
    ------
    ParameterError
        Empty or all-zero probe, empty or non-vacuum region, missing image.
    ShapeError
        Region or image shapes that do not fit.
    """
    is_array = isinstance(source, np.ndarray)
    engine, changes = split_engine(options)
    if params is None and is_array:
        params = ProbeTemplateParams(source="vacuum_image")
    p = own_record(params, ProbeTemplateParams, changes, "probe_template")
    det_shape = source.shape[-2:] if is_array else tuple(source.detector_shape)
    recorded = recorded_centre = None   # a vacuum probe is its own recorded disk
    if p.source == "vacuum_image":
        if p.image is not None:
            probe = _check_image(p.image, "probe_template.image")
        elif is_array:
            probe = _check_image(source, "the vacuum image")
        elif hasattr(source, "mean_pattern"):
            probe = _check_image(_cube_mean(source, engine), "the mean pattern of the vacuum recording")
        else:
            raise ParameterError("source='vacuum_image' needs the image (params.image or an array)", field="image")
        if probe.shape != tuple(det_shape):
            raise ShapeError(f"the vacuum image has shape {probe.shape}; the detector is {tuple(det_shape)}")
    elif p.source == "vacuum_region":
        if is_array:
            raise ParameterError("source='vacuum_region' needs a DataCube, not an array", field="source")
        if p.region is None:
            raise ParameterError("source='vacuum_region' needs the region mask (probe_template.region)",
                                 field="region")
        probe = vacuum_probe_from_region(source, np.asarray(p.region), align=p.align, **engine)
    else:
        mean = _check_image(source if is_array else _cube_mean(source, engine), "the mean pattern")
        mean_centre, mean_radius = measure_disk(mean, p.threshold)
        radius = p.radius if p.radius is not None else mean_radius
        H, W = mean.shape
        centre = (float(H // 2), float(W // 2))
        probe = synthetic_disk(mean.shape, radius, centre, p.edge_width)
        recorded, recorded_centre = mean, mean_centre
    if p.source != "synthetic":
        centre, radius = measure_disk(probe, p.threshold)
    kernel = make_kernel(probe, p.kernel, centre, radius, p.sigma, p.radii)
    return ProbeTemplate(probe, kernel, centre, radius, p.kernel, recorded, recorded_centre)
