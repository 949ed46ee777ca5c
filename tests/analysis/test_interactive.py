"""Interactive virtual imaging: DragCache, PreviewCache, LatestOnly.

The drag cache must give the reference virtual image (same pixel-centre
membership) exactly for integer data and to rounding for float data, for every
detector shape, position and size, including detectors partly or wholly off the
detector, zero-area shapes, NaN and saturated pixels. No wall-clock asserts.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fourd_widgets.analysis.detectors import (
    Annulus,
    Circle,
    Mask,
    Point,
    Polygon,
    Rectangle,
    detector_mask,
    pixel_scale,
    reference_origin,
)
from fourd_widgets.analysis.interactive import (
    DragCache,
    DragResult,
    PreviewCache,
    interactive_cache,
)
from fourd_widgets.analysis.virtual import virtual_image
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import CancelledError, ParameterError
from fourd_widgets.tools.worker import LatestOnly  # a threading utility of the tools layer

pytestmark = pytest.mark.filterwarnings("ignore:.*covers no pixel:UserWarning")

SCAN = (5, 7)
DET = (11, 13)


def reference(cube: DataCube, detector, calibration: Calibration | None = None) -> np.ndarray:
    """Plain numpy: sum of mask * data over the pixels the mask weighs (NaN elsewhere ignored)."""
    data = cube.to_numpy().astype(np.float64)
    w = detector_mask(detector, cube.detector_shape, calibration or cube.calibration).astype(np.float64)
    return np.where(w != 0, data * w, 0.0).sum(axis=(2, 3))


def reference_com(cube: DataCube, detector, calibration: Calibration | None = None) -> np.ndarray:
    """Plain numpy centre of mass in the detector's units and frame (NaN where no intensity)."""
    cal = calibration or cube.calibration
    axis = 0 if detector.response == "com_x" else 1
    q = np.arange(cube.detector_shape[axis], dtype=np.float64)
    if detector.relative_to_origin:
        q = q - reference_origin(cal)[axis]
    q = (q[:, None] if axis == 0 else q[None, :]) * pixel_scale(detector.units, cal)
    data = cube.to_numpy().astype(np.float64)
    w = detector_mask(detector, cube.detector_shape, cal).astype(np.float64)
    total = np.where(w != 0, data * w, 0.0).sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w != 0, data * w * q, 0.0).sum(axis=(2, 3)) / total


@functools.cache
def cube_of(kind: str) -> DataCube:
    """Small cubes, one per data kind, with saturated or NaN pixels where they can occur."""
    rng = np.random.default_rng(abs(hash(kind)) % 2**32)
    shape = SCAN + DET
    if kind == "uint16":
        a = rng.integers(0, 200, size=shape).astype(np.uint16)
        a[rng.random(shape) < 0.05] = 65535  # saturated
    elif kind == "uint8":
        a = rng.integers(0, 256, size=shape).astype(np.uint8)
    elif kind == "int16":
        a = rng.integers(-32768, 32767, size=shape, endpoint=True).astype(np.int16)
    elif kind == "uint32":
        a = rng.integers(0, 2**32 - 1, size=shape, endpoint=True).astype(np.uint32)
    elif kind == "bool":
        a = rng.random(shape) < 0.5
    elif kind == "float32":
        a = rng.gamma(2.0, 10.0, size=shape).astype(np.float32)
        a[rng.random(shape) < 0.03] = np.nan
    elif kind == "float64":
        a = rng.normal(0.0, 1e3, size=shape)
        a[1, 2, 4, :] = np.nan  # a whole detector row NaN in one pattern
        a[:, :, 7, 0] = np.nan  # a dead pixel at the start of a row, in every pattern
    else:
        raise ValueError(kind)
    return DataCube(a)


@functools.cache
def cache_of(kind: str, moments: bool = False) -> DragCache:
    return DragCache(cube_of(kind), moments=moments).build(progress=False)


