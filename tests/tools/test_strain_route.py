"""The StrainMapper's route choice: disk detection + strain_map, or the whole-pattern fit with σ maps and a σ limit."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.lattice_fit import WholePatternFitParams, lattice_pattern
from fourd_widgets.analysis.probe import ProbeTemplateParams, probe_template, synthetic_disk
from fourd_widgets.analysis.strain import lattice_peaks
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.tools.strain import StrainSession
from fourd_widgets.tools.strain_lowdose import SIGMA_NAMES

SHAPE = (64, 64)
G1, G2 = (14.0, 1.0), (-1.0, 15.0)


@pytest.fixture(scope="module")
def probe():
    return synthetic_disk(SHAPE, 4.0, (32, 32))


@pytest.fixture(scope="module")
def cube(probe):
    pat = lattice_pattern(probe_template(probe), (32.0, 32.0), G1, G2, SHAPE, max_index=2, background=1e-3)
    counts = np.random.default_rng(5).poisson(np.broadcast_to(pat / pat.sum() * 2000.0, (5, 4) + SHAPE))
    return DataCube(counts.astype(np.float32), calibration=Calibration(origin=(32, 32)))


def _session(cube):
    peaks = lattice_peaks((5, 4), (32.0, 32.0), G1, G2, SHAPE)  # the disk route's peaks (exact lattice)
    return StrainSession(cube, peaks, Calibration(origin=(32, 32))).wait()


def _wp(probe, **changes):
    return WholePatternFitParams(template=ProbeTemplateParams(source="vacuum_image", image=probe), max_index=2,
                                 g1=G1, g2=G2, **changes)


def test_route_switches_recipe_maps_and_replays(cube, probe):
    s = _session(cube)
    events = []
    s.listen(lambda e, v: events.append((e, v)))
    try:
        assert s.route == "disks"
        assert [st.step for st in s.params.steps] == ["strain_map"]
        disk_strain = s.strain
        s.set_route("whole_pattern", _wp(probe)).wait()
        assert s.route == "whole_pattern" and s.error == ""
        # the recipe is the whole-pattern step instead of find_disks + strain_map
        assert [st.step for st in s.params.steps] == ["whole_pattern_fit"]
        shown = s.results()["whole_pattern_fit"]
        assert set(SIGMA_NAMES) <= set(s.images())
        sig = [v for e, v in events if e == "sigma_maps"][-1]
        np.testing.assert_allclose(sig["sigma_exx"][0], shown.sigma_exx * 100)  # percent, beside ε_xx
        strain_maps = [v for e, v in events if e == "maps"][-1]
        assert set(strain_maps) == {"exx", "eyy", "exy", "theta_deg"}
        np.testing.assert_allclose(strain_maps["exx"][0], shown.exx * 100)
        # the σ limit masks without a refit, and fw.run replays what is shown
        full = s.lowdose.full
        cut = float(np.median(full.max_strain_sigma()))
        s.set_sigma_limit(cut).wait()
        assert s.lowdose.full is full
        limited = s.results()["whole_pattern_fit"]
        assert 0 < int(limited.mask.sum()) < limited.mask.size
        replay = fw.run(Recipe.from_json(s.params.to_json()), cube)["whole_pattern_fit"]
        np.testing.assert_array_equal(replay.mask, limited.mask)
        np.testing.assert_allclose(replay.exx, limited.exx, equal_nan=True)
        np.testing.assert_allclose(replay.sigma_exx, limited.sigma_exx, equal_nan=True)
        # back to the disk route: its recipe and maps again
        s.set_route("disks").wait()
        assert s.route == "disks" and [st.step for st in s.params.steps] == ["strain_map"]
        np.testing.assert_array_equal(s.results()["strain_map"].exx, disk_strain.exx)
    finally:
        s.close()


def test_route_default_fit_starts_from_the_picked_basis(cube, probe):
    s = _session(cube)
    try:
        s.set_route("whole_pattern", template=probe_template(probe))
        rec = s.lowdose.record
        np.testing.assert_allclose(rec.g1, G1, atol=1e-6)  # no ellipse: the detector frame is the fit frame
        np.testing.assert_array_equal(rec.reference_region, s.strain_params.reference_region)
        s.wait()
        sm = s.results()["whole_pattern_fit"]
        ok = ~sm.mask
        assert ok.all()
        # an unstrained lattice everywhere: strain ~ 0 within a few σ of each position
        assert np.all(np.abs(sm.exx[ok]) < 5 * sm.sigma_exx[ok])
    finally:
        s.close()


def test_sigma_limit_needs_the_whole_pattern_route(cube):
    s = _session(cube)
    try:
        with pytest.raises(ParameterError, match="whole-pattern route"):
            s.set_sigma_limit(0.01)
        with pytest.raises(ParameterError, match="route must be"):
            s.set_route("fast")
    finally:
        s.close()


def test_mapper_route_buttons_show_sigma_maps_and_slider_masks(cube, probe):
    from fourd_widgets.widgets import StrainMapper

    peaks = lattice_peaks((5, 4), (32.0, 32.0), G1, G2, SHAPE)
    m = StrainMapper(cube, peaks, Calibration(origin=(32, 32))).wait()
    try:
        assert m._sigma_box.layout.display == "none"  # no σ maps on the disk route
        m.session.set_route("whole_pattern", _wp(probe))
        m.wait()
        assert m._route.value == "whole_pattern" and m._sigma_box.layout.display is None
        sm = m.strain
        for name in SIGMA_NAMES:
            assert m.sigma.sigma_views[name].image_version >= 1
        sv = m.sigma.sigma_views["sigma_exx"]
        assert sv.vmin == 0 and sv.vmax >= 100 * float(np.nanmedian(sm.sigma_exx)) > 0  # σ from 0, in percent
        # the slider spans the σ range (percent); moving it masks the positions above it
        top = 100 * sm.max_strain_sigma()
        assert m.sigma.sigma_limit.max >= np.nanmax(top)
        cut = float(np.median(top))
        m.sigma.sigma_limit.value = cut
        m.wait()
        assert m.session.lowdose.record.max_sigma == pytest.approx(cut / 100)
        assert int(m.strain.mask.sum()) == int((top > cut).sum()) > 0
        # the buttons go back to the disk route
        m._route.value = "disks"
        m.wait()
        assert m.route == "disks" and m._sigma_box.layout.display == "none"
        assert [st.step for st in m.params.steps] == ["strain_map"]
    finally:
        m.close()


def _mapper_on_whole_pattern(cube, probe):
    from fourd_widgets.widgets import StrainMapper

    m = StrainMapper(cube, lattice_peaks((5, 4), (32.0, 32.0), G1, G2, SHAPE), Calibration(origin=(32, 32)))
    m.set_route("whole_pattern", _wp(probe))
    return m.wait()


def test_view_slider_sets_the_record(cube, probe):
    """Moved from the removed LowDoseStrainMapper: the same assertions on the StrainMapper's whole-pattern route."""
    m = _mapper_on_whole_pattern(cube, probe)
    try:
        assert m.sigma.sigma_limit.value == m.sigma.sigma_limit.max  # right end: no limit
        assert m.sigma.sigma_views["sigma_exx"].data is not None
        top = m.session.lowdose.full.max_strain_sigma()
        m.sigma.sigma_limit.value = 100 * float(np.median(top))
        m.wait()
        assert m.session.lowdose.record.max_sigma == pytest.approx(float(np.median(top)))
        assert m.strain.mask.sum() == int((top > m.session.lowdose.record.max_sigma).sum())
    finally:
        m.close()


