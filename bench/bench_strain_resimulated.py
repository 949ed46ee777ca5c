"""What the shared Si files' own construction does to issue 12 item 16's per-row and per-grain targets.

    bash bench/setup_peers.sh abtem
    python bench/bench_strain_resimulated.py [--venvs /work/venvs] [--many-phonons 32]

The shared ``si_001_*.h5`` files record how they were simulated (abTEM 1.0.11, root attributes):
``bench/peers/simulate_si_abtem.py`` rebuilds the same crystals (the atom counts agree) and
re-simulates chosen probe positions in the abTEM venv; this script reads every pattern set with
``find_disks`` and ``strain_map`` at their defaults and prints lattice errors in % of |g| against the
true g vectors (target 0.02 %). Accuracies only, no times.

* Part 1, the frozen-phonon draw: ``si_001_unstrained`` as shipped, re-simulated with the same settings
  (another draw of its 4 phonon configurations), without phonons (and with ``--many-phonons N``
  configurations): whole file and each scan row.
* Part 2, the box seam: each crystal is cut to a periodic 64 Å box, so at the box edge its planes jump.
  Without phonons, one probe position at a time, the lattice read at x = 8 ... 56 Å (y = 32 Å) for the
  gradient's row-13 crystal (e_xx = 1.73 %) and the unstrained one. The scanned rows lie at x = 24-39 Å.
* Part 3, the gradient's rows: each row's crystal without phonons at its scanned x (24 + row Å) and
  at the box centre (x = 32 Å), and with the files' 4 phonon configurations at the centre
  (``--many-phonons N``: also N configurations at the scanned x).
* Part 4, the bicrystal: its two grains are 32 Å wide between the boundary at x = 32 Å and the box
  edge; a sweep of x = 2 ... 62 Å without phonons, each position read against its own grain's truth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import fourd_widgets as fw
from fourd_widgets.analysis.strain import StrainMapParams, strain_map

from bench_strain_limits import SHARED, gradient_truth, like_truth, truth_px

HERE = Path(__file__).resolve().parent
SWEEP_X = [8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 56.0]


def simulate(jobs: list[dict[str, Any]], venvs: Path) -> tuple[np.ndarray, list[int]]:
    """Run the abTEM worker on ``jobs``; (P, 128, 128) patterns and the atom count of each job."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "jobs.json", Path(tmp) / "patterns.npy"
        spec.write_text(json.dumps(jobs))
        done = subprocess.run([str(venvs / "abtem" / "bin" / "python"), str(HERE / "peers" / "simulate_si_abtem.py"),
                               "--jobs", str(spec), "--out", str(out)], capture_output=True, text=True, check=True)
        line = [s for s in done.stdout.splitlines() if s.startswith("FOURD_BENCH_RESULT ")][-1]
        return np.load(out), json.loads(line.split(" ", 1)[1])["num_atoms"]


