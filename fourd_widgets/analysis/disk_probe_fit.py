"""Per-disk least-squares fit of the recorded central disk, Fourier-shifted (``FindDisksParams.probe_fit``).

A Bragg disk is the probe's aperture moved by ``g``. On the detector's pixel grid
a move by a fraction of a pixel is a band-limited (sinc) interpolation of the
aperture's amplitude: in a multislice simulation whose crystal does not repeat
with the simulation box, exactly so while the probe stays clear of the box's
edge, and the disks' rims ring with it (on the
shared abTEM Si files the recorded (220) disk matches the moved amplitude of
the central disk pixel by pixel, overshoot at the rim included);
on a real detector, whose point spread makes the recorded disk band-limited,
to a good approximation. A template correlation with a fixed edge, or an edge
fit with a smooth profile, cannot follow that ringing, and their error then
depends on each disk's place on the pixel grid (0.005-0.017 px on those files,
0.02-0.03 % of the lattice).

Here each disk, started from the window correlation's estimate
(:func:`fourd_widgets.analysis.disk_refine.refine_disks`), is fitted by

``I(p) = (a0 + a1 u + a2 v) |S_c A|^2(p) + b``

where ``A`` is the square root of the recorded central disk (the mean pattern's,
or the vacuum probe), ``S_c`` the sinc interpolation that puts its centre at ``c``,
``(u, v)`` the pixel's offset from the window centre in disk radii (a linear
intensity ramp: dynamical contrast across the disk), and ``b`` a flat background.
For each ``c`` the four linear coefficients are solved exactly (variable
projection) and ``c`` moves by Gauss-Newton steps.

Measured on the shared abTEM Si [001] files (every position, every other default):
the median lattice of ``si_001_unstrained``, ``_exx_1pct`` and ``_rot_10deg``
moves from 0.023 / 0.015 / 0.027 % of the truth (the window correlation alone)
to 0.006 / 0.005 / 0.019 % (:func:`fourd_widgets.analysis.strain.fit_lattice`'s
docstring has the figures per weighting; ``bench/bench_strain_limits.py --part weights``).
It costs about 0.06 ms per disk on one core (three Gauss-Newton rounds).

References
----------
.. [1] E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed.,
       Springer (2010), ch. 6: the sampled wave of a multislice calculation and its
       periodic boundary conditions.
.. [2] G. H. Golub and V. Pereyra, "Separable nonlinear least squares: the
       variable projection method and its applications", Inverse Problems 19,
       R1-R26 (2003).

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.analysis.probe import synthetic_disk
>>> probe = synthetic_disk((64, 64), 6.0, (32.0, 32.0), 0.5)
>>> pats = synthetic_disk((64, 64), 6.0, (20.3, 41.6), 0.5)[None] * 0.1
>>> qx, qy, misfit = fit_disks_to_probe(pats, np.array([0]), np.array([20.2]), np.array([41.5]),
...                             probe, (32.0, 32.0), 6.0)
>>> abs(float(qx[0]) - 20.3) < 0.02, abs(float(qy[0]) - 41.6) < 0.02
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import disk_fit as KF

__all__ = ["FIT_ITERATIONS", "FIT_MAX_MISFIT", "FIT_MAX_MOVE", "FIT_MAX_RESIDUAL", "FIT_WINDOW", "amplitude_template",
           "fit_disks_to_probe"]

#: Pixels within this many disk radii of the start take part in a disk's fit (the ringing rim included,
#: the neighbours' rims not, for disks more than 2.3 radii apart; closer, overlapping disks leave a misfit
#: and keep the correlation's estimate).
FIT_WINDOW = 1.3
#: Gauss-Newton rounds at most (started within a few hundredths of a pixel, it settles in two or three).
FIT_ITERATIONS = 3
#: A disk the fit moves farther than this from its start (px) keeps its start.
FIT_MAX_MOVE = 0.75
#: A disk whose fit leaves a structured residual (smoother than pixel noise) above this fraction of its
#: window's RMS keeps its start: the recorded disk does not describe it (shared abTEM files: 0-0.05 in single
#: crystals, 0.1-0.42 in the bicrystal, whose disks carry the other grain's weak disks and their interference).
FIT_MAX_MISFIT = 0.1
#: A disk whose pixel noise, or whose fit's whole residual, is above this fraction of its window's RMS
#: keeps its start: with few counts per pixel the fit gains little over the window correlation and costs
#: its time (si_001_unstrained with Poisson noise, per-position strain RMS: 1e6 electrons per pattern, where
#: the zero beam and (220) disks pass, 0.070 % against 0.077 % with the correlation alone; at 1e5 electrons
#: no Bragg disk passes; letting every disk through: 0.066 % at 1e6, 0.243 % against 0.246 % at 1e5, 1.02 %
#: against 0.95 % at 1e4).
FIT_MAX_RESIDUAL = 0.3
#: The recorded disk is cut where its amplitude falls below this fraction of its peak.
AMPLITUDE_FLOOR = 1e-3


def amplitude_template(probe: np.ndarray, center: tuple[float, float], radius: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recorded central disk's amplitude, cut to its support.

    Parameters
    ----------
    probe : (H, W) array
        Mean pattern or vacuum probe.
    center : (float, float)
        Its disk's centre, px.
    radius : float
        Its disk's radius, px.

    Returns
    -------
    amp : (m, n) float64 array
        ``sqrt`` of the background-subtracted intensity within ``radius + 3`` px of the centre.
    mx, my : (m,), (n,) float64 arrays
        Each row's and column's offset from ``center``, px.
    """
    img = np.asarray(probe, dtype=np.float64)
    H, W = img.shape
    cx, cy = float(center[0]), float(center[1])
    reach = int(math.ceil(radius + 3))
    x0, x1 = max(int(round(cx)) - reach, 0), min(int(round(cx)) + reach + 1, H)
    y0, y1 = max(int(round(cy)) - reach, 0), min(int(round(cy)) + reach + 1, W)
    cut = img[x0:x1, y0:y1]
    X, Y = np.meshgrid(np.arange(x0, x1) - cx, np.arange(y0, y1) - cy, indexing="ij")
    r = np.hypot(X, Y)
    ring = cut[(r > radius + 2) & (r <= radius + 3)]
    background = float(np.median(ring)) if ring.size else 0.0
    inten = np.where(r <= radius + 2.5, cut - background, 0.0)
    amp = np.sqrt(np.clip(inten, 0.0, None))
    keep = amp > AMPLITUDE_FLOOR * amp.max() if amp.max() > 0 else np.ones_like(amp, bool)
    rows, cols = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
    amp = amp[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return amp, X[rows[0]:rows[-1] + 1, 0].copy(), Y[0, cols[0]:cols[-1] + 1].copy()


def fit_disks_to_probe(patterns: np.ndarray, pidx: np.ndarray, qx: np.ndarray, qy: np.ndarray,
                       probe: np.ndarray, center: tuple[float, float], radius: float,
                       max_misfit: float = FIT_MAX_MISFIT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine disk centres by fitting each with the recorded central disk, sinc-shifted.

    Parameters
    ----------
    patterns : (N, H, W) float array
    pidx : (n,) int array
        Pattern of each disk.
    qx, qy : (n,) float arrays
        Starting centres, px (within a few tenths of a pixel; e.g. from ``refine_disks``).
    probe : (H, W) array
        The recorded central disk: the mean pattern or a vacuum probe.
    center : (float, float)
        Its centre, px (an error in it moves every disk alike, so only the origin).
    radius : float
        Disk radius, px.
    max_misfit : float
        A disk whose relative RMS residual is above this keeps its start.

    Returns
    -------
    qx, qy : (n,) float64 arrays
        Fitted centres; a disk whose fit fails, moves farther than ``FIT_MAX_MOVE`` px or leaves a
        misfit above ``max_misfit`` keeps its start (NaN starts stay NaN).
    misfit : (n,) float64 array
        Each fit's RMS residual over its window's RMS (NaN where the fit failed).
    """
    qx = np.asarray(qx, dtype=np.float64)
    qy = np.asarray(qy, dtype=np.float64)
    pidx = np.asarray(pidx, dtype=np.int64)
    outx, outy = qx.copy(), qy.copy()
    found = np.flatnonzero(np.isfinite(qx) & np.isfinite(qy))
    if found.size == 0:
        return outx, outy, np.full(qx.shape, np.nan)
    amp, mx, my = amplitude_template(probe, center, radius)
    pats = np.ascontiguousarray(patterns, dtype=np.float32)
    fx, fy, mf, rr = (np.empty(found.size) for _ in range(4))
    KF.fit_probe_windows(pats, pidx[found], qx[found], qy[found], amp, mx, my, float(radius), FIT_WINDOW,
                         FIT_ITERATIONS, FIT_MAX_MOVE, FIT_MAX_RESIDUAL, fx, fy, mf, rr)
    take = mf <= max_misfit  # NaN (start kept) compares False
    outx[found[take]], outy[found[take]] = fx[take], fy[take]
    misfit = np.full(qx.shape, np.nan)
    misfit[found] = mf
    return outx, outy, misfit