coord = st.floats(-8.0, 20.0, allow_nan=False)
size = st.floats(0.0, 16.0, allow_nan=False)


@st.composite
def detectors(draw, responses=("sum",)):
    kind = draw(st.sampled_from(["point", "circle", "annulus", "rectangle", "polygon", "mask"]))
    resp = draw(st.sampled_from(responses))
    if kind == "point":
        return Point(draw(coord), draw(coord), response=resp)
    if kind == "circle":
        return Circle((draw(coord), draw(coord)), draw(size), response=resp)
    if kind == "annulus":
        a, b = sorted((draw(size), draw(size)))
        return Annulus((draw(coord), draw(coord)), a, b, response=resp)
    if kind == "rectangle":
        x0, x1 = sorted((draw(coord), draw(coord)))
        y0, y1 = sorted((draw(coord), draw(coord)))
        return Rectangle((x0, x1), (y0, y1), response=resp)
    if kind == "polygon":
        n = draw(st.integers(0, 7))
        return Polygon(tuple((draw(coord), draw(coord)) for _ in range(n)), response=resp)
    weights = draw(st.sampled_from(["bool", "int", "float"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if weights == "bool":
        m = rng.random(DET) < draw(st.floats(0.0, 1.0))
    elif weights == "int":
        m = rng.integers(-3, 4, size=DET) * (rng.random(DET) < 0.4)
    else:
        m = rng.normal(size=DET) * (rng.random(DET) < 0.4)
    return Mask(m, response=resp)


def assert_same(got: np.ndarray, want: np.ndarray, exact: bool) -> None:
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), "NaN in different places"
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        scale = max(1.0, float(np.nanmax(np.abs(want), initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * scale, equal_nan=True)


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- correctness against the plain numpy reference -------------------------------------------
@FAST
@given(det=detectors(), kind=st.sampled_from(["uint16", "uint8", "int16", "bool"]))
def test_integer_data_exact(det, kind):
    """Every shape, anywhere (also off the detector), equals the numpy reference bit for bit."""
    cube = cube_of(kind)
    got = cache_of(kind).image(det)
    want = reference(cube, det)
    integral = not (isinstance(det, Mask) and det.mask.dtype.kind == "f")
    assert_same(got, want, exact=integral)


@FAST
@given(det=detectors(), kind=st.sampled_from(["float32", "float64", "uint32"]))
def test_float_and_wide_data(det, kind):
    """Float data (with NaN) to rounding; NaN only where the detector weighs a NaN pixel."""
    got = cache_of(kind).image(det)
    want = reference(cube_of(kind), det)
    exact = kind == "uint32" and not (isinstance(det, Mask) and det.mask.dtype.kind == "f")
    assert_same(got, want, exact=exact)


@settings(max_examples=25, deadline=None)
@given(dets=st.lists(detectors(), min_size=2, max_size=6))
def test_matches_chunked_virtual_image(dets):
    """The same images as ``fw.virtual_image`` (the chunked reference), exactly for uint16."""
    cube = cube_of("uint16")
    got = np.stack([cache_of("uint16").image(d) for d in dets])
    want = virtual_image(cube, dets, progress=False)
    if any(isinstance(d, Mask) and d.mask.dtype.kind == "f" for d in dets):
        # the chunked path applies float weights to 16-bit data in float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))
    else:
        assert_same(got, want, exact=True)


@settings(max_examples=30, deadline=None)
@given(strokes=st.lists(st.tuples(st.integers(0, DET[0] - 1), st.integers(0, DET[1] - 1),
                                  st.integers(-2, 2)), min_size=1, max_size=30),
       kind=st.sampled_from(["uint16", "float64"]))
def test_incremental_mask_updates(strokes, kind):
    """A mask edited pixel by pixel (the incremental path) stays equal to the reference."""
    cache = cache_of(kind)
    w = np.zeros(DET, np.int64)
    for x, y, v in strokes:
        w[max(0, x - 1):x + 2, y] += v
        got = cache.image(Mask(w.copy()))
        assert_same(got, reference(cube_of(kind), Mask(w.copy())), exact=kind == "uint16")


def test_incremental_path_is_taken_and_exact():
    """Painting one pixel into a large mask applies a handful of terms to the previous image."""
    cube = cube_of("uint16")
    cache = DragCache(cube).build(progress=False)
    w = np.zeros(DET, bool)
    w[1:10, 2:12] = True
    cache.image(Mask(w))
    state = cache._state["S:sum"]
    before = state.out.copy()
    w2 = w.copy()
    w2[0, 5] = True
    got = cache.image(Mask(w2))
    assert state.steps == 1 and not np.array_equal(state.out, before)
    assert_same(got, reference(cube, Mask(w2)), exact=True)


@pytest.mark.parametrize("det", [
    Circle((5, 6), 0.0), Annulus((5, 6), 3.0, 3.0), Rectangle((2, 2), (0, 13)), Polygon(((1, 1), (5, 5))),
    Circle((-40, -40), 3.0), Rectangle((20, 30), (0, 13)), Point(-3, 4), Mask(np.zeros(DET)),
])
def test_zero_area_and_off_detector_give_zeros(det):
    img = cache_of("uint16").image(det)
    assert img.shape == SCAN and img.dtype == np.float64
    assert not img.any()


def test_saturated_pixels_do_not_overflow():
    a = np.full(SCAN + DET, 65535, np.uint16)
    cache = DragCache(a).build(progress=False)
    assert cache._S.dtype == np.uint32
    full = cache.image(Rectangle((0, DET[0]), (0, DET[1])))
    assert np.all(full == 65535.0 * DET[0] * DET[1])


def test_wide_rows_widen_the_cache_instead_of_overflowing():
    """Saturated 16-bit rows of 600 pixels: moments exceed uint32, the cache goes 64-bit."""
    a = np.full((2, 1, 2, 600), 65535, np.uint16)
    cache = DragCache(a, moments=True).build(progress=False)
    assert cache._S.dtype == np.int64
    det = Rectangle((0, 2), (0, 600), response="com_y")
    np.testing.assert_allclose(cache.image(det), 299.5, rtol=1e-15)
    assert np.all(cache.image(Rectangle((0, 2), (0, 600))) == 65535.0 * 1200)


def test_nan_outside_the_detector_does_not_poison():
    """NaN at the start of a row must not spread along the prefix sum to later pixels."""
    a = np.ones(SCAN + DET)
    a[2, 3, 4, 0] = np.nan
    a[0, 0, 6, 12] = np.nan
    cache = DragCache(a).build(progress=False)
    right = cache.image(Rectangle((0, DET[0]), (1, DET[1] - 1)))
    assert np.all(right == DET[0] * (DET[1] - 2))
    with_first = cache.image(Rectangle((4, 5), (0, 3)))
    assert np.isnan(with_first[2, 3]) and np.isnan(with_first).sum() == 1
    zero_weight = np.ones(DET)
    zero_weight[4, 0] = 0.0  # the mask covers the NaN pixel with weight 0: no NaN
    img = cache.image(Mask(zero_weight))
    assert np.isnan(img[0, 0]) and np.isnan(img).sum() == 1


# --- responses, calibration --------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(det=detectors(responses=("com_x", "com_y", "max")), moments=st.booleans(),
       kind=st.sampled_from(["uint16", "float64"]))
def test_other_responses(det, moments, kind):
    """Centre of mass to rounding of the numpy reference; 'max' (reference path) as virtual_image."""
    cube = cube_of(kind)
    got = cache_of(kind, moments).image(det)
    want = virtual_image(cube, det, progress=False)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    if det.response == "max":
        np.testing.assert_array_equal(got, want)
        return
    np.testing.assert_allclose(got, reference_com(cube, det), rtol=1e-9, atol=1e-9, equal_nan=True)
    # the chunked path may weigh 16-bit data in float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_calibrated_units_and_origin():
    cal = Calibration(reciprocal_step=0.05, origin=(5.2, 6.1))
    cube = cube_of("uint16").with_calibration(cal)
    cache = DragCache(cube, moments=True).build(progress=False)
    for resp in ("sum", "com_x", "com_y"):
        det = Annulus((0.0, 0.0), 0.1, 0.25, units="1/Å", relative_to_origin=True, response=resp)
        got = cache.image(det)
        if resp == "sum":
            np.testing.assert_array_equal(got, reference(cube, det))
        else:
            np.testing.assert_allclose(got, reference_com(cube, det), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got, virtual_image(cube, det, progress=False), rtol=1e-5, atol=1e-7)
    other = Calibration(origin=(2.0, 3.0))  # a calibration passed per query wins over the cube's
    det = Circle((0, 0), 2.5, relative_to_origin=True)
    np.testing.assert_array_equal(cache.image(det, other), reference(cube, det, other))


def test_complex_mask():
    rng = np.random.default_rng(3)
    m = rng.normal(size=DET) + 1j * rng.normal(size=DET)
    cube = cube_of("uint16")
    got = cache_of("uint16").image(Mask(m))
    assert got.dtype.kind == "c"
    data = cube.to_numpy().astype(np.float64)
    np.testing.assert_allclose(got, (data * m).sum(axis=(2, 3)), rtol=1e-12)
    np.testing.assert_allclose(got, virtual_image(cube, Mask(m), progress=False), rtol=1e-5)


# --- building ------------------------------------------------------------------------------------
def test_build_tiny_cube_with_progress_and_size():
    a = np.arange(np.prod((3, 4, 5, 6)), dtype=np.uint16).reshape(3, 4, 5, 6)
    seen = []
    cache = DragCache(a, chunk_bytes=5 * 6 * 2 * 4)
    assert not cache.built and cache.nbytes == 0
    cache.build(progress=lambda done, total: seen.append((done, total)))
    assert cache.built
    assert seen[-1] == (3, 3)
    assert cache.nbytes == DragCache.required_bytes(a) == 3 * 4 * 5 * 6 * 4
    np.testing.assert_array_equal(cache._S, np.cumsum(a, axis=3, dtype=np.uint32).reshape(12, 5, 6).transpose(1, 2, 0))
    assert cache.build() is cache  # idempotent


def test_scan_chunks_that_split_rows():
    """Blocks of part of a scan row (chunk smaller than a row) land at the right positions."""
    a = cube_of("uint16").to_numpy()
    cache = DragCache(a, chunk_bytes=2 * DET[0] * DET[1] * 2).build(progress=False)
    det = Circle((5, 6), 4.0)
    np.testing.assert_array_equal(cache.image(det), reference(DataCube(a), det))


def test_image_builds_on_demand():
    cache = DragCache(cube_of("uint8"))
    det = Circle((5, 6), 3.0)
    np.testing.assert_array_equal(cache.image(det), reference(cube_of("uint8"), det))
    assert cache.built


def test_cancel_during_build_keeps_nothing():
    a = cube_of("uint16").to_numpy()
    cancel = threading.Event()
    cache = DragCache(a, chunk_bytes=DET[0] * DET[1] * 2 * SCAN[1])  # one scan row per block

    def progress(done, total):
        if done == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        cache.build(progress=progress, cancel=cancel)
    assert not cache.built and cache.nbytes == 0
    cancel.clear()
    cache.build(progress=False, cancel=cancel)
    det = Rectangle((1, 9), (2, 11))
    np.testing.assert_array_equal(cache.image(det), reference(cube_of("uint16"), det))


def test_build_in_a_worker_thread():
    cache = DragCache(cube_of("uint16"))
    done = threading.Event()
    t = threading.Thread(target=lambda: (cache.build(progress=False), done.set()))
    t.start()
    t.join(120)
    assert done.is_set() and cache.built


def test_budget_refused_and_fits():
    a = cube_of("uint16").to_numpy()
    need = DragCache.required_bytes(a)
    assert DragCache.fits(a, need) and not DragCache.fits(a, need - 1)
    assert DragCache.required_bytes(a, moments=True) == 2 * need
    with pytest.raises(ParameterError, match="PreviewCache"):
        DragCache(a, budget_bytes=need - 1)
    assert isinstance(interactive_cache(a, need), DragCache)
    assert isinstance(interactive_cache(a, need - 1), PreviewCache)


def test_release_frees_and_rebuilds():
    cache = DragCache(cube_of("uint16")).build(progress=False)
    cache.release()
    assert not cache.built and cache.nbytes == 0
    det = Circle((5, 6), 3.0)
    np.testing.assert_array_equal(cache.image(det), reference(cube_of("uint16"), det))


# --- preview ---------------------------------------------------------------------------------------
def coarse_cube() -> DataCube:
    """uint16 data constant over 2x2 detector blocks (so binning by 2 loses nothing)."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 1000, size=(6, 8, 6, 7)).astype(np.uint16)
    return DataCube(np.repeat(np.repeat(small, 2, axis=2), 2, axis=3))


def test_preview_is_flagged_and_exact_on_whole_bins():
    cube = coarse_cube()
    pc = PreviewCache(cube, detector_bin=2).build(progress=False)
    det = Rectangle((2, 8), (4, 12))  # whole 2x2 bins
    r = pc.image(det)
    assert isinstance(r, DragResult) and r.is_preview and r.binning == (1, 1, 2, 2)
    assert r.image.shape == cube.scan_shape
    np.testing.assert_array_equal(r.image, reference(cube, det))
    f = pc.full(det)
    assert not f.is_preview and f.binning == (1, 1, 1, 1)
    np.testing.assert_array_equal(f.image, virtual_image(cube, det, progress=False))


def test_preview_scan_binning_and_expanded():
    cube = coarse_cube()
    pc = PreviewCache(cube, scan_bin=2, detector_bin=2).build(progress=False)
    det = Rectangle((0, 12), (2, 14))
    r = pc.image(det)
    assert r.is_preview and r.binning == (2, 2, 2, 2) and r.image.shape == (3, 4)
    exact = reference(cube, det)
    np.testing.assert_allclose(r.image, exact.reshape(3, 2, 4, 2).mean(axis=(1, 3)))
    assert r.expanded().shape == cube.scan_shape


def test_preview_trims_remainders_and_streams_in_small_blocks():
    """Odd scan and detector sizes, blocks of one binned row: the same as binning by hand."""
    rng = np.random.default_rng(8)
    a = rng.integers(0, 5000, size=(7, 9, 13, 11)).astype(np.uint16)
    pc = PreviewCache(a, scan_bin=2, detector_bin=3, chunk_bytes=1).build(progress=False)
    det = Rectangle((0, 12), (0, 9))  # whole bins: 4 x 3 of them
    r = pc.image(det)
    assert r.binning == (2, 2, 3, 3) and r.image.shape == (3, 4)
    by_hand = a[:6, :8, :12, :9].astype(np.float64).sum(axis=(2, 3)).reshape(3, 2, 4, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(r.image, by_hand, rtol=1e-12)
    assert np.isnan(r.expanded()[6]).all() and r.expanded().shape == (7, 9)


def test_preview_of_float_data_with_nan():
    a = np.ones((4, 4, 8, 8), np.float32)
    a[1, 2, 0, 0] = np.nan
    pc = PreviewCache(a, detector_bin=2).build(progress=False)
    away = pc.image(Rectangle((2, 8), (0, 8))).image
    assert np.all(away == 48.0)
    near = pc.image(Rectangle((0, 2), (0, 2))).image
    assert np.isnan(near[1, 2]) and np.isnan(near).sum() == 1


def test_preview_centre_of_mass_uses_bin_centres():
    cube = coarse_cube()
    pc = PreviewCache(cube, detector_bin=2).build(progress=False)
    for resp in ("com_x", "com_y"):
        det = Rectangle((2, 10), (0, 14), response=resp)
        want = virtual_image(cube, det, progress=False)
        np.testing.assert_allclose(pc.image(det).image, want, rtol=1e-12)


def test_preview_budget_chooses_binning_and_reads_from_disk(tmp_path):
    a = cube_of("uint16").to_numpy()
    path = tmp_path / "cube.npy"
    np.save(path, a)
    cube = DataCube(np.load(path, mmap_mode="r"))
    budget = DragCache.required_bytes(a) // 3
    pc = interactive_cache(cube, budget)
    assert isinstance(pc, PreviewCache)
    pc.build(progress=False)
    assert pc.nbytes <= budget and pc.binning[2] > 1
    det = Circle((5, 6), 4.0)
    r = pc.image(det)
    assert r.is_preview and np.isfinite(r.image).all()
    np.testing.assert_array_equal(pc.full(det).image, reference(DataCube(a), det))


def test_preview_max_is_exact_not_preview():
    pc = PreviewCache(coarse_cube(), detector_bin=2).build(progress=False)
    det = Circle((6, 7), 3.0, response="max")
    r = pc.image(det)
    assert not r.is_preview
    np.testing.assert_array_equal(r.image, virtual_image(coarse_cube(), det, progress=False))


def test_drag_cache_query_is_not_preview():
    r = cache_of("uint16").query(Circle((5, 6), 3.0))
    assert not r.is_preview and r.binning == (1, 1, 1, 1)


# --- newest request wins -------------------------------------------------------------------------
def test_latest_only_burst():
    """100 submits while the first computation is held: only the first and the last run."""
    gate = threading.Event()
    started = threading.Event()
    ran, delivered = [], []

    def fn(req):
        ran.append(req)
        started.set()
        gate.wait(30)
        return req * 10

    runner = LatestOnly(fn, lambda req, res: delivered.append((req, res)))
    runner.submit(0)
    assert started.wait(30)
    for i in range(1, 100):
        runner.submit(i)
    gate.set()
    assert runner.wait_idle(30)
    runner.close(30)
    assert delivered == [(99, 990)]
    assert ran == [0, 99]
    assert runner.computed == 2 and runner.delivered == 1


def test_latest_only_free_running_burst():
    """Without holding the worker: the last result is for the last request, far fewer than 100 ran."""
    delivered = []
    cache = cache_of("uint16")
    dets = [Circle((5 + 0.01 * i, 6), 1 + 0.05 * i) for i in range(100)]
    runner = LatestOnly(lambda i: cache.image(dets[i]), lambda req, res: delivered.append((req, res)))
    for i in range(100):
        runner.submit(i)
    assert runner.wait_idle(60)
    runner.close(30)
    assert delivered[-1][0] == 99
    np.testing.assert_array_equal(delivered[-1][1], reference(cube_of("uint16"), dets[99]))
    assert runner.computed <= 100 and runner.delivered <= runner.computed
    assert [r for r, _ in delivered] == sorted(r for r, _ in delivered)


def test_latest_only_errors_do_not_kill_the_worker():
    errors, delivered = [], []

    def fn(req):
        if req == "bad":
            raise ValueError("boom")
        return req

    runner = LatestOnly(fn, lambda req, res: delivered.append(res), on_error=lambda req, exc: errors.append(exc))
    runner.submit("bad")
    assert runner.wait_idle(30)
    runner.submit("good")
    assert runner.wait_idle(30)
    runner.close(30)
    assert isinstance(errors[0], ValueError) and delivered == ["good"]
    with pytest.raises(RuntimeError):
        runner.submit("late")

