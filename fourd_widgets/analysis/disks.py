"""Bragg disk detection: template correlation, peak filters, sub-pixel refinement, peak tables, Bragg vector maps.

Each pattern is correlated with a probe template (:mod:`.probe`) in Fourier
space: ``S = P . conj(T)``, with the magnitude raised to ``corr_power``
(``|S|^p e^{i arg S}``: 1 = cross-correlation, 0 = phase correlation, in
between the hybrid correlation of py4DSTEM [2]_). Gaussian smoothing of the
pattern (``sigma_dp``) and of the correlation (``sigma_cc``) are applied as
Fourier filters (periodic boundaries). The local maxima of the correlation are
filtered (edge, absolute value, spacing, value relative to the n-th strongest,
maximum number) and refined to sub-pixel precision by a parabola fit, by
the locally DFT-upsampled correlation of Guizar-Sicairos et al. [1]_
(``'dft'``), or — the default, ``'disk'`` — by correlating each disk on its own
with the probe in a small masked window, with a hybrid power of its own
(:mod:`.disk_refine`). The whole-pattern correlation follows the intensity
inside each disk, which dynamical diffraction makes non-uniform (0.13-0.17 px
bias towards the zero beam on the shared abTEM Si sets); the per-disk hybrid
correlation follows the disk edge (0.014-0.018 px median there). Then, by
default (``probe_fit``), each disk is fitted by least squares with the recorded
central disk moved by a sinc shift and scaled by a linear intensity ramp
(:mod:`.disk_probe_fit`): the correlation's remaining error depends on each
disk's place on the pixel grid, the fit's does not (the fitted lattice moves
from 0.015-0.027 % to 0.005-0.019 % of the truth there); a disk the recorded
disk does not describe (overlapping grains, few counts per pixel) keeps the
correlation's estimate. With
``'edge'`` each disk is then moved to the centre of symmetry of its
gradient magnitude (:func:`~fourd_widgets.analysis.disk_refine.refine_disk_edges`):
a closer lattice than the correlation alone (0.013-0.018 % from the truth), but more pull from strong
intensity ramps and noise, so it is opt-in.
Small spots (a probe radius below 4 px: precession, small condenser apertures)
have no edge to follow; the default ``'auto'`` refines them by their
background-subtracted centroid instead (``'spot'``,
:func:`~fourd_widgets.analysis.disk_refine.refine_spots`): on the real NanoMegas
SPED blockfile (~2 px spots) 'disk' lands a median 1.25 px from the spots'
centroids, 'spot' on them; on simulated 1.5-3 px spots with known centres, see
``tests/analysis/test_disks_spots.py``.

The template spectrum is computed once; patterns go through ``scipy.fft`` in
batches and peak finding runs in numba (:mod:`fourd_widgets.kernels.disks`).

py4DSTEM parameter names (``find_Bragg_disks``) and ours:

==========================  ==========================  ==========================
py4DSTEM                    fourd_widgets               default here (py4DSTEM)
==========================  ==========================  ==========================
``corrPower``               ``corr_power``              1.0 (1)
``sigma_dp``                ``sigma_dp``                0 (0)
``sigma_cc`` / ``sigma``    ``sigma_cc``                2 (2)
``subpixel``                ``subpixel``                'auto' ('multicorr'):
                                                        'disk', or 'spot' below
                                                        a 4 px probe radius;
                                                        'multicorr' -> 'dft',
                                                        'poly' -> 'parabola',
                                                        'pixel' -> 'none'
``upsample_factor``         ``upsample_factor``         16 (16)
(none)                      ``probe_fit``               True: 'disk' ends with
                                                        the probe fit
``minAbsoluteIntensity``    ``min_absolute_intensity``  0 (0)
``minRelativeIntensity``    ``min_relative_intensity``  0.02 (0.005)
``relativeToPeak``          ``relative_to_peak``        1 (0)
``minPeakSpacing``          ``min_peak_spacing``        None = disk radius (60)
``edgeBoundary``            ``edge_boundary``           None = disk radius (20)
``maxNumPeaks``             ``max_num_peaks``           70 (70)
``radial_bksb``             ``radial_background``       False (False)
==========================  ==========================  ==========================

The relative threshold refers to the second strongest peak by default: in
thin samples the zero beam holds over 90 % of the intensity (96 % in the
shared Si test sets), so py4DSTEM's default (0.5 % of the zero beam) drops
the (400) and (440) disks there. The two distance defaults follow the probe: a disk whose centre is closer to
the edge than its radius is cut by the detector edge (its correlation peak is
biased), and two disks closer than one radius overlap by more than half.

At low dose, ``lattice=DiskLatticeParams()`` reports every found disk at its site of
the pattern's fitted lattice and drops the disks far from every site
(:mod:`.disk_lattice`; single crystals, one lattice per pattern): at 2000 e/probe on
the shared Si sets the median error falls from 0.56-0.71 px to 0.19-0.24 px, and no
disk is left more than 2 px from the truth.

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.analysis.probe import synthetic_disk, probe_template
>>> pats = np.stack([synthetic_disk((64, 64), 4.0, (20.3, 30.6)) + synthetic_disk((64, 64), 4.0, (40, 25.2))])
>>> t = probe_template(synthetic_disk((64, 64), 4.0))
>>> peaks = find_disks_in_patterns(pats, t)
>>> sorted(zip(np.round(peaks.at(0)["qx"], 1).tolist(), np.round(peaks.at(0)["qy"], 1).tolist()))
[(20.3, 30.6), (40.0, 25.2)]

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel
   image registration algorithms", Opt. Lett. 33, 156-158 (2008).
.. [2] B. H. Savitzky et al., "py4DSTEM: A Software Package for Four-Dimensional
   Scanning Transmission Electron Microscopy Data Analysis", Microsc.
   Microanal. 27, 712-743 (2021).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
import scipy.fft as sfft

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.run import run_job
from ..kernels import disks as K
from .disk_lattice import DiskLatticeParams, snap_to_lattice
from .disk_probe_fit import fit_disks_to_probe
from .disk_refine import EDGE_SIGMA, REACH, refine_disk_edges, refine_disks, refine_spots, refinement_for
from .fourier_filters import band, gauss_filter
from .peaks import FLAG_INVALID, FLAG_LATTICE, PeakTable, bragg_vector_map, origin_per_peak
from .probe import ProbeTemplate, ProbeTemplateParams, measure_disk, probe_template
from .steps import own_record, split_engine

__all__ = [
    "FindDisksParams",
    "DiskLatticeParams",
    "PeakTable",
    "origin_per_peak",
    "DiskCorrelation",
    "Candidates",
    "find_disks",
    "find_disks_in_patterns",
    "candidate_peaks",
    "correlate_patterns",
    "bragg_vector_map",
    "NoPeaksWarning",
    "NoLatticeWarning",
    "LATTICE_ROWS",
    "lattice_rows",
    "FLAG_INVALID",
    "FLAG_LATTICE",
    "correlation_step",
    "resolve_subpixel",
    "DECIMATION_GAIN",
]



#: The refinements that re-examine each found peak in its own window (after the whole-pattern correlation).
REFINED = ("disk", "edge", "spot")
#: Those that correlate each disk again at full resolution: the whole-pattern correlation may be
#: sampled every other pixel for them (correlation_step).
COARSE_GRID_REFINED = ("disk", "edge")


class NoPeaksWarning(UserWarning):
    """The thresholds rejected every peak of every pattern."""


@dataclass(frozen=True)
class FindDisksParams(Params):
    """Parameters of Bragg disk detection (``fw.find_disks``); py4DSTEM names in brackets."""

    step = "find_disks"
    schema_version = 2
    # schema 2 added probe_fit (on); a record made before it replays as it was made
    migrations = {1: lambda d: {**d, "probe_fit": False}}

    template: ProbeTemplateParams = param(ProbeTemplateParams(), doc="how the probe template is made")
    corr_power: float = param(1.0, ge=0, le=1, doc="hybrid correlation power [corrPower]: 1 cross, 0 phase")
    sigma_dp: float = param(0.0, units="px", ge=0, doc="Gaussian smoothing of each pattern [sigma_dp]")
    sigma_cc: float = param(2.0, units="px", ge=0, doc="Gaussian smoothing of the correlation [sigma_cc]")
    subpixel: Literal["auto", "none", "parabola", "dft", "disk", "edge", "spot"] = param(
        "auto", doc="sub-pixel refinement [subpixel: 'pixel', 'poly', 'multicorr']; 'disk': each disk "
        "correlated on its own with the probe, then DFT-upsampled (see disk_refine); 'edge': 'disk', then "
        "each disk moved to the centre of symmetry of its gradient magnitude (disk_refine.refine_disk_edges: a "
        "closer lattice on the shared abTEM Si files, more pull from intensity ramps and noise); 'spot': the "
        "background-subtracted centroid of each small spot; 'auto': 'spot' below a probe radius of "
        "SPOT_RADIUS_PX (4 px), else 'disk'")
    upsample_factor: int = param(16, ge=1, le=1024, doc="DFT upsampling factor [upsample_factor]")
    disk_corr_power: float = param(0.3, ge=0, le=1, doc="subpixel='disk' (and 'edge'): hybrid power of each "
                                   "disk's correlation (0 phase: follows the disk edge, 1 cross: its intensity)")
    disk_sigma: float = param(0.7, units="px", ge=0, doc="subpixel='disk': Gaussian smoothing of each "
                              "disk's correlation")
    disk_window: float = param(1.25, gt=1.2, le=4, doc="subpixel='disk': window radius in disk radii "
                               "(keep it below the distance to the nearest disk edge)")
    probe_fit: bool = param(True, doc="subpixel='disk': finish each disk with a least-squares fit of the "
                            "recorded central disk (the mean pattern's, or the vacuum image), sinc-shifted, times a "
                            "linear intensity ramp (disk_probe_fit): free of the pixel-grid bias of a template "
                            "correlation; False: the window correlation's estimate (before schema 2)")
    min_absolute_intensity: float = param(0.0, ge=0, doc="minimum correlation peak value "
                                          "[minAbsoluteIntensity]")
    min_relative_intensity: float = param(0.02, ge=0, le=1, doc="minimum value relative to the "
                                          "relative_to_peak-th strongest peak [minRelativeIntensity]")
    relative_to_peak: int = param(1, ge=0, doc="which peak min_relative_intensity refers to, 0 = the "
                                  "strongest (usually the zero beam), 1 = the next [relativeToPeak]")
    min_peak_spacing: float | None = param(None, units="px", ge=0, doc="minimum distance between peaks; "
                                           "None: the template's disk radius [minPeakSpacing]")
    edge_boundary: float | None = param(None, units="px", ge=0, doc="minimum distance of a peak from the "
                                        "detector edge; None: the disk radius [edgeBoundary]")
    max_num_peaks: int = param(70, ge=1, doc="keep at most this many peaks per pattern [maxNumPeaks]")
    log: bool = param(False, doc="correlate log(1 + I / mean(I)) instead of I (weak disks count more)")
    radial_background: bool = param(False, doc="subtract the median of each ring around the origin "
                                    "first [radial_bksb]; needs the origin")
    lattice: DiskLatticeParams | None = param(None, doc="report each disk at its site of the pattern's fitted "
                                              "lattice and drop disks far from every site (noisy data); "
                                              "None: free estimates")


# --- correlation -----------------------------------------------------------------------
def _preprocess(patterns: np.ndarray, params: FindDisksParams, origins: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Float32 copy with non-finite patterns zeroed; returns (patterns, valid)."""
    if not patterns.dtype.isnative:  # numba reads native byte order only
        patterns = patterns.astype(patterns.dtype.newbyteorder("="))
    if patterns.dtype.kind == "b":
        patterns = patterns.view(np.uint8)
    elif patterns.dtype.kind not in "uif":
        raise ShapeError(f"disk detection needs real-valued patterns, got {patterns.dtype}")
    x = np.empty(patterns.shape, dtype=np.float32)
    valid = np.empty(patterns.shape[0], dtype=np.bool_)
    K.copy_finite(patterns, x, valid)
    if params.radial_background:
        if origins is None:
            raise ParameterError("radial_background needs the beam origin: set cube.calibration origin "
                                 "(or origin_map), or pass origins=", field="radial_background")
        out = np.empty_like(x)
        K.radial_median_subtract(x, np.ascontiguousarray(origins[:, 0], dtype=np.float64),
                                 np.ascontiguousarray(origins[:, 1], dtype=np.float64), out)
        x = out
    if params.log:
        m = x.mean(axis=(1, 2), keepdims=True)
        np.log1p(np.maximum(x, 0) / np.where(m > 0, m, 1), out=x)
    return x, valid


