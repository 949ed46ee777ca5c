"""Defaults that fit the data: the beam found from a sparse sample, detectors on it, warnings for empty ones."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.beam import (default_detectors, detector_warnings, find_beam, sample_positions,
                                         sparse_mean_pattern)
from fourd_widgets.analysis.detectors import Annulus, Circle, detector_mask


def disk_pattern(shape, center, radius, background=0.01):
    ii, jj = np.indices(shape)
    q = np.hypot(ii - center[0], jj - center[1])
    return np.where(q <= radius, 1.0, background / (1 + 0.1 * q))


@pytest.mark.parametrize("center", [(64.0, 64.0), (20.3, 100.7), (110.0, 17.5)])
def test_an_off_centre_beam_is_found(center) -> None:
    rng = np.random.default_rng(0)
    p = rng.poisson(200 * disk_pattern((128, 128), center, 9.0)).astype(float)
    beam = find_beam(p)
    # the centroid of a digitised disk of radius 9 is within a few hundredths of a pixel of its centre;
    # Poisson noise on ~250 pixels adds about as much again
    assert np.hypot(beam.center[0] - center[0], beam.center[1] - center[1]) < 0.2
    assert abs(beam.radius - 9.0) < 0.5 and not beam.cut


def test_a_hot_pixel_is_not_the_beam() -> None:
    p = disk_pattern((96, 96), (30, 60), 7.0)
    p[5, 5] = 1e4
    beam = find_beam(p)
    assert np.hypot(beam.center[0] - 30, beam.center[1] - 60) < 0.2


def test_a_beam_cut_by_the_edge_says_so() -> None:
    beam = find_beam(disk_pattern((64, 64), (3.0, 30.0), 8.0))
    assert beam.cut


def test_sample_positions_spread_over_the_scan() -> None:
    pos = sample_positions((100, 50), 64)
    assert 50 <= len(pos) <= 64 and len(set(pos)) == len(pos)
    xs, ys = zip(*pos)
    assert min(xs) < 10 and max(xs) > 90 and min(ys) < 6 and max(ys) > 44  # the whole scan, not a corner


def test_the_sparse_mean_reads_only_the_sample(monkeypatch) -> None:
    data = np.random.default_rng(1).random((20, 20, 8, 8))
    cube = fw.DataCube(data)
    read = []
    original = fw.DataCube.pattern

    def spy(self, rx, ry):
        read.append((rx, ry))
        return original(self, rx, ry)

    monkeypatch.setattr(fw.DataCube, "pattern", spy)
    mean = sparse_mean_pattern(cube, n=16)
    assert len(read) == 16
    np.testing.assert_allclose(mean, data[tuple(np.array(read).T)].mean(axis=0))


def test_defaults_on_the_sample_see_the_beam_and_the_diffracted_disks() -> None:
    cube, truth = fw.datasets.sample("strained_crystal", small=True)
    mean = sparse_mean_pattern(cube)
    bf, adf = default_detectors(mean)
    origin = truth.origin_map.mean(axis=(0, 1)) if truth.origin_map is not None else np.array(cube.calibration.origin)
    assert np.hypot(*(np.array(bf.center) - origin)) < 1.5  # the descan moves the beam about a pixel
    images = fw.virtual_image(cube, [bf, adf], progress=False)
    full_mean = cube.mean_pattern()
    bf_mask = detector_mask(bf, cube.detector_shape)
    adf_mask = detector_mask(adf, cube.detector_shape)
    assert not (bf_mask & adf_mask).any()
    # the bright-field circle holds most of the zero beam, the annulus most of the rest
    outside = full_mean[~detector_mask(Circle(bf.center, adf.inner), cube.detector_shape)].sum()
    assert full_mean[adf_mask].sum() > 0.5 * outside
    # not black: the dark-field image carries a few per cent of the beam (it was ~1e-7 with the old defaults)
    assert images[1].min() > 0.01 * images[0].mean()


def test_on_the_merlin_file_the_detectors_start_on_the_beam(shared_data) -> None:
    cube = fw.load(shared_data / "real" / "merlin_4x2x256x256_6bit.mib")
    beam = find_beam(sparse_mean_pattern(cube))
    # the beam sits at the left edge, about (102-108, 27-30) by a circle fit to its half-maximum edge
    assert 98 <= beam.center[0] <= 112 and 18 <= beam.center[1] <= 34
    assert beam.cut  # it runs off the detector's edge


def test_warnings_name_empty_and_overhanging_detectors() -> None:
    assert "covers no pixel" in detector_warnings(Circle((4.5, 4.5), 0.1), (8, 8))[0]  # between pixel centres
    assert "covers no pixel" in detector_warnings(Circle((40, 40), 3), (8, 8))[0]
    over = detector_warnings(Annulus((4, 4), 1, 10), (8, 8))
    assert len(over) == 1 and "past the detector edge" in over[0]
    assert detector_warnings(Annulus((16, 16), 2, 10), (32, 32)) == []
    assert detector_warnings(Circle((16, 16), 5), (32, 32)) == []
