"""DataCube: lazy views, chunking, reductions, binning, pickling."""

import pickle

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.errors import ParameterError, ShapeError


class CountingArray:
    """A backing array that records every block read (to check laziness)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.a[key]


def test_shape_and_axes(small_cube_array):
    cube = fw.DataCube(small_cube_array)
    assert cube.shape == (6, 5, 12, 10)
    assert cube.scan_shape == (6, 5) and cube.detector_shape == (12, 10)
    assert cube.dtype == np.uint16
    assert np.array_equal(cube[2, 3], small_cube_array[2, 3])
    assert np.array_equal(cube.pattern(-1, -1), small_cube_array[-1, -1])
    assert cube[1, 2, 3, 4] == small_cube_array[1, 2, 3, 4]


@pytest.mark.parametrize("shape", [(4, 4, 4), (2, 2, 2, 2, 2), (0, 3, 4, 4)])
def test_wrong_dimensionality_is_refused(shape):
    with pytest.raises(ShapeError, match="4D|empty"):
        fw.DataCube(np.zeros(shape))


def test_construction_reads_nothing(small_cube_array):
    arr = CountingArray(small_cube_array)
    cube = fw.DataCube(arr)
    view = cube.crop(rx=(1, 4)).bin(detector=2)
    assert arr.reads == []
    assert view.shape == (3, 5, 6, 5)


def test_chunks_cover_scan_once_and_respect_budget(small_cube_array):
    cube = fw.DataCube(small_cube_array)
    pattern_bytes = 12 * 10 * 2
    for budget in (1, pattern_bytes, 3 * pattern_bytes, 7 * pattern_bytes, 10**9):
        seen = np.zeros(cube.scan_shape, dtype=int)
        for ch in cube.iter_chunks(budget):
            assert ch.data.nbytes <= max(budget, pattern_bytes)
            assert np.array_equal(ch.data, small_cube_array[ch.rx, ch.ry])
            seen[ch.rx, ch.ry] += 1
        assert (seen == 1).all()


def test_chunks_align_with_storage_chunks():
    a = np.zeros((20, 4, 8, 8), dtype=np.float32)

    class Chunked(CountingArray):
        chunks = (3, 4, 8, 8)

    cube = fw.DataCube(Chunked(a))
    rows = [rx.stop - rx.start for rx, _ in cube.chunk_slices(7 * 4 * 8 * 8 * 4)]
    assert all(r % 3 == 0 for r in rows[:-1])


def test_crop_and_bin_match_numpy(small_cube_array):
    a = small_cube_array
    cube = fw.DataCube(a)
    sub = cube.crop(rx=(1, 5), ry=slice(0, 4), qx=(2, 10), qy=(1, 9))
    assert np.array_equal(sub.to_numpy(), a[1:5, 0:4, 2:10, 1:9])
    assert np.array_equal(cube[1:3, 2:5].to_numpy(), a[1:3, 2:5])
    binned = cube.bin(real=(2, 1), detector=(3, 2))
    ref = a[:6, :5, :12, :10].reshape(3, 2, 5, 1, 4, 3, 5, 2).sum(axis=(1, 3, 5, 7))
    assert np.array_equal(binned.to_numpy(), ref)
    assert binned.dtype == np.uint32  # widened: no overflow of summed counts
    mean = cube.bin(detector=2, reduce="mean").to_numpy()
    assert np.allclose(mean, a.reshape(6, 5, 6, 2, 5, 2).mean(axis=(3, 5)))
    # Views of views read the right block.
    assert np.array_equal(sub.bin(detector=2)[1, 1], a[2, 1, 2:10, 1:9].reshape(4, 2, 4, 2).sum(axis=(1, 3)))


def test_uint8_binning_does_not_overflow():
    a = np.full((2, 2, 8, 8), 255, dtype=np.uint8)
    assert int(fw.DataCube(a).bin(real=2, detector=4).to_numpy()[0, 0, 0, 0]) == 255 * 64


def test_crop_and_bin_update_calibration():
    cal = fw.Calibration(real_step=2.0, reciprocal_step=0.01, origin=(8.0, 6.0),
                         origin_map=np.full((4, 4, 2), 8.0))
    cube = fw.DataCube(np.zeros((4, 4, 16, 12)), cal)
    c = cube.crop(qx=(4, 16), qy=(2, 12))
    assert c.calibration.origin == (4.0, 4.0)
    b = cube.bin(real=2, detector=2)
    assert b.calibration.real_step == 4.0 and b.calibration.reciprocal_step == 0.02
    # origin at pixel 8 (centre of pixel 8) lands at 3.75 in 2x binned pixels: (8 + 0.5)/2 - 0.5
    assert b.calibration.origin == (3.75, 2.75)
    assert b.calibration.origin_map.shape == (2, 2, 2)


def test_bad_crop_and_bin_arguments():
    cube = fw.DataCube(np.zeros((4, 4, 8, 8)))
    with pytest.raises(ShapeError, match="selects nothing"):
        cube.crop(rx=(3, 3))
    with pytest.raises(ParameterError, match="detector binning"):
        cube.bin(detector=0)
    with pytest.raises(ShapeError, match="empty"):
        cube.bin(detector=9)
    with pytest.raises(ParameterError, match="reduce"):
        cube.bin(detector=2, reduce="median")


def test_reductions_match_numpy(small_cube_array):
    a = small_cube_array
    cube = fw.DataCube(a)
    budget = 2 * 12 * 10 * 2  # force many chunks
    assert np.allclose(cube.mean_pattern(chunk_bytes=budget), a.mean(axis=(0, 1)))
    assert np.array_equal(cube.max_pattern(chunk_bytes=budget), a.max(axis=(0, 1)))
    assert np.allclose(cube.median_pattern(memory_budget=5 * 10 * 6 * 2), np.median(a, axis=(0, 1)))
    region = np.zeros((6, 5), bool)
    region[1:3, 2:4] = True
    assert np.allclose(cube.mean_pattern(region), a[1:3, 2:4].mean(axis=(0, 1)))
    assert np.array_equal(cube.max_pattern(region), a[1:3, 2:4].max(axis=(0, 1)))
    assert np.allclose(cube.median_pattern(region), np.median(a[1:3, 2:4].reshape(-1, 12, 10), axis=0))
    with pytest.raises(ShapeError, match="no scan positions"):
        cube.mean_pattern(np.zeros((6, 5), bool))
    with pytest.raises(ShapeError, match="scan shape"):
        cube.mean_pattern(np.ones((5, 6), bool))


def test_origin_map_must_fit_scan():
    cube = fw.DataCube(np.zeros((4, 4, 8, 8)))
    with pytest.raises(ShapeError, match="origin_map"):
        cube.calibration = fw.Calibration(origin_map=np.zeros((3, 4, 2)))


def test_pickle_in_memory_cube(small_cube_array):
    cube = fw.DataCube(small_cube_array, fw.Calibration(real_step=3.0))
    back = pickle.loads(pickle.dumps(cube.crop(rx=(1, 3))))
    assert np.array_equal(back.to_numpy(), small_cube_array[1:3])
    assert back.calibration.real_step == 3.0


def test_dask_backing(small_cube_array):
    da = pytest.importorskip("dask.array")
    d = da.from_array(small_cube_array, chunks=(2, 5, 12, 10))
    cube = fw.DataCube(d)
    assert cube.storage_chunks == (2, 5, 12, 10)
    assert np.allclose(cube.mean_pattern(), small_cube_array.mean(axis=(0, 1)))
    assert np.array_equal(cube[3, 1], small_cube_array[3, 1])


def test_mean_pattern_can_ignore_dead_frames(small_cube_array):
    a = small_cube_array.astype(np.float32)
    a[2, 3] = np.nan          # a dead frame
    a[:, :, 0, 0] = np.nan    # a pixel that is never finite
    cube = fw.DataCube(a)
    assert np.isnan(cube.mean_pattern()).all()  # the dead frame poisons a plain mean
    m = cube.mean_pattern(ignore_nan=True)
    keep = np.ones((6, 5), bool)
    keep[2, 3] = False
    assert np.allclose(m[1:, 1:], a[keep][:, 1:, 1:].mean(axis=0))
    assert np.isnan(m[0, 0])


def test_probe_template_survives_a_nan_frame():
    cube, _ = fw.datasets.sample("strained_crystal", small=True)
    data = cube.to_numpy().astype(np.float32)
    data[0, 0] = np.nan
    nan_cube = fw.DataCube(data, cube.calibration)
    t_nan = fw.probe_template(nan_cube, fw.ProbeTemplateParams())
    t_ref = fw.probe_template(fw.DataCube(np.delete(data.reshape(-1, *data.shape[2:]), 0, axis=0)[None],
                                          cube.calibration), fw.ProbeTemplateParams())
    assert t_nan.radius == pytest.approx(t_ref.radius, rel=1e-6)
    assert np.allclose(t_nan.centre, t_ref.centre)
