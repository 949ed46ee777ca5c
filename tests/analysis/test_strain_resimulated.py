"""Issue 12 item 16's per-row target where the data carry their truth: the gradient file re-simulated.

The shared ``si_001_*`` files record how abTEM made them (root attributes). The worker
``bench/peers/simulate_si_abtem.py`` rebuilds the same crystals (the atom counts agree) and simulates
chosen probe positions with abTEM 1.0.11 (a test dependency), here without frozen phonons so that the 16
patterns of a row are one crystal's and nothing else. Each crystal is cut to a periodic 64 Å box, so its
planes jump at the box edge; the shared scan (x, y = 24-39 Å) lies 24-32 Å from it. Read with every
default (``find_disks``, ``strain_map``):

* at the box centre every row of the gradient is within the issue's 0.02 % of its true g vectors, which
  is what the shipped file's strict xfail (``test_strain_weights.py``) asks of its rows;
* closer to the seam the same crystal reads differently, by more than that target at the file's first
  scanned row (24 Å) and by 0.2 % at 16 Å: the shipped rows carry it, together with the draw of their four
  frozen-phonon configurations (``python bench/bench_strain_resimulated.py``, bench/RESULTS.md);
* the bicrystal's grains are 32 Å wide, and even their centres read beyond the target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.strain import StrainMapParams, strain_map

from .test_strain_weights import LATTICE_TARGET, like_truth

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

WORKER = Path(__file__).resolve().parents[2] / "bench" / "peers" / "simulate_si_abtem.py"
SEAM_X = (16.0, 24.0, 32.0)   # distance to the box edge: 16, 24 (the file's first row), 32 Å (the centre)


@pytest.fixture(scope="module")
def resimulated(shared_data, tmp_path_factory):
    """Patterns and atom counts: the gradient's 16 row crystals at the box centre (16 positions each), the
    row-13 crystal at ``SEAM_X``, the unstrained crystal at the shipped file's first 16 positions, and the
    bicrystal at its grains' centres (x = 16 and 48 Å, y = 32 Å)."""
    with h5py.File(shared_data / "si_001_exx_gradient.h5", "r") as f:
        exx = [float(e) for e in f["ground_truth"].attrs["strain_exx_per_row"]]
    jobs = [{"kind": "crystal", "fp": 0, "exx": e, "positions": [[32.0, 24.0 + j] for j in range(16)]} for e in exx]
    jobs.append({"kind": "crystal", "fp": 0, "exx": exx[13], "positions": [[x, 32.0] for x in SEAM_X]})
    jobs.append({"kind": "crystal", "fp": 0, "positions": [[24.0, 24.0 + j] for j in range(16)]})
    jobs.append({"kind": "bicrystal", "fp": 0, "positions": [[16.0, 32.0], [48.0, 32.0]]})
    tmp = tmp_path_factory.mktemp("resimulated")
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, str(WORKER), "--jobs", str(tmp / "jobs.json"), "--out",
                           str(tmp / "patterns.npy")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    line = [s for s in done.stdout.splitlines() if s.startswith("FOURD_BENCH_RESULT ")][-1]
    pats = np.load(tmp / "patterns.npy")
    return {"rows": pats[:256], "seam": pats[256:256 + len(SEAM_X)], "unstrained": pats[256 + len(SEAM_X):-2],
            "bicrystal": pats[-2:], "atoms": json.loads(line.split(" ", 1)[1])["num_atoms"], "exx": exx}


def _truths(shared_data, exx):
    with h5py.File(shared_data / "si_001_unstrained.h5", "r") as f:
        g0 = (np.asarray(f.attrs["g1_px"], float), np.asarray(f.attrs["g2_px"], float))
    return [tuple(g * np.array([1 / (1 + e), 1.0]) for g in g0) for e in exx]   # F = diag(1 + exx, 1)


def _lattices(shared_data, patterns, probe_fit=True):
    cal = fw.load(shared_data / "si_001_unstrained.h5").calibration   # one detector for every Si file
    cube = fw.DataCube(patterns[None].astype(np.float32), calibration=cal)
    sm = strain_map(fw.find_disks(cube, fw.FindDisksParams(probe_fit=probe_fit)), StrainMapParams(), cal)
    return sm.g1[0], sm.g2[0]


