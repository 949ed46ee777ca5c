"""The polar family as recipe steps: fw.run replays them to equal results, and Results saves and loads them."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.fem import RadialStatisticsParams, radial_statistics
from fourd_widgets.analysis.fem_maps import FEMParams, fem
from fourd_widgets.analysis.pdf import PDFParams, pair_distribution
from fourd_widgets.analysis.polar import PolarParams
from fourd_widgets.analysis.polar_steps import AmorphousStrainParams
from fourd_widgets.analysis.ring_fit import RingFitParams, amorphous_strain, fit_rings
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results


@pytest.fixture(scope="module")
def rings() -> DataCube:
    """An amorphous ring per position, its radius varying over the scan, with speckle and a tilted ellipse."""
    rng = np.random.default_rng(3)
    x, y = np.meshgrid(np.arange(48) - 23.6, np.arange(48) - 24.2, indexing="ij")
    data = np.empty((5, 4, 48, 48))
    for i in range(5):
        for j in range(4):
            rho = np.hypot(x / (15.0 * (1 + 0.004 * i)), y / 14.6)
            data[i, j] = 0.2 + np.exp(-0.5 * ((rho - 1) / 0.1) ** 2) * (1 + 0.05 * rng.random((48, 48)))
    cal = Calibration(origin=(23.6, 24.2), reciprocal_step=0.02, reciprocal_units="1/Å")
    return DataCube(data, cal)


def _recipe() -> Recipe:
    stats = RadialStatisticsParams(polar=PolarParams(q_max=22, n_theta=32), symmetry_orders=(2, 4))
    return Recipe((PolarParams(q_max=22, n_theta=32), stats,
                   FEMParams(k_ranges=((0.25, 0.32), (0.36, 0.4)), symmetry_order=2),
                   PDFParams(k_min=0.05, k_width=0.05, r_max=10.0, density=0.05),
                   RingFitParams(r_inner=6, r_outer=22), AmorphousStrainParams()))


def test_a_recipe_of_the_polar_steps_replays_to_equal_results(rings, tmp_path):
    recipe = _recipe()
    first = fw.run(recipe, rings, progress=False)
    again = fw.run(Recipe.from_json(recipe.to_json()), rings, progress=False)
    labels = ["polar", "radial_statistics", "fem", "pdf", "ring_fit", "amorphous_strain"]
    assert list(first.recipe.labels) == labels
    for label in labels:
        assert first[label] == again[label], label
    # each step is the function of its record on what came before (nothing hidden in fw.run)
    stats = radial_statistics(rings, recipe.steps[1], progress=False)
    assert first["radial_statistics"] == stats
    assert first["fem"] == fem(stats, recipe.steps[2])
    assert first["pdf"] == pair_distribution(first["fem"].variance.mean_profile, recipe.steps[3], k=stats.k)
    fits = fit_rings(rings, recipe.steps[4], progress=False)
    assert first["ring_fit"] == fits
    np.testing.assert_array_equal(first["amorphous_strain"].exx, amorphous_strain(fits).exx)
    # results files: every container comes back equal, nested records and results included
    back = Results.load(first.save(tmp_path / "polar.h5"))
    for label in labels:
        assert type(back[label]) is type(first[label]) and back[label] == first[label], label
    assert back["radial_statistics"].params.polar == recipe.steps[1].polar


def test_the_ring_strain_follows_the_simulated_stretch(rings):
    """The ring's x radius grows by 0.4 % per row: the lattice shrinks along x, exx = 1.008 / (1 + 0.004 i) - 1
    relative to the median row (i = 2)."""
    res = fw.run(Recipe((RingFitParams(r_inner=6, r_outer=22), AmorphousStrainParams())), rings, progress=False)
    expect = (1.008 / (1 + 0.004 * np.arange(5)) - 1)[:, None] * np.ones((1, 4))
    # the target for amorphous strain is 0.05 %; 5 % speckle on a 48 px ring leaves up to 3.5e-4
    np.testing.assert_allclose(res["amorphous_strain"].exx, expect, atol=5e-4)
    np.testing.assert_allclose(res["amorphous_strain"].eyy, 0.0, atol=5e-4)


def test_steps_that_read_earlier_results_say_which_step_is_missing(rings):
    with pytest.raises(ParameterError, match="radial_statistics step"):
        fw.run(Recipe((FEMParams(k_ranges=((0.25, 0.32),)),)), rings, progress=False)
    with pytest.raises(ParameterError, match="ring_fit step"):
        fw.run(Recipe((AmorphousStrainParams(),)), rings, progress=False)


def test_pdf_of_a_profile_in_pixels_asks_for_a_calibration(rings):
    cube = rings.with_calibration(Calibration(origin=(23.6, 24.2)))
    recipe = Recipe((RadialStatisticsParams(polar=PolarParams(q_max=22, n_theta=32)), FEMParams(k_ranges=((5, 9),)),
                     PDFParams()))
    with pytest.raises(ParameterError, match="1/Å"):
        fw.run(recipe, cube, progress=False)