class DiskCorrelation:
    """Correlation maps of a few patterns, kept so that filters can be re-run cheaply.

    Made by :func:`correlate_patterns`. :meth:`detect` applies the filters and
    refinement of a :class:`FindDisksParams` (only its threshold, spacing,
    edge and refinement fields are read), :meth:`candidates` lists every
    local maximum. Both reuse the maps: a slider on a threshold costs no FFT.

    Attributes
    ----------
    corr : (N, H, W) float32 array
        Correlation maps (negative values are never maxima).
    spec_re, spec_im : (N, H, W//2 + 1) float32 arrays
        Their half spectra (made on first use; absent with keep_spectrum=False).
    patterns : (N, H, W) float32 array
        The (preprocessed) patterns.
    valid : (N,) bool array
        False where a pattern held NaN or infinite values.
    radius : float
        Template disk radius, px.
    step : int
        Sampling of ``corr``: 1 = every pattern pixel; 2 = every other pixel (see
        :func:`correlation_step`), so ``corr[:, i, j]`` is the correlation at pixel
        ``(2 i, 2 j)``. Peak positions are always reported in pattern pixels.
    """

    def __init__(self, corr: np.ndarray, spec: np.ndarray | None, patterns: np.ndarray, valid: np.ndarray,
                 radius: float, band: int, scan_shape: tuple[int, ...], template: ProbeTemplate | None = None,
                 workers: int = -1, step: int = 1) -> None:
        self.step = int(step)
        self.template = template
        self.workers = workers
        self.corr = corr
        self._spec = spec
        self._re_im: tuple[np.ndarray, np.ndarray] | None = None
        self.patterns = patterns
        self.valid = valid
        self.radius = float(radius)
        self.band = int(band)
        self.scan_shape = tuple(scan_shape)

    @property
    def spec_re(self) -> np.ndarray:
        return self._split()[0]

    @property
    def spec_im(self) -> np.ndarray:
        return self._split()[1]

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        """Real and imaginary parts of the spectra, made when first needed (``subpixel='dft'``)."""
        if self._spec is None:
            raise ParameterError("subpixel='dft' needs the correlation spectra: correlate with "
                                 "keep_spectrum=True", field="subpixel")
        if self._re_im is None:
            self._re_im = (np.ascontiguousarray(self._spec.real), np.ascontiguousarray(self._spec.imag))
        return self._re_im

    def _edge_spacing(self, params: FindDisksParams) -> tuple[float, float]:
        """Edge and spacing filters in units of the ``corr`` grid."""
        if self.step > 1 and params.subpixel not in COARSE_GRID_REFINED:
            raise ParameterError(f"this correlation is sampled every {self.step} px, which only "
                                 f"subpixel='disk' or 'edge' refines; correlate again for "
                                 f"subpixel={params.subpixel!r}",
                                 field="subpixel")
        edge = self._edge(params)
        spacing = params.min_peak_spacing if params.min_peak_spacing is not None else self.radius
        # the coarse maximum of a disk just inside the edge limit can lie up to a grid step past
        # it: keep such points here; the refined centre meets the exact limit in _refine
        return max(0.0, edge - self.step if self.step > 1 else edge) / self.step, float(spacing) / self.step

    def _edge(self, params: FindDisksParams) -> float:
        return float(params.edge_boundary if params.edge_boundary is not None else self.radius)

    def refinement(self, params: FindDisksParams | None = None) -> str:
        """The sub-pixel refinement :meth:`detect` uses (``'auto'`` resolved by the template radius)."""
        return resolve_subpixel(params or FindDisksParams(), self.radius).subpixel

    def detect(self, params: FindDisksParams | None = None) -> PeakTable:
        """Filtered, refined peaks of every pattern, as a :class:`PeakTable`."""
        p = resolve_subpixel(params or FindDisksParams(), self.radius)
        edge, spacing = self._edge_spacing(p)
        N = self.corr.shape[0]
        m = p.max_num_peaks
        counts = np.zeros(N, np.int64)
        cols = [np.zeros(N * m) for _ in range(4)]
        mode = {"none": K.MODE_NONE, "parabola": K.MODE_PARABOLA, "dft": K.MODE_DFT,
                "disk": K.MODE_PARABOLA, "edge": K.MODE_PARABOLA, "spot": K.MODE_PARABOLA}[p.subpixel]
        re, im = self._split() if p.subpixel == "dft" else (self.corr[:, :1, :1], self.corr[:, :1, :1])
        K.detect_batch(self.corr, re, im, self.band, self.patterns, self.valid, edge,
                       p.min_absolute_intensity, spacing, p.min_relative_intensity, p.relative_to_peak, m,
                       mode, p.upsample_factor, 0.0 if p.subpixel in REFINED else self.radius, counts,
                       *cols)
        if self.step > 1:
            cols[0] *= self.step
            cols[1] *= self.step
        table = _pack(self.scan_shape, counts, cols, m, self.valid)
        return self._refine(table, p) if p.subpixel in REFINED else table

    def _refine(self, table: PeakTable, p: FindDisksParams) -> PeakTable:
        """Per-disk (``'disk'``, ``'edge'``) or per-spot (``'spot'``) refinement; drops peaks whose window holds
        no maximum."""
        pidx = table.positions()
        if p.subpixel == "spot":
            qx, qy, _ = refine_spots(self.patterns, pidx, table.qx, table.qy, self.radius)
        else:
            if self.template is None:
                raise ParameterError("subpixel='disk' needs the probe template: make the correlation with "
                                     "correlate_patterns()", field="subpixel")
            qx, qy, _ = refine_disks(self.patterns, pidx, table.qx, table.qy, self.template, p.disk_corr_power,
                                     p.disk_sigma, p.disk_window, p.upsample_factor, self.workers)
            if p.subpixel == "disk" and p.probe_fit and not p.log:  # NaN starts stay NaN
                t = self.template
                qx, qy, _ = fit_disks_to_probe(self.patterns, pidx, qx, qy, t.recorded, t.recorded_center,
                                               self.radius)
            if p.subpixel == "edge":
                found = np.flatnonzero(np.isfinite(qx) & np.isfinite(qy))
                qx[found], qy[found], _ = refine_disk_edges(self.patterns, pidx[found], qx[found], qy[found],
                                                            self.radius, EDGE_SIGMA, p.disk_window,
                                                            p.upsample_factor, workers=self.workers)
        # a window whose correlation climbs away from its disk (or has none) holds no disk of its own
        ok = np.isfinite(qx) & (np.abs(qx - table.qx) <= REACH + 0.5) & (np.abs(qy - table.qy) <= REACH + 0.5)
        if p.subpixel == "spot":  # a faint spot whose centroid wanders off in the noise keeps its correlation peak
            qx, qy = np.where(ok, qx, table.qx), np.where(ok, qy, table.qy)
            ok = np.isfinite(qx) & np.isfinite(qy)
        if self.step > 1:
            edge = self._edge(p)
            H, W = self.patterns.shape[-2:]
            with np.errstate(invalid="ignore"):
                ok &= (qx >= edge) & (qx <= H - 1 - edge) & (qy >= edge) & (qy <= W - 1 - edge)
        counts = np.bincount(pidx[ok], minlength=len(table.offsets) - 1)
        qx, qy, pidx = qx[ok], qy[ok], pidx[ok]
        inten = np.empty(len(qx))
        K.disk_sums_at(self.patterns, pidx, qx, qy, self.radius, inten)
        return PeakTable(self.scan_shape, np.concatenate([[0], np.cumsum(counts)]), qx, qy, inten,
                         table.correlation[ok], flags=table.flags)

    def candidates(self, params: FindDisksParams | None = None) -> "Candidates":
        """Every local maximum (pixel position, correlation value) and whether the filters keep it."""
        p = resolve_subpixel(params or FindDisksParams(), self.radius)
        edge, spacing = self._edge_spacing(p)
        N, H, W = self.corr.shape
        xs, ys = np.empty(H * W, np.int64), np.empty(H * W, np.int64)
        vs = np.empty(H * W, np.float64)
        parts, keeps, counts = [], [], np.zeros(N, np.int64)
        for i in range(N):
            n = K.local_maxima(self.corr[i], edge, xs, ys, vs) if self.valid[i] else 0
            keep = np.zeros(n, np.bool_)
            K.select_peaks(xs, ys, vs, n, p.min_absolute_intensity, spacing, p.min_relative_intensity,
                           p.relative_to_peak, p.max_num_peaks, keep)
            parts.append((xs[:n] * float(self.step), ys[:n] * float(self.step), vs[:n].copy()))
            keeps.append(keep)
            counts[i] = n
        cat = [np.concatenate([q[k] for q in parts]) if parts else np.zeros(0) for k in range(3)]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        table = PeakTable(self.scan_shape, offsets, cat[0], cat[1], np.full(len(cat[0]), np.nan), cat[2],
                          flags=np.where(self.valid, 0, FLAG_INVALID))
        return Candidates(table, np.concatenate(keeps) if keeps else np.zeros(0, bool))


