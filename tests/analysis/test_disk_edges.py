"""The edge stage of the per-disk refinement (``FindDisksParams(subpixel='edge')``), on hand-made disks.

Its accuracy on the shared abTEM Si files is judged in ``test_strain_weights.py`` and
``test_strain_defaults.py``.
"""

from __future__ import annotations

import numpy as np

from fourd_widgets.analysis.disk_refine import refine_disk_edges
from fourd_widgets.analysis.disks import FindDisksParams, correlate_patterns, find_disks_in_patterns
from fourd_widgets.analysis.probe import probe_template, synthetic_disk

SHAPE = (64, 64)
R = 8.0


def test_edge_stage_finds_the_centre_of_symmetric_disks():
    # Disks with the synthetic template's soft edge (0.5 px) at random sub-pixel centres, started
    # up to 0.4 px off. The self-convolution's peak is found on a 1/16 px grid in 2c, then by a
    # parabola: measured at most 0.011 px over these 20 disks.
    rng = np.random.default_rng(1)
    for _ in range(20):
        c = 30 + rng.random(2)
        start = c + rng.uniform(-0.4, 0.4, 2)
        pat = synthetic_disk(SHAPE, R, tuple(c))[None].astype(np.float32)
        qx, qy, v = refine_disk_edges(pat, np.array([0]), start[:1], start[1:], R)
        assert np.hypot(qx[0] - c[0], qy[0] - c[1]) < 0.02, (c, qx, qy)
        assert np.isfinite(v[0])


def test_edge_stage_in_find_disks_and_its_fallback():
    # Two disks; one is found, refined by the window correlation and then by its edges. A start more
    # than EDGE_MAX_MOVE (1 px) from any edge centre (an empty window) keeps its starting centre.
    truth = [(20.4, 30.7), (44.2, 26.6)]
    pat = sum(synthetic_disk(SHAPE, R, c) for c in truth)[None]
    t = probe_template(synthetic_disk(SHAPE, R))
    for mode in ("disk", "edge"):
        a = find_disks_in_patterns(pat, t, FindDisksParams(subpixel=mode)).at(0)
        got = sorted(zip(a["qx"], a["qy"]))
        assert np.allclose(got, truth, atol=0.02), (mode, got)
    empty = np.zeros((1,) + SHAPE, np.float32)
    qx, qy, v = refine_disk_edges(empty, np.array([0]), np.array([32.3]), np.array([31.8]), R)
    assert (qx[0], qy[0]) == (32.3, 31.8) and np.isnan(v[0])


def test_edge_reuses_the_disk_correlation():
    # 'edge' starts from 'disk': a correlation made for 'disk' (sampled every other pixel, as the tuner
    # keeps it) detects with 'edge' too, and gives what a fresh 'edge' run gives.
    truth = [(20.4, 30.7), (44.2, 26.6)]
    pat = sum(synthetic_disk(SHAPE, R, c) for c in truth)[None]
    t = probe_template(synthetic_disk(SHAPE, R))
    corr = correlate_patterns(pat, t, FindDisksParams(subpixel="disk"))
    assert corr.step == 2
    again = corr.detect(FindDisksParams(subpixel="edge"))
    fresh = find_disks_in_patterns(pat, t, FindDisksParams(subpixel="edge"))
    assert np.array_equal(again.qx, fresh.qx) and np.array_equal(again.qy, fresh.qy)
    assert FindDisksParams.from_dict(FindDisksParams(subpixel="edge").to_dict()).subpixel == "edge"
