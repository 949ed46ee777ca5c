"""DiskTuner view: the route buttons, the lattice controls and the fitted sites on the strip (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.widgets.disk_tuner import DiskTuner
from fourd_widgets.widgets.disk_tuner_route import LATTICE_MARKERS
from fourd_widgets.widgets.help_text import unexplained


@pytest.fixture(scope="module")
def sample():
    return fw.datasets.sample("strained_crystal", small=True)


def test_route_buttons_show_the_fitted_sites_and_back(sample) -> None:
    t = DiskTuner(sample[0], n_positions=2).wait()
    try:
        assert t.lattice_box.layout.display == "none" and t.lattice_marker_counts() == [0, 0]
        t._route.value = "whole-pattern fit"  # as a click in the browser sets it
        t.wait()
        n = len(t.lattice_preview.sites)
        assert t.route == "whole_pattern" and t.lattice_marker_counts() == [n, n]
        assert t.lattice_box.layout.display == "" and t._detect_row.layout.display == "none"
        for k, v in enumerate(t.strip_views):  # the markers are the fitted centres, as the browser holds them
            np.testing.assert_allclose(v.marker_points(LATTICE_MARKERS)[0], t.lattice_preview.centers[k], atol=1e-4)
            assert "lattice" in v.title
        t._lat_dose.value = 2000.0
        t.wait()
        assert t.lattice_params.counts_per_unit == 2000.0 and "σ(ε_xx)" in t.lattice_message.value
        assert [s.step for s in t.params.steps] == ["whole_pattern_fit"]
        again = DiskTuner.from_params(sample[0], t.params, n_positions=2).wait()
        try:
            assert again._route.value == "whole-pattern fit" and again._lat_dose.value == 2000.0
            assert again.lattice_marker_counts() == [n, n]
        finally:
            again.close()
        assert unexplained(t.widget) == []  # the new controls say what they do
        t._route.value = "disk detection"
        t.wait()
        assert t.route == "disks" and t.lattice_marker_counts() == [0, 0]
        assert t.marker_counts() == [int(c) for c in t.strip_peaks.counts()]
        assert all("disks" in v.title for v in t.strip_views)
    finally:
        t.close()