@dataclass(frozen=True)
class Candidates:
    """All local maxima of the correlation (before filters), for threshold histograms.

    Attributes
    ----------
    table : PeakTable
        Integer pixel positions, ``correlation`` values; ``intensity`` is NaN.
    kept : (n,) bool array
        True for the maxima the filters keep (same rows as ``table``).
    """

    table: PeakTable
    kept: np.ndarray


def _pack(scan_shape: tuple[int, ...], counts: np.ndarray, cols: list[np.ndarray], m: int,
          valid: np.ndarray) -> PeakTable:
    rows = (np.arange(m)[None, :] < counts[:, None]).reshape(-1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return PeakTable(scan_shape, offsets, cols[0][rows], cols[1][rows], cols[2][rows], cols[3][rows],
                     flags=np.where(valid, 0, FLAG_INVALID).astype(np.uint8))


def _template(template: Any, shape: tuple[int, int]) -> ProbeTemplate:
    if isinstance(template, np.ndarray):
        template = probe_template(template)
    if not isinstance(template, ProbeTemplate):
        raise ParameterError(f"template must be a ProbeTemplate or a 2-D probe image, got {type(template).__name__}",
                             field="template")
    if template.shape != tuple(shape):
        raise ShapeError(f"the template has shape {template.shape}; the patterns are {tuple(shape)}. Make the "
                         "template from a probe image recorded on the same detector (and binning)")
    if not np.isfinite(template.kernel).all() or not np.any(template.kernel != 0):
        raise ParameterError("the template kernel is empty, all zero or not finite", field="template")
    return template


def resolve_subpixel(params: FindDisksParams, radius: float) -> FindDisksParams:
    """``params`` with ``subpixel='auto'`` replaced by the refinement for disks of ``radius`` px.

    >>> resolve_subpixel(FindDisksParams(), 2.0).subpixel, resolve_subpixel(FindDisksParams(), 8.0).subpixel
    ('spot', 'disk')
    """
    if params.subpixel != "auto":
        return params
    return dataclasses.replace(params, subpixel=refinement_for(radius))


def correlate_patterns(patterns: np.ndarray, template: Any, params: FindDisksParams | None = None, *,
                       origins: np.ndarray | None = None, workers: int = -1,
                       keep_spectrum: bool = True) -> DiskCorrelation:
    """Correlate patterns with the template (the expensive half of disk detection).

    Parameters
    ----------
    patterns : (N, H, W) or (H, W) or (a, b, H, W) array
        Patterns (the peak table takes the leading shape as its scan shape).
    template : ProbeTemplate or (H, W) array
        A template, or a vacuum probe image to make a ``'flat'`` one from.
    params : FindDisksParams, optional
        Uses ``corr_power``, ``sigma_dp``, ``sigma_cc``, ``log``, ``radial_background``.
    origins : (N, 2) array, optional
        Beam origin per pattern (for ``radial_background``).
    workers : int
        ``scipy.fft`` worker threads (-1: all cores).
    keep_spectrum : bool
        Keep the correlation spectra (needed by ``subpixel='dft'``); False saves a copy.

    Returns
    -------
    DiskCorrelation
    """
    p = params or FindDisksParams()
    arr = np.asarray(patterns)
    if arr.ndim < 2:
        raise ShapeError(f"patterns must be (H, W), (N, H, W) or (a, b, H, W), got shape {arr.shape}")
    lead = arr.shape[:-2] if arr.ndim > 2 else (1,)
    H, W = arr.shape[-2:]
    t = _template(template, (H, W))
    p = resolve_subpixel(p, t.radius)
    x, valid = _preprocess(arr.reshape((-1, H, W)), p, None if origins is None else
                           np.asarray(origins, dtype=np.float64).reshape(-1, 2))
    spec = sfft.rfft2(x, workers=workers)
    pre = t.spectrum() * gauss_filter((H, W), p.sigma_dp) if p.sigma_dp > 0 else t.spectrum()
    post = gauss_filter((H, W), p.sigma_cc) if p.sigma_cc > 0 else None
    if p.corr_power == 1.0 and post is not None:
        spec *= pre * post  # one pass over the spectra
    else:
        spec *= pre
        if p.corr_power != 1.0:
            mag = np.abs(spec)
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = np.where(mag > 0, mag ** np.float32(p.corr_power - 1.0), np.float32(0.0))
            spec *= gain
        if post is not None:
            spec *= post
    step = correlation_step(p, (H, W))
    if step > 1:
        corr = _decimated_inverse(spec, (H, W), step, workers)
    else:
        # negative values are never maxima; without keep_spectrum the spectra are reused as scratch
        corr = sfft.irfft2(spec, s=(H, W), workers=workers, overwrite_x=not keep_spectrum)
    if not keep_spectrum:
        spec = None
    return DiskCorrelation(corr, spec, x, valid, t.radius, band((H, W), p.sigma_cc), lead, t, workers, step)


#: Largest Fourier gain of the correlation smoothing allowed beyond the Nyquist frequency of a
#: coarser correlation grid (see :func:`correlation_step`).
DECIMATION_GAIN = 0.01


def correlation_step(params: FindDisksParams, shape: tuple[int, int]) -> int:
    """Grid step (1 or 2 px) at which the whole-pattern correlation is computed.

    The correlation is smoothed by a Gaussian of ``sigma_cc`` px, whose Fourier gain
    ``exp(-2 pi^2 sigma^2 f^2)`` is below :data:`DECIMATION_GAIN` beyond 1/4 cycle per
    pixel when ``sigma_cc >= 1.93``: the smoothed map then holds (almost) nothing a
    2-px grid cannot sample, and it is computed there by an inverse FFT of a quarter
    of the size. Only ``subpixel='disk'`` (and ``'edge'``, which starts with it) uses it, since
    that refinement starts from the map's maxima and correlates each disk again at full resolution.

    Examples
    --------
    ``subpixel='auto'`` is resolved first (:func:`resolve_subpixel`): it counts as what it resolves to.

    >>> disk = FindDisksParams(subpixel="disk")
    >>> correlation_step(disk, (128, 128)), correlation_step(disk.replace(sigma_cc=1), (128, 128))
    (2, 1)
    """
    H, W = shape
    if params.subpixel not in COARSE_GRID_REFINED or H % 4 or W % 4 or H < 16 or W < 16:
        return 1
    gain = math.exp(-2.0 * math.pi ** 2 * params.sigma_cc ** 2 * 0.25 ** 2)
    return 2 if gain <= DECIMATION_GAIN else 1


def _decimated_inverse(spec: np.ndarray, shape: tuple[int, int], step: int, workers: int) -> np.ndarray:
    """The correlation on every ``step``-th pixel: inverse FFT of the spectrum's low frequencies."""
    H, W = shape
    h, w = H // step, W // step
    low = np.empty(spec.shape[:-2] + (h, w // 2 + 1), dtype=spec.dtype)
    low[..., :h // 2, :] = spec[..., :h // 2, :w // 2 + 1]
    low[..., h // 2:, :] = spec[..., H - h // 2:, :w // 2 + 1]
    corr = sfft.irfft2(low, s=(h, w), workers=workers, overwrite_x=True)
    corr *= np.float32(1.0 / step ** 2)  # irfft2 normalises by the smaller grid's size
    return corr


def find_disks_in_patterns(patterns: np.ndarray, template: Any, params: FindDisksParams | None = None, *,
                           origins: np.ndarray | None = None, workers: int = -1) -> PeakTable:
    """Find the Bragg disks of a few patterns (e.g. the tuner's chosen positions).

    Parameters
    ----------
    patterns : (N, H, W) or (H, W) or (a, b, H, W) array
    template : ProbeTemplate or (H, W) array
    params : FindDisksParams, optional
        ``params.template`` is ignored (the template is given).
    origins : (N, 2) array, optional
        Beam origin per pattern (for ``radial_background``).
    workers : int
        ``scipy.fft`` worker threads.

    Returns
    -------
    PeakTable
        Scan shape = the leading shape of ``patterns`` (``(1,)`` for one pattern). With
        ``params.lattice``, lattice-snapped (a 2-D leading shape is taken as a scan grid).
    """
    table = correlate_patterns(patterns, template, params, origins=origins, workers=workers).detect(params)
    return _snap(table, params)


def _snap(table: PeakTable, p: FindDisksParams | None) -> PeakTable:
    """The table snapped to its lattice when ``p.lattice`` asks for it."""
    if p is None or p.lattice is None:
        return table
    return snap_to_lattice(table, p.lattice)


def candidate_peaks(patterns: np.ndarray, template: Any, params: FindDisksParams | None = None, *,
                    origins: np.ndarray | None = None, workers: int = -1) -> Candidates:
    """Every local maximum of the correlation with its value, and which ones the filters keep."""
    return correlate_patterns(patterns, template, params, origins=origins, workers=workers).candidates(params)


# --- whole scan ------------------------------------------------------------------------
class _FindDisksJob:
    """Engine job: detect the disks of each block of patterns; merge into a PeakTable."""

    name = "find_disks"

    def __init__(self, template: ProbeTemplate, params: FindDisksParams, origin_map: np.ndarray | None) -> None:
        self.template = template
        self.params = params
        self.origin_map = origin_map

    def init(self, cube: Any) -> dict:
        return {"scan_shape": tuple(cube.scan_shape), "parts": []}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> tuple:
        nx, ny = block.shape[:2]
        origins = None if self.origin_map is None else self.origin_map[rx, ry].reshape(-1, 2)
        t = correlate_patterns(block.reshape((nx * ny,) + block.shape[2:]), self.template, self.params,
                               origins=origins, workers=1,
                               keep_spectrum=self.params.subpixel == "dft").detect(self.params)
        return t.counts().reshape(nx, ny), t.qx, t.qy, t.intensity, t.correlation, t.flags.reshape(nx, ny)

    def merge(self, acc: dict, partial: tuple, rx: slice, ry: slice) -> dict:
        acc["parts"].append((rx, ry, partial))
        return acc

    def finalize(self, acc: dict) -> PeakTable:
        shape = acc["scan_shape"]
        counts = np.zeros(shape, np.int64)
        flags = np.zeros(shape, np.uint8)
        for rx, ry, (c, *_rest, f) in acc["parts"]:
            counts[rx, ry] = c
            flags[rx, ry] = f
        offsets = np.concatenate([[0], np.cumsum(counts.reshape(-1))])
        cols = [np.full(int(offsets[-1]), np.nan) for _ in range(4)]
        idx = np.arange(shape[0] * shape[1]).reshape(shape)
        for rx, ry, (c, *vals, _f) in acc["parts"]:
            starts = offsets[idx[rx, ry].reshape(-1)]
            cc = c.reshape(-1)
            dest = np.repeat(starts, cc) + (np.arange(cc.sum()) - np.repeat(np.cumsum(cc) - cc, cc))
            for col, v in zip(cols, vals):
                col[dest] = v
        return PeakTable(shape, offsets, *cols, flags=flags)


def _run_job(cube: Any, job: Any, engine: Mapping[str, Any]) -> Any:
    """Run the job with the engine (no progress bar unless asked for)."""
    opts = dict(engine)
    opts.setdefault("progress", False)
    return run_job(cube, job, **opts)


def _cube_origin_map(cube: Any) -> np.ndarray | None:
    cal = cube.calibration
    if getattr(cal, "origin_map", None) is not None:
        return np.asarray(cal.origin_map, dtype=np.float64)
    if getattr(cal, "origin", None) is not None:
        return np.broadcast_to(np.asarray(cal.origin, dtype=np.float64), tuple(cube.scan_shape) + (2,)).copy()
    return None


def find_disks(cube: Any, params: FindDisksParams | None = None, *, template: ProbeTemplate | np.ndarray | None = None,
               **options: Any) -> PeakTable:
    """Find the Bragg disks of every pattern of a cube.

    Parameters
    ----------
    cube : DataCube
        Data, axes (Rx, Ry, Qx, Qy).
    params : FindDisksParams, optional
        Detection parameters (defaults documented in the module docstring).
    template : ProbeTemplate or (Qx, Qy) array, optional
        Use this template instead of making one from ``params.template``.
    **options
        Options of :func:`fourd_widgets.engine.run_job` (``workers``,
        ``scheduler``, ``chunk_bytes``, ``progress``, ``cancel``, ``on_partial``),
        and record field overrides (e.g. ``max_num_peaks=30``).

    Returns
    -------
    PeakTable
        Scan shape ``(Rx, Ry)``, positions in detector pixels. Positions whose
        pattern held NaN/inf have no peaks and carry :data:`FLAG_INVALID`. With
        ``params.lattice`` the disks are snapped to each pattern's lattice
        (:func:`~fourd_widgets.analysis.disk_lattice.snap_to_lattice`); snapped
        positions carry :data:`FLAG_LATTICE`.

    Warns
    -----
    NoPeaksWarning
        When the thresholds rejected every peak (the table is then empty).
    NoLatticeWarning
        When peaks were found but no pattern's peaks are arranged like a lattice
        (:func:`lattice_rows` below :data:`LATTICE_ROWS` everywhere): an amorphous
        pattern's speckle or rings are not Bragg disks.
    """
    engine, changes = split_engine(options)
    p = own_record(params, FindDisksParams, changes, "find_disks")
    # the template's pass shares the workers and the cancel button, not the progress and partial
    # results (they are the peaks'), nor chunk_bytes (the mean pattern keeps its own summation order)
    shared = {k: v for k, v in engine.items() if k in ("workers", "scheduler", "cancel")}
    t = _template(probe_template(cube, p.template, **shared) if template is None else template,
                  tuple(cube.detector_shape))
    om = _cube_origin_map(cube)
    if p.radial_background and om is None:
        (cx, cy), _ = measure_disk(cube.mean_pattern())
        om = np.broadcast_to(np.array([cx, cy]), tuple(cube.scan_shape) + (2,)).copy()
    table = _run_job(cube, _FindDisksJob(t, p, om), engine)
    _warn_if_empty(table, p)
    _warn_if_no_lattice(table)
    return _snap(table, p)


class NoLatticeWarning(UserWarning):
    """No pattern's peaks are arranged like a crystal lattice (amorphous or noise: not Bragg disks)."""


#: A pattern is lattice-like when at least this many rows of three equally spaced peaks (p, p + d, p + 2d)
#: share one spacing d. Friedel symmetry alone (an amorphous film's speckle is centrosymmetric too) pairs
#: such rows at most two by two; the 13 disks of a Si [001] pattern hold five rows along g1.
LATTICE_ROWS = 3
#: Positions closer than this are one (px): a few times a low-dose disk error (0.5-0.7 px median at 2000 e).
SPACING_TOL_PX = 3.0
#: Patterns examined for :class:`NoLatticeWarning`: the fullest ones, at most this many.
LATTICE_CHECK_PATTERNS = 256
#: :class:`NoLatticeWarning` when at most this fraction of the examined patterns is lattice-like. Random
#: peaks in Friedel pairs (47, as the issue's amorphous pattern) pass :func:`lattice_rows` in 5 % of 200
#: trials; crystal patterns with clear disks always, at 2000 electrons per probe (0.5-0.7 px disk errors)
#: about one in four.
LATTICE_MIN_FRACTION = 0.15


def lattice_rows(qx: Any, qy: Any, tol: float = SPACING_TOL_PX) -> int:
    """The most rows of three equally spaced peaks ``(p, p + d, p + 2d)`` that share one spacing ``d``.

    A crystal's diffraction pattern is a lattice, so one spacing repeats along many rows; peaks
    scattered at random (speckle, noise) rarely line up in threes, and never many times with one
    spacing.

    Parameters
    ----------
    qx, qy : (n,) arrays
        Peak positions of one pattern, px.
    tol : float
        Positions (and spacings) closer than this are one, px.

    Returns
    -------
    int
        0 without any row; :data:`LATTICE_ROWS` or more for a lattice.

    Examples
    --------
    >>> h, k = np.meshgrid(np.arange(-2, 3), np.arange(-2, 3), indexing="ij")
    >>> lattice_rows(64 + 20.0 * h.ravel(), 64 + 15.0 * k.ravel())  # a 5 x 5 lattice: 3 rows of 3 per line
    15
    >>> lattice_rows([10.0, 40.0, 90.0, 15.0], [70.0, 12.0, 33.0, 101.0])  # scattered peaks
    0
    """
    q = np.stack([np.asarray(qx, float).ravel(), np.asarray(qy, float).ravel()], -1)
    n = len(q)
    if n < 3:
        return 0
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    d = q[j] - q[i]
    far = np.hypot(d[:, 0], d[:, 1]) > 2 * tol  # a row, not one blurred peak
    i, j, d = i[far], j[far], d[far]
    nxt = q[j] + d
    has = (np.hypot(*(nxt[:, None, :] - q[None]).transpose(2, 0, 1)) < tol).any(1)
    d = d[has]
    if len(d) == 0:
        return 0
    d[(d[:, 0] < 0) | ((d[:, 0] == 0) & (d[:, 1] < 0))] *= -1  # a row and its reverse are one
    best = 0
    for v in d:
        best = max(best, int(np.sum(np.hypot(*(d - v).T) < tol)))
    return best // 2  # each row is found from both of its ends


def _warn_if_no_lattice(table: PeakTable) -> None:
    """Warn when (almost) no pattern holds peaks arranged like a lattice (issue 12 item 23: amorphous data)."""
    counts = np.diff(table.offsets)
    if len(table) == 0:
        return
    examined = like = 0
    for n in np.argsort(-counts, kind="stable")[:LATTICE_CHECK_PATTERNS]:
        if counts[n] < 3:
            break
        s = slice(int(table.offsets[n]), int(table.offsets[n + 1]))
        examined += 1
        like += lattice_rows(table.qx[s], table.qy[s]) >= LATTICE_ROWS
    if like > LATTICE_MIN_FRACTION * max(examined, 1):
        return
    warnings.warn(
        f"find_disks: the {len(table)} peaks found are not arranged like a crystal lattice ({like} of {examined} "
        f"patterns examined have {LATTICE_ROWS} rows of equally spaced peaks with one spacing; at most "
        f"{int(counts.max())} peaks per pattern): this looks like an amorphous or polycrystalline-ring pattern "
        "or noise, not Bragg disks. Check the patterns, or use the radial profile (fourd_widgets.analysis.polar) "
        "for amorphous data", NoLatticeWarning, stacklevel=3)


def _warn_if_empty(table: PeakTable, p: FindDisksParams) -> None:
    if len(table) == 0 and not (table.flags & FLAG_INVALID).all():
        warnings.warn(
            "find_disks: the thresholds rejected every peak (min_absolute_intensity="
            f"{p.min_absolute_intensity}, min_relative_intensity={p.min_relative_intensity}, edge_boundary="
            f"{p.edge_boundary}); lower them (candidate_peaks() shows the values found)", NoPeaksWarning,
            stacklevel=3)

