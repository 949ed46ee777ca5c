"""Strain accuracy at its limits (issue 10 "strain with defaults", issue 12 item 16): what moves the figures.

    python bench/bench_strain_limits.py [--part all|peers|gradient] [--venvs /work/venvs]

Two targets are still open on the shared abTEM Si [001] files, and this script measures what
was tried against them, with every default of the chain (``find_disks`` -> ``CalibrationSession``
-> ``StrainSession``) except the one changed:

* issue 12 item 16: the median lattice of ``si_001_unstrained``, ``_exx_1pct`` and ``_rot_10deg``
  within 0.02 % of the true g vectors, and strain between any two of them within 0.05 %
  (``tests/analysis/test_strain_weights.py``);
* issue 10: per-position |ε| < 0.1 % in the pure-grain positions of ``si_001_bicrystal_10deg``
  (probe fraction on the other grain below 5 %; ``tests/analysis/test_strain_defaults.py``), whose
  guards are a worst position < 0.3 % and an RMS per grain < 0.1 %.

Part 1 varies the disk refinement (``disk_corr_power``, ``disk_sigma``, the synthetic template's
edge width) and prints all of these figures per setting. Part 2 tests the "two-lattice" diagnosis of
the bicrystal: it removes from every pure-grain pattern the other grain's disks, placed at the TRUE
other lattice's sites (an upper bound for any two-lattice model fitted to the data), with the
amplitude read from the part of each such disk that lies outside the own disk, and optionally an
overlap-lens term, then runs the default chain again. Part 3 prints ε_xx along the pure rows
(it oscillates with the probe position). Part 4 (``--part peers``) puts the per-position reading in
context: the pure-grain positions' disks found by py4DSTEM 0.14.18 ``find_Bragg_disks`` (``multicorr``
with the vacuum probe's flat kernel, ``bench/peers/disks_py4dstem.py``) and by our ``find_disks``, each
fitted by one and the same lattice fit written here (disks assigned to the grain's true sites within
3 px; origin, g1, g2 by weighted least squares) and read against the median lattice of its grain, so
that a detector's common bias cancels as it does against a reference region; ``si_001_unstrained`` as
the control. Part 5 (``--part gradient``) reads issue 12 item 16's per-row target on
``si_001_exx_gradient``, whose 16 rows are each their own homogeneously strained crystal (an exact truth
per row): each row's median fitted lattice against its true g vectors, for the default refinement with
intensity and uniform weights and for the opt-in edge stage.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import fourd_widgets as fw
from fourd_widgets.analysis.probe import ProbeTemplateParams, probe_template
from fourd_widgets.analysis.strain import StrainMapParams, strain_from_lattice, strain_map
from fourd_widgets.core import DataCube
from fourd_widgets.tools.calibration import CalibrationSession
from fourd_widgets.tools.strain import StrainSession

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
HOMOGENEOUS = ("si_001_unstrained", "si_001_exx_1pct", "si_001_rot_10deg")
BICRYSTAL = "si_001_bicrystal_10deg"
PURE = 0.05
SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("disk_sigma 1.2 (band-limited window correlation)", {"disk_sigma": 1.2}),
    ("template edge 0.25 px (sharper, like the data)", {"template": ProbeTemplateParams(edge_width=0.25)}),
    ("disk_corr_power 0.5", {"disk_corr_power": 0.5}),
    ("disk_corr_power 0.2, disk_sigma 0.5", {"disk_corr_power": 0.2, "disk_sigma": 0.5}),
]


def truth_px(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """True (g1, g2) in px: {'': ...} for a single crystal, {'A': ..., 'B': ...} for the bicrystal."""
    with h5py.File(SHARED / f"{name}.h5", "r") as f:
        gt = f["ground_truth"].attrs
        dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
        if name == BICRYSTAL:
            return {k: (np.asarray(gt[f"g1_invA_grain{k}"]) / dk, np.asarray(gt[f"g2_invA_grain{k}"]) / dk)
                    for k in "AB"}
        return {"": (np.asarray(gt["g1_invA"]) / dk, np.asarray(gt["g2_invA"]) / dk)}


def median_lattice(cube: DataCube, name: str, disks: dict[str, Any]) -> tuple[tuple, tuple]:
    """The file's median fitted (g1, g2), signed and ordered like the truth, and the truth."""
    t1, t2 = truth_px(name)[""]
    sm = strain_map(fw.find_disks(cube, fw.FindDisksParams(**disks)), StrainMapParams(), cube.calibration)
    g1, g2 = (np.nanmedian(g.reshape(-1, 2), axis=0) for g in (sm.g1, sm.g2))
    return like_truth(g1, g2, t1, t2), (t1, t2)