def test_dose_and_pooling_controls_refit(cube, probe):
    m = _mapper_on_whole_pattern(cube, probe)
    try:
        before = float(np.nanmedian(m.strain.sigma_exx))
        m.sigma._dose.value = 4.0  # four electrons per data unit: σ halves (Poisson, counts x4)
        m.wait()
        assert m.session.lowdose.record.counts_per_unit == 4.0
        assert float(np.nanmedian(m.strain.sigma_exx)) == pytest.approx(before / 2, rel=0.1)
    finally:
        m.close()


def test_from_params_reopens_the_whole_pattern_route(cube, probe):
    from fourd_widgets.widgets import StrainMapper

    m = _mapper_on_whole_pattern(cube, probe)
    peaks = m.peaks
    try:
        m.set_sigma_limit(100 * float(np.median(m.session.lowdose.full.max_strain_sigma())))
        m.wait()
        again = StrainMapper.from_params(cube, peaks, m.params.to_json()).wait()
        session = StrainSession.from_params(cube, peaks, m.params).wait()
        try:
            for other in (again, session):
                assert other.route == "whole_pattern"
                assert other.params.to_json() == m.params.to_json()
                shown = getattr(other, "session", other).results()["whole_pattern_fit"]
                np.testing.assert_array_equal(shown.mask, m.strain.mask)
                np.testing.assert_allclose(shown.exx, m.strain.exx, equal_nan=True)
        finally:
            again.close()
            session.close()
    finally:
        m.close()
