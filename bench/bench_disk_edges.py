"""Refining Bragg disks by their edge, on the shared abTEM Si [001] files (issue 12 item 16, issue 10).

    python bench/bench_disk_edges.py

The ground truth puts each disk at its geometric centre, the centre of its edge circle; dynamical
contrast inside a disk pulls intensity-based centres. This script measures three ways of using the
edge instead, each started from the default ``find_disks`` (``subpixel='disk'``) and judged like
``bench_strain_limits.py``: the median lattice of three homogeneous files against the truth, strain
between them, the bicrystal's pure-grain positions through the default chain, and the mean / largest
per-disk distance to the truth on the five ``si_001_*`` files.

* edge model: each disk's pixels within 2.5 px of its rim fitted by ``(a0 + a1 u + a2 v) f(|p - c| - R) + b``
  (Gauss-Newton), with ``f`` the aperture's own profile (the central beam is exactly an amplitude ramp
  1 px wide, squared) or a logistic;
* rays: the rim located along 72 rays (half height between the levels inside and outside, on a cubic
  spline) and a circle fitted with trimmed weights, three rounds;
* edge symmetry: ``FindDisksParams(subpixel='edge')``, the centre of symmetry of each disk's gradient
  magnitude (:func:`fourd_widgets.analysis.disk_refine.refine_disk_edges`).

It also prints the rim of one (220) disk (it rings), the edge stage on hand-made disks with an intensity
ramp and on 4 px disks, at 2000 electrons per probe, and the time of ``find_disks`` on the five files
with and without the edge stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
from scipy.ndimage import map_coordinates, spline_filter

import fourd_widgets as fw
from fourd_widgets.analysis.disks import find_disks_in_patterns
from fourd_widgets.analysis.peaks import PeakTable
from fourd_widgets.analysis.probe import probe_template, synthetic_disk
from fourd_widgets.analysis.strain import StrainMapParams, strain_from_lattice, strain_map

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_strain_limits import BICRYSTAL, HOMOGENEOUS, PURE, SHARED, bicrystal_figures  # noqa: E402

FILES = ("si_001_unstrained", "si_001_exx_1pct", "si_001_exx_gradient", "si_001_rot_10deg", BICRYSTAL)
APERTURE_PX = 8.127  # 2.5 mrad / 0.3076 mrad per px


def true_sites(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per position (Rx, Ry, 2, 2) true g1, g2 in px, and where they hold (pure-grain positions)."""
    with h5py.File(SHARED / f"{name}.h5", "r") as f:
        gt = f["ground_truth"]
        dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
        G = np.zeros((16, 16, 2, 2))
        ok = np.ones((16, 16), bool)
        if name == BICRYSTAL:
            frac = gt["fraction_probe_on_grainB"][()]
            for k, where in (("A", frac < PURE), ("B", frac > 1 - PURE)):
                G[where, 0] = np.asarray(gt.attrs[f"g1_invA_grain{k}"]) / dk
                G[where, 1] = np.asarray(gt.attrs[f"g2_invA_grain{k}"]) / dk
            ok = (frac < PURE) | (frac > 1 - PURE)
        elif "g1_invA_per_row" in gt:
            G[:, :, 0] = (gt["g1_invA_per_row"][()] / dk)[:, None]
            G[:, :, 1] = (gt["g2_invA_per_row"][()] / dk)[:, None]
        else:
            G[:, :, 0] = np.asarray(gt.attrs["g1_invA"]) / dk
            G[:, :, 1] = np.asarray(gt.attrs["g2_invA"]) / dk
    return G, ok


def disk_errors(name: str, peaks: PeakTable) -> np.ndarray:
    """Distance of each disk to its nearest true site, px (NaN at mixed bicrystal positions)."""
    G, ok = true_sites(name)
    rx, ry = np.unravel_index(peaks.positions(), (16, 16))
    q = np.stack([peaks.qx, peaks.qy], -1) - 64.0  # origin_px of the Si files
    err = np.full(len(q), np.nan)
    for i in range(len(q)):
        if ok[rx[i], ry[i]]:
            g = G[rx[i], ry[i]]
            err[i] = np.hypot(*(q[i] - np.round(np.linalg.solve(g.T, q[i])) @ g))
    return err


