"""Low-dose strain (issue 13): the whole-pattern lattice fit against py4DSTEM's disk detection, and its figures per dose.

    python bench/bench_lowdose.py [--venvs /work/venvs] [--seeds 3]

Speed: the 256 patterns of ../shared/data/si_001_exx_1pct.h5 at 2000 e⁻ per probe (Poisson,
``default_rng(0)``): ``fw.whole_pattern_fit`` on the whole cube (2 threads, after a warm-up, fastest
of 3) against py4DSTEM 0.14.18 ``find_Bragg_disks(subpixel='multicorr', upsample_factor=16)`` on the
same patterns (bench/peers/disks_py4dstem.py, the parameters of bench_disks.py, fastest of 3), per
pattern. The fit includes its start (mean pattern, its disks and its fit); py4DSTEM's figure is disk
detection alone, before any lattice fit.

Accuracy per dose (500, 2000, 1e4 e⁻; seeds 0..n-1): mean ε_xx error, per-position scatter (std over
seeds, RMS over positions), reported σ (RMS) and the Cramér-Rao bound (RMS over every fourth
position), reference = the noise-free fit of si_001_unstrained.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import fourd_widgets as fw
from fourd_widgets.analysis.lattice_fit import WholePatternFitParams, lattice_cramer_rao_bound, whole_pattern_fit
from fourd_widgets.analysis.probe import ProbeTemplateParams, probe_template
from fourd_widgets.core import DataCube

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venvs", default=os.environ.get("FOURD_BENCH_VENVS", "/work/venvs"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="speed rounds, ours then py4DSTEM in each (a shared "
                    "machine's load changes from minute to minute: compare within a round)")
    args = ap.parse_args()
    cube0, t0 = fw.datasets.load_shared("si_001_unstrained")
    cube, truth = fw.datasets.load_shared("si_001_exx_1pct")
    tmpl = probe_template(t0["vacuum_probe"], ProbeTemplateParams(source="vacuum_image"))
    ref = whole_pattern_fit(cube0, WholePatternFitParams(counts_per_unit=2000.0), template=tmpl)
    data = np.asarray(cube.read(slice(None), slice(None)), np.float64)
    counts = np.random.default_rng(0).poisson(data * 2000.0).astype(np.float32)
    low = DataCube(counts, calibration=cube.calibration)

    whole_pattern_fit(low, template=tmpl, reference=ref, workers=2)  # compile and warm up
    for rnd in range(args.rounds):
        ours = []
        for _ in range(3):
            t = time.perf_counter()
            whole_pattern_fit(low, template=tmpl, reference=ref, workers=2)
            ours.append(time.perf_counter() - t)
        ms_ours = 1e3 * min(ours) / 256
        print(f"round {rnd + 1}: whole_pattern_fit: {ms_ours:.2f} ms per pattern (2 threads, fastest of 3)")
        if args.skip_peer:
            continue
        py = Path(args.venvs) / "py4dstem" / "bin" / "python"
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "cube.npy", counts)
            np.save(Path(tmp) / "probe.npy", t0["vacuum_probe"])
            r = subprocess.run([str(py), str(HERE / "peers" / "disks_py4dstem.py"), "--npy", str(Path(tmp) / "cube.npy"),
                                "--probe", str(Path(tmp) / "probe.npy"), "--out", str(Path(tmp) / "p.npz"), "--n", "256",
                                "--repeats", "3"], capture_output=True, text=True, check=True)
        line = next(x for x in r.stdout.splitlines() if x.startswith("FOURD_BENCH_RESULT "))
        peer = json.loads(line.split(" ", 1)[1])
        ms_peer = 1e3 * peer["seconds"] / peer["patterns"]
        print(f"round {rnd + 1}: py4DSTEM {peer['version']} find_Bragg_disks multicorr: {ms_peer:.2f} ms per pattern; "
              f"ratio {ms_peer / ms_ours:.1f}x (load average {os.getloadavg()[0]:.1f})", flush=True)
    if args.skip_accuracy:
        return

    dk = cube.calibration.reciprocal_step
    g1, g2 = np.asarray(truth["g1_invA"]) / dk, np.asarray(truth["g2_invA"]) / dk
    print("| e⁻/probe | mean ε_xx − 1 % | scatter ε_xx | reported σ | Cramér-Rao bound | scatter / bound | valid |")
    print("|---|---|---|---|---|---|---|")
    for dose in (500.0, 2000.0, 1e4):
        maps = [whole_pattern_fit(DataCube(np.random.default_rng(s).poisson(data * dose).astype(np.float32),
                                           calibration=cube.calibration), template=tmpl, reference=ref, workers=2)
                for s in range(args.seeds)]
        ex = np.stack([m.exx for m in maps])
        se = np.stack([m.sigma_exx for m in maps])
        scatter = float(np.sqrt(np.nanmean(np.nanvar(ex, axis=0, ddof=1))))
        b = [lattice_cramer_rao_bound(data[i, j], tmpl, cube.calibration.origin, g1, g2, dose).sigma["sigma_exx"]
             for i in range(0, 16, 4) for j in range(0, 16, 4)]
        bound = float(np.sqrt(np.mean(np.square(b))))
        valid = float(np.mean([1 - m.mask.mean() for m in maps]))
        print(f"| {dose:g} | {np.nanmean(ex) - 0.01:+.1e} | {scatter:.2e} | {np.sqrt(np.nanmean(se ** 2)):.2e} | "
              f"{bound:.2e} | {scatter / bound:.2f} | {valid:.3f} |")


if __name__ == "__main__":
    main()
