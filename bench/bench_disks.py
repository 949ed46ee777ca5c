"""Bragg disk detection: fourd_widgets vs py4DSTEM 0.14.18 (multicorr, upsample 16).

    python bench/bench_disks.py [--py4dstem-n 256] [--venvs /work/venvs]

Builds a 128x128 scan of 128x128 patterns by tiling the 256 patterns of
../shared/data/si_001_unstrained.h5 (8x8 times) with Poisson noise at 2e5
electrons per probe (cached as .npy in /tmp/fourd_bench), runs ``fw.find_disks``
on the whole cube (2 threads, ``subpixel='disk'``) and py4DSTEM's ``find_Bragg_disks`` as a
subprocess on the first ``--py4dstem-n`` patterns (its time is per pattern, so
the ratio is patterns/second against patterns/second); both report the fastest of 3
rounds, timed in alternation, because the machine is shared and its load varies, with the same template
(the file's vacuum probe, 'flat' kernel), correlation smoothing 2 px, edge 8 px,
spacing 8 px, 2 % relative to the second peak. Accuracy of both on the clean
si_001_unstrained file: median distance to the ground-truth disk centres.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

import fourd_widgets as fw
from fourd_widgets.analysis.disks import FindDisksParams, find_disks, find_disks_in_patterns
from fourd_widgets.analysis.probe import probe_template

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def truth_points(f):
    o = np.asarray(f.attrs["origin_px"], float)
    g1, g2 = np.asarray(f.attrs["g1_px"]), np.asarray(f.attrs["g2_px"])
    pts = np.array([o + h * g1 + k * g2 for h in range(-4, 5) for k in range(-4, 5)])
    return pts[((pts >= 8.1) & (pts <= 127 - 8.1)).all(1)]


def median_error(qx, qy, pts):
    q = np.stack([qx, qy], 1)
    d = np.hypot(*(q[:, None] - pts[None]).transpose(2, 0, 1)).min(1)
    return float(np.median(d[d <= 2])), int((d > 2).sum())


def tuner_times(six: np.ndarray, tmpl, params: FindDisksParams, repeats: int = 20) -> tuple[float, float]:
    """Live tuner budget on six patterns: (filter change = detect only, correlation change), median ms."""
    from fourd_widgets.analysis.disks import correlate_patterns

    corr = correlate_patterns(six, tmpl, params, workers=2)
    corr.detect(params)  # warm-up
    a, b = [], []
    for k in range(repeats):
        p = params.replace(min_relative_intensity=0.01 + 0.001 * k)
        t0 = time.perf_counter()
        corr.detect(p)
        a.append(time.perf_counter() - t0)
        p = params.replace(corr_power=0.5 + 0.02 * k, sigma_cc=1.5 + 0.05 * k)
        t0 = time.perf_counter()
        correlate_patterns(six, tmpl, p, workers=2).detect(p)
        b.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(a)), 1e3 * float(np.median(b))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--py4dstem-n", type=int, default=256)
    ap.add_argument("--venvs", default=os.environ.get("FOURD_BENCH_VENVS", "/work/venvs"))
    ap.add_argument("--cache-dir", default="/tmp/fourd_bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-probe-fit", action="store_true", help="the window correlation alone (probe_fit=False), "
                    "to measure what the default probe fit costs")
    args = ap.parse_args()
    cache = Path(args.cache_dir); cache.mkdir(parents=True, exist_ok=True)
    with h5py.File(SHARED / "si_001_unstrained.h5", "r") as f:
        data = f["data"][()]
        vac = f["vacuum_probe"][()]
        pts = truth_points(f)
    npy = cache / "disks_128x128x128x128.npy"
    if not npy.exists():
        big = np.tile(data, (8, 8, 1, 1))
        big = np.random.default_rng(0).poisson(big * 2e5).astype(np.float32) / np.float32(2e5)
        np.save(npy, big)
    np.save(cache / "disks_probe.npy", vac)
    big = np.load(npy)
    cube = fw.DataCube(big)
    tmpl = probe_template(vac)
    params = FindDisksParams(edge_boundary=8.0, min_peak_spacing=8.0, probe_fit=not args.no_probe_fit)
    find_disks(fw.DataCube(big[:2]), params, template=tmpl, workers=2)  # JIT warm-up (cached on disk)
    py = Path(args.venvs) / "py4dstem" / "bin" / "python"
    peer = [str(py), str(HERE / "peers" / "disks_py4dstem.py"), "--probe", str(cache / "disks_probe.npy")]

    def run_peer(npy_path: Path, out: str, n: int) -> dict:
        r = subprocess.run(peer + ["--npy", str(npy_path), "--out", str(cache / out), "--n", str(n)],
                           capture_output=True, text=True, check=True)
        return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("FOURD_BENCH_RESULT ")][-1][19:])

    # The machine is shared and its load varies: the two are timed in alternation, 3 rounds,
    # and each reports its fastest round (the least disturbed one).
    times, cpus, peer_runs = [], [], []
    for _ in range(args.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        table = find_disks(cube, params, template=tmpl, workers=2)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if py.exists():
            peer_runs.append(run_peer(npy, "p4_peaks.npz", args.py4dstem_n))
    ours = big.shape[0] * big.shape[1] / min(times)
    tuner = tuner_times(data.reshape(-1, 128, 128)[[0, 37, 74, 111, 148, 255]], tmpl, params)
    clean = find_disks_in_patterns(data.reshape(-1, 128, 128), tmpl, params)
    ours_err = median_error(clean.qx, clean.qy, pts)
    # py4DSTEM: time on the first n patterns of the tiled cube, accuracy on the clean file
    res = {}
    if peer_runs:
        res = min(peer_runs, key=lambda r: r["seconds"] / r["patterns"])
        np.save(cache / "disks_clean.npy", data)
        run_peer(cache / "disks_clean.npy", "p4_clean.npz", 256)
        z = np.load(cache / "p4_clean.npz")
        res["clean_error"] = median_error(z["qx"], z["qy"], pts)
    print(f"fourd_widgets: {ours:.0f} patterns/s (best of {len(times)}: {min(times):.2f} s for {big.shape[0] * big.shape[1]}), "
          f"{len(table)} peaks; clean median error {ours_err[0]:.4f} px, spurious {ours_err[1]}")
    print(f"live tuner, 6 patterns: filter change (detect) {tuner[0]:.1f} ms, correlation change "
          f"(correlate + detect) {tuner[1]:.1f} ms (median of 20; budget 100 ms)")
    if res:
        p4 = res["patterns"] / res["seconds"]
        print(f"py4DSTEM {res['version']}: {p4:.1f} patterns/s ({res['seconds']:.1f} s for {res['patterns']}); "
              f"clean median error {res['clean_error'][0]:.4f} px, spurious {res['clean_error'][1]}")
        print(f"ratio: {ours / p4:.1f}x")
        # CPU time per pattern (all threads) hardly depends on how busy the shared machine is, while
        # the wall-clock ratio does: another job on one of the 2 cores halves our 2-thread speed.
        ours_cpu, p4_cpu = min(cpus) / (big.shape[0] * big.shape[1]), res["cpu_seconds"] / res["patterns"]
        print(f"CPU time per pattern: fourd_widgets {1e3 * ours_cpu:.3f} ms, py4DSTEM {1e3 * p4_cpu:.2f} ms: "
              f"{p4_cpu / ours_cpu:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
