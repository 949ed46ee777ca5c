"""Per-disk refinement (subpixel='disk') and the early-exit peak selection, on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.disk_refine import refine_disks, window_mask
from fourd_widgets.analysis.disks import FindDisksParams, find_disks_in_patterns
from fourd_widgets.analysis.probe import probe_template, synthetic_disk
from fourd_widgets.kernels import disks as K

SHAPE = (96, 96)
R = 8.0


def ramp_disk(centre, towards, slope):
    """Hard-edged disk whose intensity rises linearly towards ``towards`` (like dynamical contrast)."""
    d = synthetic_disk(SHAPE, R, centre, edge_width=0)
    X, Y = np.indices(SHAPE, dtype=np.float64)
    u = np.subtract(towards, centre) / np.hypot(*np.subtract(towards, centre))
    return d * (1 + slope * ((X - centre[0]) * u[0] + (Y - centre[1]) * u[1]) / R)


def test_disk_refinement_follows_the_edge_not_the_intensity():
    rng = np.random.default_rng(5)
    truth = [(48.0, 48.0)] + [(48 + 26 * np.cos(a) + rng.random(), 48 + 26 * np.sin(a) + rng.random())
                              for a in np.linspace(0, 2 * np.pi, 5)[:4]]
    pat = 50 * synthetic_disk(SHAPE, R, truth[0], edge_width=0)
    for c in truth[1:]:
        pat += ramp_disk(c, (48, 48), 0.6)
    t = probe_template(synthetic_disk(SHAPE, R, edge_width=0))
    err = {}
    for mode in ("dft", "disk"):
        a = find_disks_in_patterns(pat, t, FindDisksParams(subpixel=mode, min_relative_intensity=0.1)).at(0)
        q = np.stack([a["qx"], a["qy"]], 1)
        assert len(q) == 5
        err[mode] = np.hypot(*(q[:, None] - np.asarray(truth)[None]).transpose(2, 0, 1)).min(1)[1:]
    assert err["dft"].min() > 0.2  # whole-pattern cross-correlation follows the intensity ramp
    assert err["disk"].max() < 0.1


def test_refine_disks_direct_and_empty_window():
    t = probe_template(synthetic_disk(SHAPE, R, edge_width=0))
    pats = np.stack([synthetic_disk(SHAPE, R, (30.3, 60.6), edge_width=0), np.zeros(SHAPE)])
    qx, qy, v = refine_disks(pats, np.array([0, 1]), np.array([30.0, 30.0]), np.array([61.0, 61.0]), t)
    assert abs(qx[0] - 30.3) < 0.03 and abs(qy[0] - 60.6) < 0.03 and v[0] > 0
    assert np.isnan(qx[1]) and np.isnan(v[1])  # nothing in the window: no disk
    m = window_mask(R, 1.25)
    assert m.shape[0] % 2 == 0 and m[m.shape[0] // 2, m.shape[0] // 2] == 1 and m[0, 0] == 0


def reference_select(xs, ys, vs, min_abs, spacing, min_rel, rel_to, max_num):
    """py4DSTEM's filter order, written plainly: threshold, greedy spacing, relative, max number."""
    order = [int(i) for i in np.argsort(-vs, kind="mergesort") if vs[i] >= min_abs]
    kept = []
    for i in order:
        if all((xs[i] - xs[j]) ** 2 + (ys[i] - ys[j]) ** 2 >= spacing ** 2 for j in kept):
            kept.append(i)
    if min_rel > 0 and len(kept) > rel_to:
        ref = vs[kept[rel_to]]
        kept = [i for i in kept if vs[i] >= min_rel * ref]
    return kept[:max_num]


@pytest.mark.parametrize("seed", range(6))
def test_select_peaks_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 300
    xs, ys = rng.integers(0, 64, n).astype(np.int64), rng.integers(0, 64, n).astype(np.int64)
    vs = rng.random(n) ** 4
    args = (rng.random() * 0.01, float(rng.integers(0, 8)), float(rng.random() * 0.3), int(rng.integers(0, 3)),
            int(rng.integers(1, 40)))
    keep = np.zeros(n, bool)
    got = K.select_peaks(xs, ys, vs, n, *args, keep)
    want = reference_select(xs, ys, vs, *args)
    assert got.tolist() == want and np.flatnonzero(keep).tolist() == sorted(want)