def test_the_re_simulation_is_the_shipped_experiment(shared_data, resimulated):
    """Same crystals (atom counts) and, but for the phonons, the same patterns: the shipped first row against
    its re-simulation without phonons differs by 0.49 % (relative L2 of the whole patterns, measured; the
    phonons' diffuse scattering and Debye-Waller damping, 11 % of the diffracted disks alone), while the
    detector crop moved by one pixel would differ by 32 %."""
    with h5py.File(shared_data / "si_001_exx_gradient.h5", "r") as f:
        assert resimulated["atoms"][0] == int(f.attrs["num_atoms"])
    with h5py.File(shared_data / "si_001_unstrained.h5", "r") as f:
        assert resimulated["atoms"][-2] == int(f.attrs["num_atoms"])
        shipped = f["data"][0]
    again = resimulated["unstrained"]
    assert np.linalg.norm(again - shipped) / np.linalg.norm(shipped) < 0.01


def test_gradient_rows_within_the_target_at_the_box_centre(shared_data, resimulated):
    """Each row's lattice, the median of its 16 positions, within 0.02 % of the row's truth (measured
    worst row 0.012 %, against 0.051 % in the shipped file)."""
    g1, g2 = _lattices(shared_data, resimulated["rows"])
    errs = []
    for r, (t1, t2) in enumerate(_truths(shared_data, resimulated["exx"])):
        m1, m2 = like_truth(*(np.nanmedian(g[16 * r:16 * (r + 1)], axis=0) for g in (g1, g2)), t1, t2)
        errs.append(max(np.hypot(*(m1 - t1)), np.hypot(*(m2 - t2))) / np.hypot(*t1))
    assert max(errs) < LATTICE_TARGET, np.round(np.array(errs) * 100, 4)


@pytest.mark.parametrize("probe_fit", [True, False])
def test_the_box_seam_moves_the_reading_of_one_crystal(shared_data, resimulated, probe_fit):
    """The row-13 crystal (e_xx 1.73 %) read at 16, 24 and 32 Å from the box edge. Measured g_x errors:
    defaults -0.211 / -0.042 / -0.010 %, correlation alone -0.186 / +0.006 / +0.020 %: at 16 Å both move by
    about 0.2 %, at the file's first row the defaults by 0.03 %, beyond the target."""
    t1, t2 = _truths(shared_data, resimulated["exx"])[13]
    g1, g2 = _lattices(shared_data, resimulated["seam"], probe_fit)
    gx = [float(like_truth(g1[i], g2[i], t1, t2)[0][0] - t1[0]) / np.hypot(*t1) for i in range(len(SEAM_X))]
    assert abs(gx[0] - gx[2]) > 5 * LATTICE_TARGET
    if probe_fit:
        assert abs(gx[1] - gx[2]) > LATTICE_TARGET


def test_the_bicrystal_s_grain_centres_are_not_away_from_a_boundary(shared_data, resimulated):
    """The bicrystal's grains are 32 Å wide between the boundary (x = 32 Å) and the periodic box edge, so a
    grain's centre is 16 Å from both. Read there without phonons, with defaults, grain A is 0.036 % and grain
    B 0.058 % off (measured): no position of this box is "away from the boundary" at the issue's 0.02 %."""
    with h5py.File(shared_data / "si_001_bicrystal_10deg.h5", "r") as f:
        assert resimulated["atoms"][-1] == int(f.attrs["num_atoms"])
        gt = f["ground_truth"].attrs
        dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
        truth = {k: (np.asarray(gt[f"g1_invA_grain{k}"]) / dk, np.asarray(gt[f"g2_invA_grain{k}"]) / dk) for k in "AB"}
    g1, g2 = _lattices(shared_data, resimulated["bicrystal"])
    for i, grain in enumerate("AB"):
        t1, t2 = truth[grain]
        m1, m2 = like_truth(g1[i], g2[i], t1, t2)
        assert max(np.hypot(*(m1 - t1)), np.hypot(*(m2 - t2))) / np.hypot(*t1) > LATTICE_TARGET, grain