def figures(label: str, cubes: dict[str, Any], peaks: dict[str, PeakTable]) -> None:
    """Print one row: lattice errors, strain between files, bicrystal worst / RMS, disk errors."""
    lat = {}
    for n in HOMOGENEOUS:
        G, _ = true_sites(n)
        t1, t2 = G[0, 0]
        sm = strain_map(peaks[n], StrainMapParams(), cubes[n].calibration)
        g1, g2 = (np.nanmedian(g.reshape(-1, 2), axis=0) for g in (sm.g1, sm.g2))
        options = [(s1 * a, s2 * b) for a, b in ((g1, g2), (g2, g1)) for s1 in (1, -1) for s2 in (1, -1)]
        lat[n] = (min(options, key=lambda ab: np.hypot(*(ab[0] - t1)) + np.hypot(*(ab[1] - t2))), (t1, t2))
    err = {n: 100 * max(np.hypot(*(g[0] - t[0])), np.hypot(*(g[1] - t[1]))) / np.hypot(*t[0])
           for n, (g, t) in lat.items()}
    between = 0.0
    for a in HOMOGENEOUS:
        for b in HOMOGENEOUS:
            if a != b:
                got, true = strain_from_lattice(*lat[b][0], *lat[a][0]), strain_from_lattice(*lat[b][1], *lat[a][1])
                between = max(between, max(abs(float(got[c]) - float(true[c])) for c in ("exx", "eyy", "exy")))
    with h5py.File(SHARED / f"{BICRYSTAL}.h5", "r") as f:
        frac = f["ground_truth/fraction_probe_on_grainB"][()]
    worst, rms_a, rms_b = bicrystal_figures(chain_with(cubes[BICRYSTAL], peaks[BICRYSTAL]), frac)
    d = " ".join(f"{np.nanmean(e):.4f}/{np.nanmax(e):.3f}" for e in (disk_errors(n, peaks[n]) for n in FILES))
    print(f"| {label} | {' / '.join(f'{err[n]:.4f}' for n in HOMOGENEOUS)} % | {100 * between:.4f} % | "
          f"{worst:.3f} % | {rms_a:.3f} / {rms_b:.3f} % | {d} |", flush=True)


def chain_with(cube: Any, peaks: PeakTable) -> Any:
    """The default chain's strain map from these peaks."""
    from fourd_widgets.tools.calibration import CalibrationSession
    from fourd_widgets.tools.strain import StrainSession
    cal = CalibrationSession(cube, peaks).wait()
    cal.close()
    s = StrainSession(cube, peaks, cal).wait()
    s.close()
    return s.strain


def moved(peaks: PeakTable, qx: np.ndarray, qy: np.ndarray) -> PeakTable:
    return PeakTable(peaks.scan_shape, peaks.offsets, qx, qy, peaks.intensity, peaks.correlation, flags=peaks.flags)


