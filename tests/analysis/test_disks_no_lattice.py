"""Issue 12 item 23: find_disks says when the peaks it found are not arranged like a lattice.

An amorphous pattern has speckle and rings, no Bragg disks; the peaks a template correlation finds
there are noise, and a strain or orientation step downstream would take them for disks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.disks import LATTICE_ROWS, NoLatticeWarning, lattice_rows


def no_lattice_warnings(cube) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fw.find_disks(cube)
    return [str(w.message) for w in caught if issubclass(w.category, NoLatticeWarning)]


def test_the_real_amorphous_pattern_is_reported(shared_data):
    cube = fw.load(shared_data / "real" / "amorphous_diffraction_titan_200kV.hspy")
    [msg] = no_lattice_warnings(cube)
    assert "not arranged like a crystal lattice" in msg and "amorphous" in msg


def test_a_simulated_amorphous_film_is_reported_and_a_noisy_crystal_is_not():
    film, _ = fw.datasets.simulate((4, 4), (128, 128), grains=[], amorphous=1.0, dose=1e5, seed=1)
    assert len(no_lattice_warnings(film)) == 1
    # a crystal at 1e4 electrons per probe: 11-13 disks per pattern, 0.2-0.3 px off
    crystal, _ = fw.datasets.simulate((4, 4), (128, 128), dose=1e4, seed=1)
    assert no_lattice_warnings(crystal) == []


@pytest.mark.parametrize("seed", range(5))
def test_random_peaks_do_not_look_like_a_lattice(seed):
    """47 peaks scattered at random over a 512 px detector (the issue's count), in Friedel pairs about a
    central peak (speckle is centrosymmetric): every pair makes a row through the centre, each with its
    own spacing, so no spacing has LATTICE_ROWS rows."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(40, 470, (24, 2))
    q = np.concatenate([[[256.0, 256.0]], q[:23], 2 * 256.0 - q[:23]])  # the centre and 23 Friedel pairs
    assert lattice_rows(q[:, 0], q[:, 1]) < LATTICE_ROWS
    h, k = np.meshgrid(np.arange(-1, 2), np.arange(-1, 2), indexing="ij")
    lattice = 256 + h.ravel()[:, None] * [23.6, 23.6] + k.ravel()[:, None] * [23.6, -23.6]
    assert lattice_rows(lattice[:, 0], lattice[:, 1]) >= LATTICE_ROWS  # a 3 x 3 patch of Si [001]