def like_truth(g1: np.ndarray, g2: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fitted pair ordered and signed like the true pair (t1, t2)."""
    options = [(s1 * a, s2 * b) for a, b in ((g1, g2), (g2, g1)) for s1 in (1, -1) for s2 in (1, -1)]
    return min(options, key=lambda ab: np.hypot(*(ab[0] - t1)) + np.hypot(*(ab[1] - t2)))


def homogeneous_figures(cubes: dict[str, DataCube], disks: dict[str, Any]) -> tuple[dict[str, float], float]:
    """Lattice error per file (% of |g|) and the worst strain error between two files (%)."""
    lat = {n: median_lattice(cubes[n], n, disks) for n in HOMOGENEOUS}
    err = {}
    for n, ((g1, g2), (t1, t2)) in lat.items():
        err[n] = 100 * max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1)
    worst = 0.0
    for a, b in itertools.permutations(HOMOGENEOUS, 2):
        got, true = strain_from_lattice(*lat[b][0], *lat[a][0]), strain_from_lattice(*lat[b][1], *lat[a][1])
        worst = max(worst, max(abs(float(got[c]) - float(true[c])) for c in ("exx", "eyy", "exy")))
    return err, 100 * worst


def default_chain(cube: DataCube, disks: dict[str, Any]) -> Any:
    """The StrainMap of DiskTuner -> CalibrationTool -> StrainMapper with defaults (but ``disks``)."""
    peaks = fw.find_disks(cube, fw.FindDisksParams(**disks))
    cal = CalibrationSession(cube, peaks).wait()
    cal.close()
    s = StrainSession(cube, peaks, cal).wait()
    s.close()
    return s.strain


def bicrystal_figures(strain: Any, frac: np.ndarray) -> tuple[float, float, float]:
    """Worst |ε| over the pure-grain positions, and the RMS per grain (A, B), in %."""
    comps = [getattr(strain, c) for c in ("exx", "eyy", "exy")]
    pure = (frac < PURE) | (frac > 1 - PURE)
    worst = max(float(np.abs(e[pure]).max()) for e in comps)
    rms = [max(float(np.sqrt(np.mean(e[w] ** 2))) for e in comps) for w in (frac < PURE, frac > 1 - PURE)]
    return 100 * worst, 100 * rms[0], 100 * rms[1]


def remove_other_grain(data: np.ndarray, frac: np.ndarray, radius: float, lens: bool) -> np.ndarray:
    """The patterns with the other grain's disks (at the TRUE other lattice) subtracted.

    Each other-grain disk: a flat disk of ``radius`` whose height is the median of its pixels lying
    more than 1.5 px outside every own disk; with ``lens`` also the overlap with the nearest own
    disk, raised by the overlap's median excess over the own disk's other pixels (coherent
    interference of the two waves there).
    """
    lat = truth_px(BICRYSTAL)
    H, W = data.shape[2:]
    X, Y = np.indices((H, W)).astype(float)
    o = np.array([H // 2, W // 2], float)

    def sites(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
        return np.array([o + h * g1 + k * g2 for h in range(-3, 4) for k in range(-3, 4) if (h, k) != (0, 0)])

    out = data.astype(np.float32).copy()
    for rx in range(data.shape[0]):
        own, other = ("A", "B") if frac[rx].mean() < 0.5 else ("B", "A")
        so = np.vstack([sites(*lat[own]), o[None]])
        sn = [s for s in sites(*lat[other]) if 0 <= s[0] < H and 0 <= s[1] < W]
        d_own = np.min(np.hypot(X[..., None] - so[:, 0], Y[..., None] - so[:, 1]), -1)
        for ry in range(data.shape[1]):
            p = data[rx, ry]
            model = np.zeros((H, W))
            for s in sn:
                d = np.hypot(X - s[0], Y - s[1])
                outside = (d < radius - 1) & (d_own > radius + 1.5)
                if outside.sum() < 5:
                    continue
                b = float(np.median(p[outside]))
                disk = np.clip(radius + 0.5 - d, 0, 1)
                model += b * disk
                if lens:
                    j = int(np.argmin(np.hypot(*(so - s).T)))
                    dj = np.hypot(X - so[j, 0], Y - so[j, 1])
                    both, alone = (dj < radius - 1) & (d < radius - 1), (dj < radius - 1) & (d > radius + 1)
                    if both.sum() >= 5 and alone.sum() >= 5:
                        e = float(np.median(p[both]) - np.median(p[alone])) - b
                        model += e * disk * np.clip(radius + 0.5 - dj, 0, 1)
            out[rx, ry] = p - model
    return out


def lattice_fit(qx: np.ndarray, qy: np.ndarray, w: np.ndarray, g1: np.ndarray, g2: np.ndarray,
                origin: np.ndarray) -> np.ndarray | None:
    """(g1, g2) of one pattern's disks: each assigned to the nearest site of the true lattice within 3 px,
    then origin + h g1 + k g2 fitted by least squares with weights ``w``; None below 4 assigned disks."""
    hk = np.array([(h, k) for h in range(-4, 5) for k in range(-4, 5)], float)
    sites = origin + hk[:, :1] * g1 + hk[:, 1:] * g2
    pts = np.stack([qx, qy], 1)
    d = np.linalg.norm(pts[:, None] - sites[None], axis=2)
    j = d.argmin(1)
    ok = d[np.arange(len(pts)), j] < 3
    if ok.sum() < 4:
        return None
    a = np.column_stack([np.ones(ok.sum()), hk[j[ok]]])
    sw = np.sqrt(np.clip(w[ok], 1e-12, None))[:, None]
    sol = np.linalg.lstsq(a * sw, pts[ok] * sw, rcond=None)[0]
    return np.concatenate([sol[1], sol[2]])


def per_position_figures(cols: tuple, offsets: np.ndarray, frac: np.ndarray, truth: dict, origin: np.ndarray,
                         weights: str) -> tuple[float, float, int, int]:
    """Worst and median per-position |ε| (%) over the pure-grain positions, each against its grain's median
    fitted lattice, with the count above 0.1 % and the positions read."""
    qx, qy, inten = cols
    fits: dict[str, list[np.ndarray]] = {k: [] for k in truth}
    for p in range(frac.size):
        f = frac.flat[p]
        grain = ("A" if f < PURE else "B" if f > 1 - PURE else None) if len(truth) == 2 else ""
        if grain is None:
            continue
        s = slice(offsets[p], offsets[p + 1])
        w = inten[s] if weights == "intensity" else np.ones(offsets[p + 1] - offsets[p])
        g = lattice_fit(qx[s], qy[s], w, *truth[grain], origin)
        if g is not None:
            fits[grain].append(g)
    errs = []
    for g in fits.values():
        if not g:
            continue
        g = np.array(g)
        ref = np.median(g, 0)
        e = strain_from_lattice(g[:, :2], g[:, 2:], ref[:2], ref[2:])
        errs.append(np.max(np.abs([e["exx"], e["eyy"], e["exy"]]), 0))
    e = np.concatenate(errs)
    return 100 * float(e.max()), 100 * float(np.median(e)), int((e > 1e-3).sum()), e.size


def peer_figures(venvs: Path) -> None:
    """Part 4: the pure-grain positions' per-position reading, py4DSTEM's disks against ours."""
    py = venvs / "py4dstem" / "bin" / "python"
    print("| file | disks | weights | worst position | median | positions > 0.1 % |")
    print("|---|---|---|---|---|---|")
    for name in (BICRYSTAL, "si_001_unstrained"):
        with h5py.File(SHARED / f"{name}.h5", "r") as f:
            data, probe = f["data"][()], f["vacuum_probe"][()]
            origin = np.asarray(f.attrs["origin_px"], float)
            frac = (f["ground_truth/fraction_probe_on_grainB"][()] if name == BICRYSTAL
                    else np.zeros(data.shape[:2]))
        cube = fw.load(SHARED / f"{name}.h5")
        t = fw.find_disks(cube, fw.FindDisksParams())
        sources = {"fourd_widgets find_disks (defaults)": ((t.qx, t.qy, t.intensity), t.offsets)}
        if py.exists():
            with tempfile.TemporaryDirectory() as tmp:
                np.save(Path(tmp) / "cube.npy", data)
                np.save(Path(tmp) / "probe.npy", probe)
                r = subprocess.run([str(py), str(HERE / "peers" / "disks_py4dstem.py"), "--npy", f"{tmp}/cube.npy",
                                    "--probe", f"{tmp}/probe.npy", "--out", f"{tmp}/p4.npz", "--n",
                                    str(frac.size)], capture_output=True, text=True, check=True)
                run = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("FOURD_BENCH_RESULT ")][-1][19:])
                z = np.load(f"{tmp}/p4.npz")
                sources[f"py4DSTEM {run['version']} multicorr, vacuum probe"] = (
                    (z["qx"], z["qy"], z["intensity"]), np.concatenate([[0], np.cumsum(z["counts"])]))
        for label, (cols, offsets) in sources.items():
            for weights in ("intensity", "uniform"):
                worst, med, above, n = per_position_figures(cols, offsets, frac, truth_px(name), origin, weights)
                print(f"| {name} | {label} | {weights} | {worst:.3f} % | {med:.3f} % | {above} of {n} |", flush=True)


def gradient_rows() -> None:
    """Part 5: the lattice of each row of si_001_exx_gradient against its truth (% of |g|)."""
    name = "si_001_exx_gradient"
    cube = fw.load(SHARED / f"{name}.h5")
    with h5py.File(SHARED / f"{name}.h5", "r") as f:
        exx = np.asarray(f["ground_truth"].attrs["strain_exx_per_row"], float)
    g0 = truth_px("si_001_unstrained")[""]
    # F = diag(1 + exx, 1) and g' = F^-T g: only the x components shrink
    truth = [tuple(g * np.array([1 / (1 + e), 1.0]) for g in g0) for e in exx]
    print("| refinement, weights | worst row | median row | rows within 0.02 % |")
    print("|---|---|---|---|")
    for label, sub, weights in (("default, intensity (defaults)", "disk", "intensity"),
                                ("default, uniform", "disk", "uniform"),
                                ("subpixel='edge', intensity", "edge", "intensity")):
        sm = strain_map(fw.find_disks(cube, fw.FindDisksParams(subpixel=sub)), StrainMapParams(weights=weights),
                        cube.calibration)
        errs = []
        for r, (t1, t2) in enumerate(truth):
            g1, g2 = like_truth(*(np.nanmedian(g[r].reshape(-1, 2), axis=0) for g in (sm.g1, sm.g2)), t1, t2)
            errs.append(100 * max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1))
        errs = np.array(errs)
        print(f"| {label} | {errs.max():.4f} % | {np.median(errs):.4f} % | {int((errs < 0.02).sum())} of {len(errs)} |",
              flush=True)


def gradient_truth() -> list[tuple[np.ndarray, np.ndarray]]:
    """True (g1, g2) in px of each row of si_001_exx_gradient (F = diag(1 + exx, 1), g' = F^-T g)."""
    with h5py.File(SHARED / "si_001_exx_gradient.h5", "r") as f:
        exx = np.asarray(f["ground_truth"].attrs["strain_exx_per_row"], float)
    g0 = truth_px("si_001_unstrained")[""]
    return [tuple(g * np.array([1 / (1 + e), 1.0]) for g in g0) for e in exx]


def weight_figures() -> None:
    """Part 6: issue 12 item 16's figures for each lattice-fit weighting, with and without the probe fit.

    Lattices (fitted median, truth) of the 3 homogeneous files, the 16 rows of the gradient file and the
    bicrystal's two grains away from the boundary (probe fraction on the other grain < 5 %); the strain
    between two is over every ordered pair of the 19 single-crystal lattices (342 pairs).
    """
    names = HOMOGENEOUS + ("si_001_exx_gradient", BICRYSTAL)
    cubes = {n: fw.load(SHARED / f"{n}.h5") for n in names}
    with h5py.File(SHARED / f"{BICRYSTAL}.h5", "r") as f:
        frac = f["ground_truth/fraction_probe_on_grainB"][()]
    rows, grains = gradient_truth(), truth_px(BICRYSTAL)
    print("| probe_fit | weights | lattice: homogeneous (unstrained / 1 % / rot 10°) | gradient rows: worst "
          "(median, within 0.02 %) | bicrystal grain A / B | strain between two: max (median) | between the "
          "homogeneous |")
    print("|---|---|---|---|---|---|---|")
    for probe_fit in (True, False):
        peaks = {n: fw.find_disks(cubes[n], fw.FindDisksParams(probe_fit=probe_fit)) for n in names}
        for weights in ("intensity", "correlation", "uniform"):
            lat, err = {}, {}
            for n in names:
                sm = strain_map(peaks[n], StrainMapParams(weights=weights), cubes[n].calibration)
                if n in HOMOGENEOUS:
                    sel = {n: (np.ones(sm.g1.shape[:2], bool), truth_px(n)[""])}
                elif n == BICRYSTAL:
                    sel = {f"grain {k}": (frac < PURE if k == "A" else frac > 1 - PURE, grains[k]) for k in "AB"}
                else:
                    sel = {}
                    for r, t in enumerate(rows):
                        m = np.zeros(sm.g1.shape[:2], bool)
                        m[r] = True
                        sel[f"row {r}"] = (m, t)
                for key, (m, (t1, t2)) in sel.items():
                    g1, g2 = like_truth(*(np.nanmedian(g[m].reshape(-1, 2), axis=0) for g in (sm.g1, sm.g2)), t1, t2)
                    err[key] = 100 * max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1)
                    lat[key] = ((g1, g2), (t1, t2))
            single = [k for k in lat if not k.startswith("grain")]
            between = []
            for a, b in itertools.permutations(single, 2):
                got = strain_from_lattice(*lat[b][0], *lat[a][0])
                true = strain_from_lattice(*lat[b][1], *lat[a][1])
                between.append(max(abs(float(got[c]) - float(true[c])) for c in ("exx", "eyy", "exy")))
            homog = [between[i] for i, (a, b) in enumerate(itertools.permutations(single, 2))
                     if a in HOMOGENEOUS and b in HOMOGENEOUS]
            row_err = np.array([err[k] for k in lat if k.startswith("row")])
            print(f"| {probe_fit} | {weights} | {' / '.join(f'{err[n]:.4f}' for n in HOMOGENEOUS)} % | "
                  f"{row_err.max():.4f} % ({np.median(row_err):.4f} %, {int((row_err < 0.02).sum())} of "
                  f"{row_err.size}) | {err['grain A']:.4f} / {err['grain B']:.4f} % | {100 * max(between):.4f} "
                  f"({100 * np.median(between):.4f}) % | {100 * max(homog):.4f} % |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "peers", "gradient", "weights"), default="all")
    ap.add_argument("--venvs", type=Path, default=Path("/work/venvs"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.part == "weights":
        weight_figures()
        print(f"\n{time.perf_counter() - t0:.0f} s in all")
        return
    if args.part == "gradient":
        gradient_rows()
        print(f"\n{time.perf_counter() - t0:.0f} s in all")
        return
    if args.part == "peers":
        peer_figures(args.venvs)
        print(f"\n{time.perf_counter() - t0:.0f} s in all")
        return
    cubes = {n: fw.load(SHARED / f"{n}.h5") for n in HOMOGENEOUS + (BICRYSTAL,)}
    with h5py.File(SHARED / f"{BICRYSTAL}.h5", "r") as f:
        frac = f["ground_truth/fraction_probe_on_grainB"][()]
    fw.find_disks(cubes[HOMOGENEOUS[0]], fw.FindDisksParams())  # compile the kernels before timing anything
    print("| disk refinement | lattice error: unstrained / 1 % / rot 10° | strain between two files | "
          "bicrystal worst pure position | bicrystal RMS grain A / B |")
    print("|---|---|---|---|---|")
    for label, disks in SETTINGS:
        err, between = homogeneous_figures(cubes, disks)
        worst, rms_a, rms_b = bicrystal_figures(default_chain(cubes[BICRYSTAL], disks), frac)
        lat = " / ".join(f"{err[n]:.4f} %" for n in HOMOGENEOUS)
        print(f"| {label} | {lat} | {between:.4f} % | {worst:.3f} % | {rms_a:.3f} / {rms_b:.3f} % |", flush=True)

    cube = cubes[BICRYSTAL]
    data = cube.to_numpy()
    radius = probe_template(cube).radius
    print("\nbicrystal, the other grain's disks removed at the true lattice (default chain):")
    for lens in (False, True):
        cleaned = DataCube(remove_other_grain(data, frac, radius, lens), calibration=cube.calibration)
        worst, rms_a, rms_b = bicrystal_figures(default_chain(cleaned, {}), frac)
        what = "disks + overlap lens" if lens else "disks"
        print(f"  {what}: worst pure position {worst:.3f} %, RMS grain A / B {rms_a:.3f} / {rms_b:.3f} %")

    s = default_chain(cube, {})
    print("\nε_xx (%) along the pure rows (scan y = 0..15, 1 Å steps):")
    for rx in np.flatnonzero((frac < PURE).all(1) | (frac > 1 - PURE).all(1)):
        print(f"  row {rx:2d}: " + " ".join(f"{v:+.3f}" for v in 100 * s.exx[rx]))
    print()
    peer_figures(args.venvs)
    print()
    gradient_rows()
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