def edge_model(patterns: np.ndarray, pidx: np.ndarray, qx: np.ndarray, qy: np.ndarray, profile: str,
               fit_radius: bool = True, band: float = 2.5, iters: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``(a0 + a1 u + a2 v) f(|p - c| - R) + b`` over the rim band of each disk (Gauss-Newton)."""
    n = len(pidx)
    h = int(np.ceil(APERTURE_PX + band + 1))
    off = np.arange(-h, h + 1)
    cx, cy = qx.astype(float).copy(), qy.astype(float).copy()
    X = (np.floor(cx + 0.5)[:, None, None] + off[None, :, None] + 0 * off[None, None, :]).reshape(n, -1)
    Y = (np.floor(cy + 0.5)[:, None, None] + 0 * off[None, :, None] + off[None, None, :]).reshape(n, -1)
    H = patterns.shape[1]
    inside = (X >= 0) & (X < H) & (Y >= 0) & (Y < H)
    img = patterns[pidx[:, None], np.clip(X, 0, H - 1).astype(int), np.clip(Y, 0, H - 1).astype(int)].astype(float)
    img /= np.maximum(img.max(1, keepdims=True), 1e-30)
    R = np.full(n, APERTURE_PX)
    a = np.zeros((n, 3))
    a[:, 0] = 1.0
    b = np.zeros(n)
    for _ in range(iters):
        dx, dy = X - cx[:, None], Y - cy[:, None]
        d = np.hypot(dx, dy) + 1e-12
        m = (np.abs(d - R[:, None]) < band) & inside
        if profile == "logistic":  # 10-90 % width 0.88 px
            f = 1.0 / (1.0 + np.exp(np.clip((d - R[:, None]) / 0.2, -50, 50)))
            fp = -f * (1 - f) / 0.2
        else:  # the aperture: amplitude ramp 1 px wide, squared
            ramp = np.clip(R[:, None] - d + 0.5, 0, 1)
            f, fp = ramp ** 2, np.where((ramp > 0) & (ramp < 1), -2 * ramp, 0.0)
        u, v = dx / APERTURE_PX, dy / APERTURE_PX
        A = a[:, :1] + a[:, 1:2] * u + a[:, 2:3] * v
        r = (img - A * f - b[:, None]) * m
        cols = [A * fp * (-dx / d) - a[:, 1:2] / APERTURE_PX * f, A * fp * (-dy / d) - a[:, 2:3] / APERTURE_PX * f]
        cols += ([-A * fp] if fit_radius else []) + [f, u * f, v * f, np.ones_like(f)]
        J = np.stack(cols, -1) * m[..., None]
        step = np.linalg.solve(np.einsum("npi,npj->nij", J, J) + 1e-9 * np.eye(J.shape[-1]),
                               np.einsum("npi,np->ni", J, r)[..., None])[..., 0]
        cx += np.clip(step[:, 0], -0.5, 0.5)
        cy += np.clip(step[:, 1], -0.5, 0.5)
        k = 2
        if fit_radius:
            R += np.clip(step[:, 2], -0.5, 0.5)
            k = 3
        a += step[:, k:k + 3]
        b += step[:, -1]
    return cx, cy


def rays(patterns: np.ndarray, pidx: np.ndarray, qx: np.ndarray, qy: np.ndarray, nray: int = 72,
         rounds: int = 3, trim: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Rim at half height along ``nray`` rays (cubic spline), then a circle fitted with trimmed weights."""
    cx, cy = qx.astype(float).copy(), qy.astype(float).copy()
    th = np.arange(nray) * 2 * np.pi / nray
    ux, uy = np.cos(th), np.sin(th)
    r0 = 8.0
    rs = np.arange(r0 - 3.0, r0 + 2.6, 0.05)
    coeffs = {p: spline_filter(patterns[p].astype(float), order=3) for p in np.unique(pidx)}
    A = np.stack([np.ones(nray), ux, uy], -1)
    for _ in range(rounds):
        rho = np.empty((len(cx), nray))
        for p, c in coeffs.items():
            sel = np.flatnonzero(pidx == p)
            X = cx[sel, None, None] + rs * ux[None, :, None]
            Y = cy[sel, None, None] + rs * uy[None, :, None]
            prof = map_coordinates(c, [X.ravel(), Y.ravel()], order=3, prefilter=False).reshape(X.shape)
            half = 0.5 * (np.median(prof[..., rs < r0 - 1.5], -1) + np.median(prof[..., rs > r0 + 1.2], -1))
            above = prof >= half[..., None]
            k = np.clip(len(rs) - 1 - np.argmax(above[..., ::-1], -1), 0, len(rs) - 2)
            hi = np.take_along_axis(prof, k[..., None], -1)[..., 0]
            lo = np.take_along_axis(prof, k[..., None] + 1, -1)[..., 0]
            rho[sel] = rs[k] + np.clip((hi - half) / np.where(hi != lo, hi - lo, 1), 0, 1) * (rs[1] - rs[0])
        w = np.ones_like(rho)
        for _ in range(3):
            AW = A[None] * w[..., None]
            sol = np.linalg.solve(np.einsum("nri,rj->nij", AW, A) + 1e-9 * np.eye(3),
                                  np.einsum("nri,nr->ni", AW, rho)[..., None])[..., 0]
            res = rho - sol @ A.T
            s = 1.4826 * np.median(np.abs(res), -1, keepdims=True) + 1e-9
            w = np.where(np.abs(res) < trim * s, 1.0, trim * s / np.abs(res))
        cx += np.clip(sol[:, 1], -1, 1)
        cy += np.clip(sol[:, 2], -1, 1)
    return cx, cy


def show_rim() -> None:
    """One (220) disk of si_001_unstrained in % of its interior: the rim rings."""
    with h5py.File(SHARED / "si_001_unstrained.h5", "r") as f:
        w = f["data"][3, 5, 78:98, 78:98].astype(float)
    print("(220) disk at (87.57, 87.57), si_001_unstrained position (3, 5), % of its interior:")
    for row in np.round(100 * w / w[8:12, 8:12].mean()).astype(int):
        print("   " + " ".join(f"{v:3d}" for v in row))


def ramp_disks() -> None:
    """Hard disks whose intensity rises by +-slope across the radius: distance to the centre, px."""
    shape, r = (96, 96), 8.0
    rng = np.random.default_rng(5)
    truth = [(48 + 26 * np.cos(a) + rng.random(), 48 + 26 * np.sin(a) + rng.random())
             for a in np.linspace(0, 2 * np.pi, 5)[:4]]
    X, Y = np.indices(shape, dtype=np.float64)
    t = probe_template(synthetic_disk(shape, r, edge_width=0))
    for slope in (0.05, 0.2, 0.6):
        pat = 50 * synthetic_disk(shape, r, (48.0, 48.0), edge_width=0)
        for c in truth:
            u = np.subtract((48, 48), c) / np.hypot(*np.subtract((48, 48), c))
            pat += synthetic_disk(shape, r, c, edge_width=0) * (1 + slope * ((X - c[0]) * u[0] + (Y - c[1]) * u[1]) / r)
        out = []
        for mode in ("auto", "edge"):
            a = find_disks_in_patterns(pat, t, fw.FindDisksParams(min_relative_intensity=0.1, subpixel=mode)).at(0)
            q = np.stack([a["qx"], a["qy"]], 1)
            out.append(np.hypot(*(q[:, None] - np.asarray(truth)[None]).transpose(2, 0, 1)).min(0).max())
        print(f"  ramp +-{slope:.2f}: largest error default {out[0]:.3f} px, subpixel='edge' {out[1]:.3f} px")


def low_dose(cubes: dict[str, Any]) -> None:
    """Median disk error at 2000 electrons per probe (Poisson, seed 0), disks within 2 px of a true site."""
    rng = np.random.default_rng(0)
    for n in ("si_001_unstrained", "si_001_rot_10deg"):
        noisy = fw.DataCube(rng.poisson(cubes[n].to_numpy() * 2000).astype(np.float32),
                            calibration=cubes[n].calibration)
        out = []
        for mode in ("auto", "edge"):
            e = disk_errors(n, fw.find_disks(noisy, fw.FindDisksParams(subpixel=mode)))
            out.append(float(np.nanmedian(e[e < 2])))
        print(f"  {n}: median default {out[0]:.3f} px, subpixel='edge' {out[1]:.3f} px")


def small_disks() -> None:
    """Three 4 px disks (hard edge) at random sub-pixel centres, as tests/analysis/test_disks.py draws them."""
    shape, r = (64, 64), 4.0
    rng = np.random.default_rng(3)
    truth = [(20 + rng.random(), 18 + rng.random()), (42 + rng.random(), 40 + rng.random()),
             (22 + rng.random(), 44 + rng.random())]
    pat = sum(synthetic_disk(shape, r, c, edge_width=0) for c in truth)
    t = probe_template(synthetic_disk(shape, r, edge_width=0))
    for mode in ("disk", "edge"):
        a = find_disks_in_patterns(pat, t, fw.FindDisksParams(subpixel=mode)).at(0)
        q = np.stack([a["qx"], a["qy"]], 1)
        err = np.hypot(*(q[:, None] - np.asarray(truth)[None]).transpose(2, 0, 1)).min(0).max()
        print(f"  subpixel={mode!r}: largest error {err:.3f} px")


def main() -> None:
    t0 = time.perf_counter()
    cubes = {n: fw.load(SHARED / f"{n}.h5") for n in FILES}
    data = {n: cubes[n].to_numpy().reshape(-1, 128, 128) for n in FILES}
    base = {n: fw.find_disks(cubes[n], fw.FindDisksParams()) for n in FILES}
    runs: list[tuple[str, Callable[[str], PeakTable]]] = [
        ("default (window correlation)", lambda n: base[n]),
        ("edge model, aperture profile, free radius",
         lambda n: moved(base[n], *edge_model(data[n], base[n].positions(), base[n].qx, base[n].qy, "aperture"))),
        ("edge model, logistic profile, free radius",
         lambda n: moved(base[n], *edge_model(data[n], base[n].positions(), base[n].qx, base[n].qy, "logistic"))),
        ("rays + robust circle", lambda n: moved(base[n], *rays(data[n], base[n].positions(), base[n].qx, base[n].qy))),
        ("edge symmetry (subpixel='edge')", lambda n: fw.find_disks(cubes[n], fw.FindDisksParams(subpixel="edge"))),
    ]
    print("| refinement | lattice error: unstrained / 1 % / rot 10° | strain between two files | bicrystal worst "
          "pure position | bicrystal RMS grain A / B | per-disk error mean/max px, 5 files |")
    print("|---|---|---|---|---|---|")
    for label, make in runs:
        figures(label, cubes, {n: make(n) for n in FILES})
    print()
    show_rim()
    print("\nhand-made disks with an intensity ramp (tests/analysis/test_disk_refine.py uses +-0.6):")
    ramp_disks()
    print("\n4 px disks:")
    small_disks()
    print("\n2000 electrons per probe:")
    low_dose(cubes)
    for mode in ("auto", "edge"):
        best = min(_timed(lambda: [fw.find_disks(cubes[n], fw.FindDisksParams(subpixel=mode)) for n in FILES])
                   for _ in range(3))
        print(f"find_disks on the five files (1280 patterns), subpixel={mode!r}: {best:.2f} s (best of 3)")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
