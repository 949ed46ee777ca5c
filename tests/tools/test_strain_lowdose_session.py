"""The low-dose strain mapper without a browser: σ maps shown, the σ limit masks without a refit, replay equals."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.lattice_fit import FIT_SIGMA_ABOVE, WholePatternFitParams, lattice_pattern
from fourd_widgets.analysis.probe import ProbeTemplateParams, probe_template, synthetic_disk
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.tools.strain_lowdose import SIGMA_NAMES, LowDoseStrainSession

SHAPE = (64, 64)


@pytest.fixture(scope="module")
def probe():
    return synthetic_disk(SHAPE, 4.0, (32, 32))


@pytest.fixture(scope="module")
def cube(probe):
    t = probe_template(probe)
    pat = lattice_pattern(t, (32.0, 32.0), (14.0, 1.0), (-1.0, 15.0), SHAPE, max_index=2, background=1e-3)
    pats = np.broadcast_to(pat / pat.sum() * 2000.0, (5, 4) + SHAPE)
    counts = np.random.default_rng(11).poisson(pats).astype(np.float32)
    return DataCube(counts, calibration=Calibration(origin=(32, 32)))


def _params(probe, **changes):
    return WholePatternFitParams(template=ProbeTemplateParams(source="vacuum_image", image=probe), max_index=2,
                                 g1=(14.0, 1.0), g2=(-1.0, 15.0), **changes)


def test_session_shows_strain_and_sigma_maps(cube, probe):
    events = []
    s = LowDoseStrainSession(cube, _params(probe), start=False)
    s.listen(lambda e, v: events.append((e, v)))
    s.start().wait()
    try:
        assert s.error == ""
        maps = [v for e, v in events if e == "maps"][-1]
        assert set(SIGMA_NAMES) <= set(maps)
        shown, limit = maps["sigma_exx"]
        np.testing.assert_allclose(shown, s.strain.sigma_exx * 100)  # shown in percent
        assert limit == pytest.approx(float(np.nanmax(shown[None], axis=(1, 2)).max()), rel=0.5)
        assert np.all(shown > 0)
    finally:
        s.close()


def test_sigma_limit_masks_without_refit_and_replays(cube, probe):
    s = LowDoseStrainSession(cube, _params(probe)).wait()
    try:
        full = s.full
        top = full.max_strain_sigma()
        cut = float(np.median(top))
        s.set_sigma_limit(cut).wait()
        assert s.full is full  # the fit was kept: only the mask changed
        np.testing.assert_array_equal(s.strain.mask, top > cut)
        assert ((s.strain.failure & FIT_SIGMA_ABOVE) != 0).sum() == int((top > cut).sum())
        replay = fw.run(s.params, cube)["whole_pattern_fit"]
        for n in ("exx", "sigma_exx", "mask"):
            np.testing.assert_array_equal(getattr(replay, n), getattr(s.strain, n))
        again = LowDoseStrainSession.from_params(cube, s.params).wait()
        np.testing.assert_array_equal(again.strain.mask, s.strain.mask)
        again.close()
        s.set_sigma_limit(None).wait()
        assert not s.strain.mask.any()
    finally:
        s.close()


def test_a_bad_option_is_a_message_not_an_exception(cube, probe):
    s = LowDoseStrainSession(cube, _params(probe)).wait()
    try:
        s.set_options(pool_sigma=-1.0)
        assert "pool_sigma" in s.error
        assert s.record.pool_sigma == 0.0
    finally:
        s.close()

