"""Virtual diffraction: mean / max / median over regions, with and without alignment."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.detectors import Polygon, Rectangle
from fourd_widgets.analysis.steps import RunContext, step_function
from fourd_widgets.analysis.virtual import VirtualDiffractionParams, virtual_diffraction
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import MissingCalibrationError, ShapeError

from .test_virtual_reference import ref_mask, shifted_mask

QUIET = {"progress": False}


@pytest.fixture
def cube(rng):
    return DataCube(rng.integers(0, 3000, (7, 6, 9, 11), dtype=np.uint16))


@pytest.mark.parametrize("method, fn", [("mean", np.mean), ("max", np.max), ("median", np.median)])
def test_whole_scan_matches_numpy(cube, method, fn):
    got = virtual_diffraction(cube, method, chunk_bytes=5 * cube.pattern_nbytes, **QUIET)
    np.testing.assert_allclose(got, fn(cube.to_numpy().astype(float), axis=(0, 1)), rtol=1e-12)


@pytest.mark.parametrize("method, fn", [("mean", np.mean), ("max", np.max), ("median", np.median)])
def test_bool_region_and_shapes_in_scan_pixels(cube, method, fn):
    data = cube.to_numpy().astype(float)
    rect = Rectangle((1, 4), (2, 6))
    poly = Polygon(((0, 0), (6, 1), (2, 5)))
    for region, sel in [(np.eye(7, 6, dtype=bool), np.eye(7, 6, dtype=bool)),
                        (rect, ref_mask("rectangle", {"qx_range": (1, 4), "qy_range": (2, 6)}, (7, 6))),
                        (poly, ref_mask("polygon", {"vertices": poly.vertices}, (7, 6)))]:
        got = virtual_diffraction(cube, method, region=region, **QUIET)
        np.testing.assert_allclose(got, fn(data[sel], axis=0), rtol=1e-12)


def test_float_region_is_a_weighted_mean(cube, rng):
    w = rng.random(cube.scan_shape)
    w[2] = 0
    data = cube.to_numpy().astype(float)
    got = virtual_diffraction(cube, "mean", region=w, **QUIET)
    np.testing.assert_allclose(got, np.einsum("ab,abij->ij", w, data) / w.sum(), rtol=1e-12)
    # max and median take the non-zero positions
    np.testing.assert_allclose(virtual_diffraction(cube, "max", region=w, **QUIET), data[w != 0].max(axis=0))


def test_empty_region_and_wrong_shape_are_refused(cube):
    with pytest.raises(ShapeError, match="selects no scan position"):
        virtual_diffraction(cube, region=np.zeros(cube.scan_shape, bool), **QUIET)
    with pytest.raises(ShapeError, match="scan shape"):
        virtual_diffraction(cube, region=np.ones((2, 2), bool), **QUIET)


@pytest.mark.parametrize("method", ["mean", "max"])
@pytest.mark.parametrize("subpixel", [False, True])
def test_align_moves_each_origin_to_the_mean(rng, method, subpixel):
    data = rng.random((3, 4, 12, 13))
    om = np.stack([6 + rng.uniform(-2, 2, (3, 4)), 6 + rng.uniform(-2, 2, (3, 4))], axis=-1)
    cube = DataCube(data, Calibration(origin_map=om))
    shifts = om - om.reshape(-1, 2).mean(0)
    # the aligned pattern at q reads the original at q + shift: move it by -shift
    aligned = np.array([[shifted_mask(data[i, j], tuple(-shifts[i, j]), subpixel) if subpixel
                         else shifted_mask(data[i, j], tuple(-np.round(shifts[i, j])), False)
                         for j in range(4)] for i in range(3)])
    want = aligned.mean(axis=(0, 1)) if method == "mean" else aligned.max(axis=(0, 1))
    got = virtual_diffraction(cube, method, align=True, subpixel=subpixel, chunk_bytes=2 * cube.pattern_nbytes,
                              **QUIET)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_align_puts_a_moving_spot_in_one_place():
    data = np.zeros((3, 3, 10, 10))
    om = np.zeros((3, 3, 2))
    for i in range(3):
        for j in range(3):
            data[i, j, 3 + i, 4 + j] = 1
            om[i, j] = (3 + i, 4 + j)
    got = virtual_diffraction(DataCube(data, Calibration(origin_map=om)), "mean", align=True, **QUIET)
    assert got.max() == 1.0 and got.sum() == 1.0  # every spot landed on the same pixel


def test_align_needs_origin_map_and_step_is_registered(cube):
    with pytest.raises(MissingCalibrationError, match="origin_map"):
        virtual_diffraction(cube, align=True, **QUIET)
    params = VirtualDiffractionParams(method="max", region=Rectangle((0, 3), (0, 3)))
    np.testing.assert_array_equal(step_function(params)(cube, params, RunContext(engine=QUIET)),
                                  cube.to_numpy()[:3, :3].max(axis=(0, 1)))


def test_nan_pattern_outside_region_is_ignored():
    data = np.ones((2, 2, 4, 4), dtype=np.float32)
    data[0, 0, 1, 1] = np.nan
    region = np.array([[False, True], [True, True]])
    np.testing.assert_array_equal(virtual_diffraction(DataCube(data), region=region, **QUIET), 1.0)
    assert np.isnan(virtual_diffraction(DataCube(data), **QUIET)[1, 1])
