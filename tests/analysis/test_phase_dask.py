"""Phase passes on a Dask cluster agree with threads (issue 16: within 1e-5 relative)."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.parallax import parallax_prepare
from fourd_widgets.analysis.phase_dpc import dpc
from fourd_widgets.analysis.ssb import ssb, ssb_prepare
from fourd_widgets.datasets.phase import simulate_phase


def test_dask_equals_threads(monkeypatch):
    distributed = pytest.importorskip("distributed")
    import fourd_widgets.core.datacube as datacube

    cube, _ = simulate_phase(scan_shape=(16, 16), scan_step_A=3.905 / 16, detector_shape=(64, 64),
                             reciprocal_step_mrad=1.0, C10=40.0, workers=1)
    # small blocks, so that the passes really are split over workers (8 chunks of 2 scan rows)
    monkeypatch.setattr(datacube, "IN_MEMORY_CHUNK_BYTES", 2 * 16 * 64 * 64 * 4)
    assert len(cube.chunk_slices()) == 8
    threads = {"workers": 2, "progress": False}
    a_dpc = dpc(cube, **threads)
    a_ssb = ssb(ssb_prepare(cube, **threads), C10=40.0)
    a_par = parallax_prepare(cube, bin=2, **threads)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc, distributed.Client(lc) as client:
        b_dpc = dpc(cube, scheduler=client, progress=False)
        b_ssb = ssb(ssb_prepare(cube, scheduler=client, progress=False), C10=40.0)
        b_par = parallax_prepare(cube, bin=2, scheduler=client, progress=False)
    for a, b in ((a_dpc.phase, b_dpc.phase), (a_ssb.phase, b_ssb.phase), (a_par.images, b_par.images)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
