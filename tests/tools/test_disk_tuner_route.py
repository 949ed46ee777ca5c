"""The DiskTuner's route choice without a browser: find_disks or the whole-pattern lattice fit (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.lattice_fit import WholePatternFitParams
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.tools.disk_tuner import DiskTunerSession


@pytest.fixture(scope="module")
def sample():
    return fw.datasets.sample("strained_crystal", small=True)


@pytest.fixture(scope="module")
def session(sample):
    s = DiskTunerSession(sample[0], n_positions=3).wait()
    s.set_route("whole_pattern").wait()
    yield s
    s.close()


def test_the_fitted_sites_sit_on_the_true_lattice(session, sample) -> None:
    """Every fitted site centre of every strip pattern lies on the true lattice of its position.

    The sample is noise-free with the probe's own disks, so the fit is limited by the probe
    model only: 0.05 px is ~25x the vector errors measured (1-2e-3 px) and 1/10 of the
    detector route's usual spot tolerance.
    """
    _, truth = sample
    lp = session.lattice_preview
    assert lp is not None and lp.centers.shape == (3, len(lp.sites), 2) and len(lp.sites) >= 9
    for k, (x, y) in enumerate(session.positions):
        G = np.stack([truth.g1_px[x, y], truth.g2_px[x, y]], 1)
        hk = np.linalg.solve(G, (lp.centers[k] - truth.origin_map[x, y]).T)
        off = lp.centers[k] - truth.origin_map[x, y] - (G @ np.round(hk)).T
        assert np.abs(off).max() < 0.05
        assert lp.status[k] == 0


def test_recipe_is_the_whole_pattern_step_and_replays(session, sample) -> None:
    cube = sample[0]
    assert session.route == "whole_pattern"
    steps = session.params.steps
    assert [s.step for s in steps] == ["whole_pattern_fit"]
    assert steps[0].template == session.find_params.template  # the tuner's template travels in the step
    whole = fw.run(session.params, cube)["whole_pattern_fit"]
    for k, (x, y) in enumerate(session.positions):  # the strip shows what the full run fits there
        np.testing.assert_allclose(session.lattice_preview.g1[k], whole.g1[x, y], atol=1e-9)
        np.testing.assert_allclose(session.lattice_preview.g2[k], whole.g2[x, y], atol=1e-9)
    again = DiskTunerSession.from_params(cube, session.params.to_json(), n_positions=1).wait()
    try:
        assert again.route == "whole_pattern" and again.lattice_params == session.lattice_params
        assert again.lattice_preview is not None
        assert len(again.lattice_preview.sites) == len(session.lattice_preview.sites)
    finally:
        again.close()


def test_what_each_change_refits(session) -> None:
    n = session.lattice_fits
    session.set(min_relative_intensity=0.3).wait()  # a detector threshold: not the fit's business
    assert session.lattice_fits == n
    session.set_lattice(max_index=2).wait()
    assert session.lattice_fits == n + 1 and session.lattice_params.max_index == 2
    assert np.abs(session.lattice_preview.sites).max() == 2
    session.pick(1, 1, slot=0).wait()
    assert session.lattice_fits == n + 2 and session.lattice_preview.positions[0] == (1, 1)
    before = session.lattice_params
    session.set_lattice(max_index=0)  # refused: a message beside the lattice controls, the record kept
    assert "max_index" in session.messages["lattice"][0] and session.lattice_params == before
    session.set_lattice(max_index=6).wait()


def test_dose_scale_sets_the_standard_errors(sample) -> None:
    """σ(ε) scales as 1/sqrt(dose): counts_per_unit 4x higher halves it (the sample is noise-free)."""
    s = DiskTunerSession(sample[0], n_positions=2).set_route(
        "whole_pattern", WholePatternFitParams(counts_per_unit=1000.0)).wait()
    try:
        a = s.lattice_preview.sigma_exx
        s.set_lattice(counts_per_unit=4000.0).wait()
        np.testing.assert_allclose(s.lattice_preview.sigma_exx, a / 2, rtol=0.02)
        assert "σ(ε_xx)" in s.messages["lattice"][0]
    finally:
        s.close()


def test_back_to_the_detector_and_run_on_all(sample) -> None:
    cube = sample[0]
    s = DiskTunerSession(cube, n_positions=1).set_route("whole_pattern").wait()
    try:
        s.run_on_all().wait_run()
        assert s.run_state == "done" and list(s.results()) == ["whole_pattern_fit"]
        ref = fw.run(s.params, cube)["whole_pattern_fit"]
        np.testing.assert_array_equal(s.results()["whole_pattern_fit"].g1, ref.g1)
        s.set_route("disks").wait()
        assert s.route == "disks" and s.lattice_preview is None
        assert [st.step for st in s.params.steps] == ["find_disks"]
        with pytest.raises(ParameterError, match="lattice route"):
            s.set_lattice(max_index=3)
        with pytest.raises(ParameterError, match="route must be"):
            s.set_route("snap")
    finally:
        s.close()


def test_from_params_reads_every_spelling(sample) -> None:
    """Recipe, its JSON and dict open the route their step says; a bare detection record stays a detection record."""
    from fourd_widgets.analysis.disks import FindDisksParams
    from fourd_widgets.core.recipe import Recipe
    from fourd_widgets.tools.disk_tuner_route import tuner_records

    cube = sample[0]
    lattice = Recipe(steps=(WholePatternFitParams(max_index=3),))
    for spelling in (lattice, lattice.to_json(), lattice.to_dict(), WholePatternFitParams(max_index=3)):
        assert tuner_records(cube, spelling)[2].max_index == 3
    detect = FindDisksParams(min_relative_intensity=0.2)
    for spelling in (detect, detect.to_dict(), Recipe(steps=(detect,)).to_json()):
        _, p, lat = tuner_records(cube, spelling)
        assert lat is None and p.min_relative_intensity == 0.2


def test_a_superseded_fit_is_not_lost(sample) -> None:
    """A fit whose request was superseded before delivery (the template arrived meanwhile) is not
    delivered; the next request with the same record and template must return that fit, not the
    preview shown (still None): the tutorial's tuner opened on the lattice route showed nothing."""
    s = DiskTunerSession(sample[0], n_positions=1).wait()
    try:
        req = (WholePatternFitParams(template=s.find_params.template), tuple(s.positions), s.template)
        first = s._lattice_compute(req)  # computed, never delivered
        assert first is not None and s.lattice_preview is None
        assert s._lattice_compute(req) is first and s.lattice_fits == 1
    finally:
        s.close()