def lattices(patterns: np.ndarray, probe_fit: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-pattern fitted (g1, g2) in px, each (P, 2), with the defaults (``probe_fit`` aside)."""
    cube = fw.load(SHARED / "si_001_unstrained.h5")   # the shared detector calibration
    stack = fw.DataCube(patterns[None].astype(np.float32), calibration=cube.calibration)
    sm = strain_map(fw.find_disks(stack, fw.FindDisksParams(probe_fit=probe_fit)), StrainMapParams(),
                    cube.calibration)
    return sm.g1[0], sm.g2[0]


def error(g1: np.ndarray, g2: np.ndarray, truth: tuple[np.ndarray, np.ndarray]) -> float:
    """Lattice error in % of |g|: the larger of the two vectors' distances to the truth (medians over P)."""
    t1, t2 = truth
    m1, m2 = like_truth(np.nanmedian(np.atleast_2d(g1), 0), np.nanmedian(np.atleast_2d(g2), 0), t1, t2)
    return 100 * max(np.hypot(*(m1 - t1)), np.hypot(*(m2 - t2))) / np.hypot(*t1)


def gx_error(g1: np.ndarray, g2: np.ndarray, truth: tuple[np.ndarray, np.ndarray]) -> float:
    """Signed error of g1's x component in % of |g| (the strained direction)."""
    t1, t2 = truth
    m1, _ = like_truth(g1, g2, t1, t2)
    return 100 * float(m1[0] - t1[0]) / np.hypot(*t1)


def rows(patterns: np.ndarray, truths: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per-row lattice error (%) of a (16 rows x 16 positions) set, each row against its truth."""
    g1, g2 = lattices(patterns)
    per = len(patterns) // len(truths)
    return np.array([error(g1[r * per:(r + 1) * per], g2[r * per:(r + 1) * per], t) for r, t in enumerate(truths)])


def summary(label: str, errs: np.ndarray) -> None:
    print(f"| {label} | {errs.max():.4f} % | {np.median(errs):.4f} % | {int((errs < 0.02).sum())} of {errs.size} |",
          flush=True)


def grid(x0: float, y0: float) -> list[list[float]]:
    return [[x0 + i, y0 + j] for i in range(16) for j in range(16)]


def part_phonons(venvs: Path, many: int) -> None:
    name = "si_001_unstrained"
    with h5py.File(SHARED / f"{name}.h5", "r") as f:
        shipped, atoms = f["data"][()].reshape(-1, 128, 128), int(f.attrs["num_atoms"])
    again, n4 = simulate([{"kind": "crystal", "fp": 4, "positions": grid(24, 24)}], venvs)
    still, _ = simulate([{"kind": "crystal", "fp": 0, "positions": grid(24, 24)}], venvs)
    sets = [("as shipped (4 phonon configurations)", shipped),
            ("re-simulated, same settings (another draw of 4)", again),
            ("re-simulated without phonons", still)]
    if many:
        sets.append((f"re-simulated with {many} phonon configurations",
                     simulate([{"kind": "crystal", "fp": many, "positions": grid(24, 24)}], venvs)[0]))
    rel = np.linalg.norm(again - shipped) / np.linalg.norm(shipped)
    print(f"\nPart 1: {name}, atoms {n4[0]} (file {atoms}); re-simulated vs shipped patterns: relative L2 {rel:.4f}")
    print("| patterns | whole file | worst row | median row | rows within 0.02 % |")
    print("|---|---|---|---|---|")
    truth = truth_px(name)[""]
    for label, pats in sets:
        g1, g2 = lattices(pats)
        r = np.array([error(g1[i * 16:(i + 1) * 16], g2[i * 16:(i + 1) * 16], truth) for i in range(16)])
        print(f"| {label} | {error(g1, g2, truth):.4f} % | {r.max():.4f} % | {np.median(r):.4f} % | "
              f"{int((r < 0.02).sum())} of 16 |", flush=True)


def part_seam(venvs: Path) -> None:
    with h5py.File(SHARED / "si_001_exx_gradient.h5", "r") as f:
        exx = float(f["ground_truth"].attrs["strain_exx_per_row"][13])
    pos = [[x, 32.0] for x in SWEEP_X]
    pats, _ = simulate([{"kind": "crystal", "fp": 0, "exx": exx, "positions": pos},
                        {"kind": "crystal", "fp": 0, "positions": pos}], venvs)
    truths = {"row-13 crystal (e_xx 1.73 %)": gradient_truth()[13], "unstrained": truth_px("si_001_unstrained")[""]}
    print("\nPart 2: signed g_x error (% of |g|) against the probe's x, no phonons, y = 32 Å "
          "(distance to the box edge in brackets)")
    print("| crystal | refinement | " + " | ".join(f"{x:.0f} Å ({min(x, 64 - x):.0f})" for x in SWEEP_X) + " |")
    print("|---|---|" + "---|" * len(SWEEP_X))
    for k, (label, truth) in enumerate(truths.items()):
        block = pats[k * len(pos):(k + 1) * len(pos)]
        for fit in (True, False):
            g1, g2 = lattices(block, probe_fit=fit)
            errs = [gx_error(g1[i], g2[i], truth) for i in range(len(pos))]
            print(f"| {label} | {'defaults' if fit else 'probe_fit=False'} | "
                  + " | ".join(f"{e:+.4f}" for e in errs) + " |", flush=True)


def part_rows(venvs: Path, many: int) -> None:
    with h5py.File(SHARED / "si_001_exx_gradient.h5", "r") as f:
        exx = [float(e) for e in f["ground_truth"].attrs["strain_exx_per_row"]]
        shipped = f["data"][()].reshape(-1, 128, 128)
    truths = gradient_truth()

    def jobs(fp: int, centre: bool) -> list[dict[str, Any]]:
        return [{"kind": "crystal", "fp": fp, "exx": e,
                 "positions": [[32.0 if centre else 24.0 + r, 24.0 + j] for j in range(16)]}
                for r, e in enumerate(exx)]

    print("\nPart 3: si_001_exx_gradient, each row's lattice (median of its 16 positions) against the row's truth")
    print("| patterns | worst row | median row | rows within 0.02 % |")
    print("|---|---|---|---|")
    summary("as shipped (scanned x = 24 + row Å, 4 phonon configurations)", rows(shipped, truths))
    summary("re-simulated at the scanned x, no phonons", rows(simulate(jobs(0, False), venvs)[0], truths))
    summary("re-simulated at the box centre (x = 32 Å), no phonons", rows(simulate(jobs(0, True), venvs)[0], truths))
    summary("re-simulated at the box centre, 4 phonon configurations",
            rows(simulate(jobs(4, True), venvs)[0], truths))
    if many:
        summary(f"re-simulated at the scanned x, {many} phonon configurations",
                rows(simulate(jobs(many, False), venvs)[0], truths))


def part_bicrystal(venvs: Path) -> None:
    xs = np.arange(2.0, 63.0, 2.0)
    pats, atoms = simulate([{"kind": "bicrystal", "fp": 0, "positions": [[x, 32.0] for x in xs]}], venvs)
    with h5py.File(SHARED / "si_001_bicrystal_10deg.h5", "r") as f:
        shipped_atoms = int(f.attrs["num_atoms"])
    g1, g2 = lattices(pats)
    truths = truth_px("si_001_bicrystal_10deg")
    print(f"\nPart 4: the bicrystal re-simulated without phonons (atoms {atoms[0]}, file {shipped_atoms}), "
          "y = 32 Å; each position against its own grain")
    print("| distance to the nearest boundary (Å) | grain A: worst / best | grain B: worst / best |")
    print("|---|---|---|")
    dist = np.minimum(np.abs(xs - 32.0), np.minimum(xs, 64.0 - xs))
    for d in sorted(set(dist.tolist())):
        cells = []
        for grain, inside in (("A", xs < 32.0), ("B", xs >= 32.0)):
            sel = np.flatnonzero(inside & (dist == d))
            errs = [error(g1[i], g2[i], truths[grain]) for i in sel]
            cells.append(f"{max(errs):.3f} / {min(errs):.3f} %" if errs else "-")
        print(f"| {d:.0f} | {cells[0]} | {cells[1]} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venvs", type=Path, default=Path("/work/venvs"))
    ap.add_argument("--many-phonons", type=int, default=0,
                    help="also N phonon configurations (parts 1 and 3, at the scanned positions)")
    ap.add_argument("--part", choices=("all", "phonons", "seam", "rows", "bicrystal"), default="all")
    args = ap.parse_args()
    if args.part in ("all", "phonons"):
        part_phonons(args.venvs, args.many_phonons)
    if args.part in ("all", "seam"):
        part_seam(args.venvs)
    if args.part in ("all", "rows"):
        part_rows(args.venvs, args.many_phonons)
    if args.part in ("all", "bicrystal"):
        part_bicrystal(args.venvs)


if __name__ == "__main__":
    main()
