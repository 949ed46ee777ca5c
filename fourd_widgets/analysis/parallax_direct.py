"""Aberrations and scan rotation fitted directly to the bright-field images (all side bands at once).

The parallax fit of :mod:`~fourd_widgets.analysis.parallax` measures image shifts within
the double-side-band frequencies, where a weak phase gives the bright-field images
only ``2 sin χ(q)`` of contrast: at small defocus that is little, and the rotation
(which comes from the shifts' curl) drowns in shot noise. Here the model is the
whole linear response of the bright-field images to a weak phase ``φ``. With the
scan's Fourier transform ``G(k, q)`` of the image at detector point ``k`` [1]_, [2]_,

``G(k, q) = i φ̂(q) m(k, q)``,  ``m(k, q) = A(k − q) A*(k) − A(k) A*(k + q)``,

``A(k) = a(k) e^{−iχ(k)}`` the probe in the aperture and ``q`` taken to the detector
frame by the scan rotation. Where only one of ``k ± q`` lies in the aperture (the
"trotters" of single side band ptychography) ``|m| = 1`` whatever the defocus, and
its phase ``χ(k) − χ(k − q)`` carries the aberrations and the rotation. For each
``q`` the least-squares ``φ̂(q)`` is ``Σ_k m* G / Σ_k |m|²``, and what it explains,

``F(C10, C12, φ12, θ) = Σ_q |Σ_k m*(k, q) G(k, q)|² / Σ_k |m(k, q)|²``,

is maximised (with white noise in ``G`` this is the profile likelihood: the noise
adds the same to ``F`` for every model, so the noise does not bias the maximum).

Details that matter at the 1 % level:

* Each image is tapered by a window that moves with its parallax shift under the
  current fit (and stays inside the scan), so every tapered image holds the same
  patch of the object: a window that stays put pulls the fit towards zero shift
  (3 % of C10 at 50 Å), and moving the images instead (periodically) brings in
  content from their other edge (1.5 % of C10 at 500 Å). A few rounds move the
  windows with the new fit.
* For a quadratic ``χ`` the phase of ``m`` is linear in ``k``, so its mean over a
  group of ``nx x ny`` detector pixels is exact: a Dirichlet kernel per axis. The
  aperture edge is the fraction of the group inside (a linear edge one group wide).
* The search is a Newton iteration on ``F`` with finite differences (four
  parameters; ``F`` is smooth because the aperture edges are).

References
----------
.. [1] J. M. Rodenburg, B. C. McCallum and P. D. Nellist, Ultramicroscopy 48, 304-314 (1993)
   (the overlap of the scattered and unscattered disks).
.. [2] T. J. Pennycook et al., Ultramicroscopy 151, 160-167 (2015) (single side band ptychography).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

from .aberrations import Aberrations, parallax_shift
from .calibration import scan_frame_matrix

__all__ = ["fit_aberrations_direct", "DirectFit", "merge_groups"]

#: Tapered fraction of each scan edge. Short: the taper blurs the spectrum, the disks' edges with it (C10 = 50 Å,
#: no noise: C12 came out 5 % high with a 25 % taper, 1-4 % with 5 %).
TAPER = 0.05


class DirectFit:
    """The images' spectra and geometry for :func:`fit_aberrations_direct`'s objective.

    Parameters
    ----------
    images : (N, Rx, Ry) array
        Bright-field image of each detector group (relative contrast).
    k : (N, 2) array
        Detector-frame centre of each group, 1/Å.
    group_px : (N, 2) array of int
        Pixels of each group along each detector axis.
    step_A, wavelength_A, k_alpha, dk
        Scan step (Å), wavelength (Å), aperture radius and detector pixel (1/Å).
    flip : bool
    """

    def __init__(self, images: np.ndarray, k: np.ndarray, group_px: np.ndarray, step_A: float, wavelength_A: float,
                 k_alpha: float, dk: float, flip: bool) -> None:
        self.images = images
        self.k = np.asarray(k, float)
        self.group_px = np.asarray(group_px, int)
        self.step_A = float(step_A)
        self.lam = float(wavelength_A)
        self.k_alpha = float(k_alpha)
        self.dk = float(dk)
        self.flip = bool(flip)
        N, Rx, Ry = images.shape
        qx = sfft.fftfreq(Rx, self.step_A)[:, None] * np.ones((1, Ry))
        qy = np.ones((Rx, 1)) * sfft.fftfreq(Ry, self.step_A)[None, :]
        qn = np.hypot(qx, qy).ravel()
        # beyond 2 k_alpha no disk overlaps the unscattered one; −q repeats q (real images, m(−q) = −m(q)*)
        half = (qx.ravel() > 0) | ((qx.ravel() == 0) & (qy.ravel() > 0))
        self.sel = np.flatnonzero(half & (qn < 2 * self.k_alpha))
        self.q = np.stack([qx.ravel()[self.sel], qy.ravel()[self.sel]], -1)  # (M, 2), scan frame, 1/Å
        # Poisson noise of a normalised group image falls as 1 / (its pixels): weight rows by sqrt(pixels)
        self.weight = np.sqrt(self.group_px.prod(axis=1).astype(float))[:, None]
        self.weight32 = self.weight.astype(np.float32)
        self.k32 = self.k.astype(np.float32)
        self.sizes, self.size_index = np.unique(self.group_px, axis=0, return_inverse=True)
        self.size_index = np.asarray(self.size_index).ravel()
        self._cache: tuple | None = None

    def align(self, x: np.ndarray) -> None:
        """Spectra of the images, each tapered by a window moved with its parallax shift under ``x``.

        A window that stays put while the image content moves pulls the fit towards zero
        shift; moving the images instead (periodically) brings in content from their other
        edge. The window, evaluated at ``R − d``, follows the content and stays inside the scan.
        """
        d = self.shifts_A(x) / self.step_A  # scan px
        N, Rx, Ry = self.images.shape
        margin = np.abs(d).max(axis=0) if len(d) else np.zeros(2)
        wx = _moved_taper(Rx, d[:, 0], float(margin[0]))
        wy = _moved_taper(Ry, d[:, 1], float(margin[1]))
        a = self.images - self.images.mean(axis=(1, 2), keepdims=True)
        G = sfft.fft2(a * wx[:, :, None] * wy[:, None, :]).reshape(N, -1)[:, self.sel]
        G = G * self.weight
        self.Gr, self.Gi = G.real.astype(np.float32), G.imag.astype(np.float32)

    def shifts_A(self, x: np.ndarray) -> np.ndarray:
        """Parallax shifts (scan frame, Å) of the model ``x = (C10, C12 cos 2φ12, C12 sin 2φ12, θ)``."""
        ab, rot = params_to_model(x)
        return parallax_shift(self.k[:, 0], self.k[:, 1], self.lam, ab) @ scan_frame_matrix(rot, self.flip).T

    def objective(self, x: np.ndarray) -> float:
        """``F`` of the module docstring (larger is better)."""
        C10, a, b, rot = (float(v) for v in x)
        H = np.array([[C10 + a, b], [b, C10 - a]])  # χ = π λ kᵀ H k
        qd, am, ap = self._geometry(rot)
        Hq = qd @ H  # (M, 2), H symmetric
        lam = self.lam
        # χ(k) − χ(k − q) = s − t and χ(k + q) − χ(k) = s + t
        s = (2 * math.pi * lam) * (self.k32 @ Hq.T.astype(np.float32))  # (N, M)
        t = math.pi * lam * np.einsum("mi,mi->m", qd, Hq)
        # the phase s has the same gradient 2πλ Hq along k in both terms: its group mean is a Dirichlet kernel
        u = 2 * math.pi * lam * self.dk * Hq  # (M, 2): phase step per detector pixel
        D = np.empty((len(self.sizes), len(qd)), np.float32)
        for i, (nx, ny) in enumerate(self.sizes):
            D[i] = _dirichlet(u[:, 0], nx) * _dirichlet(u[:, 1], ny)
        amp = D[self.size_index] * self.weight32
        # Σ_n m* G with m = amp e^{is} (am e^{−it} − ap e^{it}), in real arithmetic (a complex exp costs 15x):
        # P = amp e^{−is} G, then Σ m* G = e^{it} Σ am P − e^{−it} Σ ap P
        c, sn = np.cos(s), np.sin(s)
        Pr = amp * (c * self.Gr + sn * self.Gi)
        Pi = amp * (c * self.Gi - sn * self.Gr)
        sum_ = lambda u, v: np.einsum("nm,nm->m", u, v, dtype=np.float64)  # noqa: E731
        A1r, A1i, A2r, A2i = sum_(am, Pr), sum_(am, Pi), sum_(ap, Pr), sum_(ap, Pi)
        ct, st = np.cos(t), np.sin(t)
        cr = ct * (A1r - A2r) - st * (A1i + A2i)
        ci = ct * (A1i - A2i) + st * (A1r + A2r)
        amp2 = amp * amp
        den = sum_(amp2, am * am + ap * ap) - 2 * np.cos(2 * t) * sum_(amp2, am * ap)
        ok = den > 1e-12
        return float(np.sum((cr[ok] ** 2 + ci[ok] ** 2) / den[ok]))

    def _geometry(self, rot: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``q`` in the detector frame and the groups' aperture fractions at ``k ∓ q`` (cached per rotation)."""
        if self._cache is not None and self._cache[0] == rot:
            return self._cache[1]
        qd = self.q @ scan_frame_matrix(rot, self.flip)  # rows: q in the detector frame
        am = self._aperture(self.k[:, 0, None] - qd[None, :, 0], self.k[:, 1, None] - qd[None, :, 1])
        ap = self._aperture(self.k[:, 0, None] + qd[None, :, 0], self.k[:, 1, None] + qd[None, :, 1])
        self._cache = (rot, (qd, am.astype(np.float32), ap.astype(np.float32)))
        return self._cache[1]

    def _aperture(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
        """Fraction of each group (rows) whose pixels, moved by ``−q``, lie in the aperture.

        The probe's aperture has a linear edge one pixel wide; a group of ``nx x ny``
        such pixels crosses the edge over the projection of its rectangle on the
        radial direction.
        """
        kx, ky = np.abs(kx.astype(np.float32)), np.abs(ky.astype(np.float32))
        r = np.sqrt(kx * kx + ky * ky)
        # (k_alpha − r) / w with w = (|kx| nx + |ky| ny) dk / r
        width = (kx * self.group_px[:, 0, None].astype(np.float32) + ky * self.group_px[:, 1, None].astype(np.float32))
        width *= np.float32(self.dk)
        return np.clip((np.float32(self.k_alpha) - r) * r / np.maximum(width, np.float32(1e-12)) + np.float32(0.5),
                       np.float32(0.0), np.float32(1.0))


def merge_groups(images: np.ndarray, k: np.ndarray, group_px: np.ndarray, dk: float, bin: int,
                 target_px: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum blocks of ``f x f`` neighbouring groups (``f = target_px // bin``) into one, for speed.

    The objective's cost grows with the number of groups, its information hardly (a
    group's image is a sum of counts; the Dirichlet kernel keeps the phase exact). A
    block merges only when all its groups exist (so it stays a rectangle of pixels);
    the others are kept as they are.

    Returns
    -------
    images (N', Rx, Ry), k (N', 2), group_px (N', 2)

    Examples
    --------
    >>> images = np.arange(4.0)[:, None, None] * np.ones((4, 2, 2))  # four one-pixel groups
    >>> k = np.array([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [0.1, 0.1]])  # detector step 0.1 1/Å
    >>> merged, kc, px = merge_groups(images, k, np.ones((4, 2), int), 0.1, 1, target_px=2)
    >>> merged[:, 0, 0].tolist(), kc.round(6).tolist(), px.tolist()
    ([1.5], [[0.05, 0.05]], [[2, 2]])
    """
    f = max(1, int(target_px) // max(int(bin), 1))
    if f == 1:
        return images, k, group_px
    g = np.rint(k / (dk * bin)).astype(int)  # the groups' grid (their centres lie bin pixels apart)
    block = np.floor_divide(g, f)
    _, inverse, counts = np.unique(block, axis=0, return_inverse=True, return_counts=True)
    inverse = np.asarray(inverse).ravel()
    full = counts[inverse] == f * f
    npx = group_px.prod(axis=1).astype(float)
    out_img, out_k, out_px = [images[~full]], [k[~full]], [group_px[~full]]
    labels = np.unique(inverse[full])
    if len(labels):
        idx = np.searchsorted(labels, inverse[full])
        w = npx[full]
        wsum = np.bincount(idx, weights=w)
        # the images are relative contrast (counts / mean − 1) and a group's mean grows with its pixels
        merged = np.zeros((len(labels),) + images.shape[1:])
        np.add.at(merged, idx, images[full] * w[:, None, None])
        out_img.append(merged / wsum[:, None, None])
        out_k.append(np.stack([np.bincount(idx, weights=k[full, 0] * w), np.bincount(idx, weights=k[full, 1] * w)],
                              -1) / wsum[:, None])
        # a block's rectangle: its distinct rows of groups stacked along x, its columns along y
        gx, gy = g[full, 0], g[full, 1]
        px = np.zeros((len(labels), 2), int)
        for axis, gg in ((0, gx), (1, gy)):
            first = np.zeros(len(idx), bool)
            key = idx * (10 ** 6) + gg
            _, pos = np.unique(key, return_index=True)
            first[pos] = True
            px[:, axis] = np.rint(np.bincount(idx, weights=group_px[full, axis] * first)).astype(int)
        out_px.append(px)
    return np.concatenate(out_img), np.concatenate(out_k), np.concatenate(out_px)


def _moved_taper(n: int, shift: np.ndarray, margin: float) -> np.ndarray:
    """Tukey windows on ``margin .. n − 1 − margin``, each moved by its ``shift`` (px): ``(len(shift), n)``."""
    length = max(n - 1 - 2 * margin, 2.0)
    ramp = max(TAPER * length, 1.0)
    x = np.arange(n, dtype=float)[None, :] - shift[:, None] - margin  # position within the support
    edge = np.clip(np.minimum(x, length - x) + 0.5, 0.0, ramp)
    return 0.5 - 0.5 * np.cos(np.pi * edge / ramp)


def _dirichlet(u: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``e^{i u j}`` over ``n`` pixels centred on the group (real)."""
    if n == 1:
        return np.ones_like(u)
    half = 0.5 * u
    den = n * np.sin(half)
    small = np.abs(den) < 1e-12
    return np.where(small, 1.0, np.sin(n * half) / np.where(small, 1.0, den))


def model_to_params(ab: Aberrations, rotation_deg: float) -> np.ndarray:
    """``(C10, C12 cos 2φ12, C12 sin 2φ12, θ)``: smooth coordinates (no angle jump at C12 = 0)."""
    t = math.radians(2 * ab.phi12_deg)
    return np.array([ab.C10, ab.C12 * math.cos(t), ab.C12 * math.sin(t), rotation_deg])


def params_to_model(x: np.ndarray) -> tuple[Aberrations, float]:
    """Inverse of :func:`model_to_params`."""
    C10, a, b, rot = (float(v) for v in x)
    return Aberrations(C10=C10, C12=math.hypot(a, b), phi12_deg=0.5 * math.degrees(math.atan2(b, a))), rot


def _newton(f: Callable[[np.ndarray], float], x: np.ndarray, h: np.ndarray, free: np.ndarray, limit: np.ndarray, steps: int,
            hessian: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maximise ``f`` from ``x`` by Newton steps with central differences (``h``), steps capped at ``limit``.

    The curvature is measured once (or taken from ``hessian``) and kept: near the maximum it
    hardly changes, and each later step then costs a gradient only. Returns ``x`` and the curvature.
    """
    idx = np.flatnonzero(free)
    n = len(idx)
    hh = h[idx]
    E = np.zeros((n, len(x)))
    E[np.arange(n), idx] = hh
    f0 = f(x)
    for _ in range(steps):
        fp = np.array([f(x + e) for e in E])
        fm = np.array([f(x - e) for e in E])
        g = (fp - fm) / (2 * hh)
        if hessian is None:
            hessian = np.diag((fp - 2 * f0 + fm) / hh ** 2)
            for i in range(n):
                for j in range(i + 1, n):
                    hessian[i, j] = hessian[j, i] = (f(x + E[i] + E[j]) - fp[i] - fp[j] + f0) / (hh[i] * hh[j])
        evals, evecs = np.linalg.eigh(hessian)
        # a maximum: use the negative curvatures; a direction with none gets a capped gradient step
        neg = np.minimum(evals, -np.abs(evals).max() * 1e-3 - 1e-300)
        step = -(evecs @ ((evecs.T @ g) / neg))
        scale = np.max(np.abs(step) / limit[idx])
        if scale > 1:
            step = step / scale
        for _half in range(6):
            trial = x.copy()
            trial[idx] += step
            ft = f(trial)
            if ft > f0:
                x, f0 = trial, ft
                break
            step = step / 2
        else:
            break
        if np.all(np.abs(step) < 0.05 * hh):
            break
    return x, hessian


def fit_aberrations_direct(fit: DirectFit, start: Aberrations, rotation_deg: float, fit_rotation: bool = True,
                           rounds: int = 3, steps: int = 6) -> tuple[Aberrations, float]:
    """Maximise ``F`` (module docstring) over C10, C12, φ12 and (with ``fit_rotation``) the scan rotation.

    Parameters
    ----------
    fit : DirectFit
    start : Aberrations
        Starting point (the parallax shift fit's).
    rotation_deg : float
        Starting (or, without ``fit_rotation``, kept) scan rotation.
    rounds : int
        Re-alignments of the images by the current fit.
    steps : int
        Newton steps per round.

    Returns
    -------
    aberrations, rotation_deg
        The start unchanged when the parallax shifts reach beyond 40 % of the scan
        (the windows that follow them would keep less than a fifth of it).
    """
    x = model_to_params(start, rotation_deg)
    reach = np.abs(fit.shifts_A(x) / fit.step_A).max(axis=0)
    if np.any(reach > 0.4 * np.array(fit.images.shape[1:])):
        # the moving windows would keep less than a fifth of the scan: the shift fit stands
        return start, rotation_deg
    size = max(abs(start.C10), start.C12, 10.0)
    h = np.array([0.01 * size, 0.01 * size, 0.01 * size, 0.05])
    limit = np.array([0.2 * size, 0.2 * size, 0.2 * size, 3.0])
    free = np.array([True, True, True, bool(fit_rotation)])
    hessian = None
    for _ in range(rounds):
        fit.align(x)
        new, hessian = _newton(fit.objective, x, h, free, limit, steps, hessian)
        moved = np.abs(new - x)
        x = new
        if np.all(moved < np.array([0.002 * size, 0.002 * size, 0.002 * size, 0.01])):
            break
    return params_to_model(x)
