"""Explorer defaults that fit the data: detectors on the beam, refined on the full mean, warnings, single patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fourd_widgets.analysis.beam import find_beam
from fourd_widgets.analysis.detectors import Annulus, Circle, Rectangle
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.tools.explorer import ExplorerSession

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def beam_cube(shift_even_rows: float = 0.0, scan: tuple[int, int] = (16, 16)) -> DataCube:
    return DataCube(beam_data(shift_even_rows, scan))


def beam_data(shift_even_rows: float = 0.0, scan: tuple[int, int] = (16, 16)) -> np.ndarray:
    """Patterns with a bright disk (r = 5) at (12, 33) of a 48 x 48 detector and a weak ring around it.

    ``shift_even_rows`` moves the disk along qx on even scan rows, which the 64-pattern sample
    (odd rows of a 16 x 16 scan) never reads: the full mean then has its beam elsewhere.
    """
    ii, jj = np.indices((48, 48), dtype=np.float64)
    data = np.zeros(scan + (48, 48), dtype=np.float32)
    for rx in range(scan[0]):
        cx = 12.0 + (shift_even_rows if rx % 2 == 0 else 0.0)
        q = np.hypot(ii - cx, jj - 33.0)
        data[rx] = np.where(q <= 5, 1000.0, 0.0) + np.where(np.abs(q - 14) < 2, 50.0, 1.0)
    return data


def test_default_detectors_start_on_the_beam_not_the_detector_centre() -> None:
    s = ExplorerSession(beam_cube(), build_cache=False).wait()
    try:
        bf, adf = s.detectors
        # the disk is centred on pixel (12, 33): its centroid is exact up to the rounding to 0.01 px
        assert bf.center == pytest.approx((12.0, 33.0), abs=0.01)
        assert adf.center == bf.center and adf.inner > bf.radius >= 4.5
        bf_img, adf_img = s.virtual_images
        assert bf_img.min() > 0 and adf_img.min() > 0   # both see intensity at every position
    finally:
        s.close()


def test_defaults_refined_on_the_full_mean_before_wait_returns() -> None:
    data = beam_data(shift_even_rows=4.0)
    cube = DataCube(data)
    s = ExplorerSession(cube, build_cache=True, start=False)
    try:
        sparse = s.detectors
        assert sparse[0].center == pytest.approx((12.0, 33.0), abs=0.01)  # the sample reads odd rows only
        s.start()
        s.wait()                                   # a script sees the final defaults, not the sparse ones
        full = find_beam(data.astype(np.float64).mean(axis=(0, 1)))
        assert s.detectors[0].center == pytest.approx(full.center, abs=0.01)
        assert s.detectors[1].center == s.detectors[0].center
        assert s.detectors[0].center[0] > 13.0     # it moved towards the shifted disks
        assert s.exact                             # and the images shown are those of the refined detectors
    finally:
        s.close()


def test_defaults_stay_once_the_user_edited_one() -> None:
    s = ExplorerSession(DataCube(beam_data(shift_even_rows=4.0)), build_cache=True, start=False)
    try:
        bf = s.detectors[0]
        mine = Annulus((20.0, 20.0), 3.0, 6.0)
        s.set_detector(1, mine)                    # the user moved the ADF
        s.start()
        s.wait()
        assert s.detectors == (bf, mine)           # nothing moves under the user, not even the BF
    finally:
        s.close()


def test_centre_on_beam_moves_every_detector_keeping_sizes() -> None:
    s = ExplorerSession(beam_cube(), [Circle((30.0, 10.0), 3.0), Rectangle((0, 4), (0, 6)),
                                       Annulus((5.0, 5.0), 6.0, 9.0)], build_cache=False).wait()
    try:
        centre = s.centre_on_beam()
        s.wait()
        assert centre == pytest.approx((12.0, 33.0), abs=0.01)
        c, r, a = s.detectors
        assert c.center == pytest.approx(centre, abs=0.001) and c.radius == 3.0
        assert a.center == pytest.approx(centre, abs=0.001) and (a.inner, a.outer) == (6.0, 9.0)
        assert np.mean(r.qx_range) == pytest.approx(centre[0], abs=0.001)
        assert r.qx_range[1] - r.qx_range[0] == 4 and r.qy_range[1] - r.qy_range[0] == 6
        assert s.virtual_images[0].min() > 0     # now on the disk
    finally:
        s.close()


def test_centre_on_beam_keeps_calibrated_units() -> None:
    cal = Calibration(reciprocal_step=0.5, origin=(20.0, 20.0))
    s = ExplorerSession(DataCube(beam_data(), cal),
                        [Circle((0.0, 0.0), 2.0, units="1/Å", relative_to_origin=True)], build_cache=False).wait()
    try:
        s.centre_on_beam()
        # beam at (12, 33) px = (-8, 13) px from the origin = (-4, 6.5) 1/Å at 0.5 1/Å per px
        assert s.detectors[0].center == pytest.approx((-4.0, 6.5), abs=0.01)
        assert s.detectors[0].units == "1/Å"
    finally:
        s.close()


def test_detector_warnings_name_empty_and_cut_detectors() -> None:
    s = ExplorerSession(beam_cube(scan=(2, 2)), [Circle((10.5, 10.5), 0.2), Annulus((24, 24), 4, 30),
                                                  Circle((12, 33), 4)], build_cache=False).wait()
    try:
        warn = s.detector_warnings()
        assert "covers no pixel" in warn["d0"][0] and not s.virtual_images[0].any()
        assert "past the detector edge" in warn["d1"][0]
        assert warn["d2"] == []
    finally:
        s.close()


def test_demo_sample_adf_is_not_black() -> None:
    import fourd_widgets as fw

    cube, _truth = fw.datasets.sample("strained_crystal")
    s = ExplorerSession(cube, build_cache=False).wait()
    try:
        bf, adf = s.virtual_images
        # the old default ADF (in the gap before the first-order disks) peaked at 2e-7 of the BF signal;
        # an ADF over the diffracted intensity collects at least a percent of it
        assert np.median(adf) > 0.01 * np.median(bf)
        assert s.detector_warnings() == {"d0": [], "d1": []}
    finally:
        s.close()


def test_single_pattern_builds_no_drag_cache() -> None:
    s = ExplorerSession(beam_cube(scan=(1, 1)), build_cache=True).wait()
    try:
        assert not s.wait_cache(0.5) and s.drag_cache is None
        assert s.detectors[0].center == pytest.approx((12.0, 33.0), abs=0.01)
    finally:
        s.close()


def test_max_over_a_region_shows_progress_and_can_be_cancelled() -> None:
    s = ExplorerSession(beam_cube(), build_cache=False, start=False,
                        engine_options={"chunk_bytes": 48 * 48 * 4 * 4})
    events = []
    s.listen(lambda ev, v: events.append((ev, v)) if ev in ("busy", "progress") else None)
    try:
        s.start()
        s.wait()
        events.clear()
        s.set_selector("rectangle")
        s.selection_method = "max"
        s.wait()
        busy = [v for ev, v in events if ev == "busy" and v]
        assert any("diffraction pattern" in b for b in busy)
        assert any(ev == "progress" and 0 < v[0] < v[1] for ev, v in events)
    finally:
        s.close()


needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is absent")


@needs_real
def test_real_files_warn_where_a_detector_sees_nothing() -> None:
    import fourd_widgets as fw

    de = fw.load(REAL / "de_mrc" / "20241021_00405_movie.mrc")
    # the old default: a circle of a tenth of the 4 x 8 detector at its centre, between pixel centres
    s = ExplorerSession(de, [Circle((1.5, 3.5), 0.4)], build_cache=False).wait()
    try:
        assert "covers no pixel" in s.detector_warnings()["d0"][0]
    finally:
        s.close()
    s = ExplorerSession(de, build_cache=False).wait()       # the beam-placed default sees pixels
    try:
        assert s.virtual_images[0].max() > 0
    finally:
        s.close()
    s = ExplorerSession(fw.load(REAL / "prismatic_si100_4d.emd"), build_cache=False).wait()
    try:
        assert any("past the detector edge" in m for m in s.detector_warnings()["d1"])
    finally:
        s.close()


def test_max_over_a_region_stops_on_cancel() -> None:
    s = ExplorerSession(beam_cube(), build_cache=False, start=False,
                        engine_options={"chunk_bytes": 48 * 48 * 4 * 4})
    statuses: list[str] = []
    pattern_before = []

    def listener(ev, v) -> None:
        if ev == "status":
            statuses.append(v)
        elif ev == "progress" and s._running["pattern"] is not None and v[0] < v[1]:
            s.cancel()   # the user presses cancel as soon as the first chunk reports

    try:
        s.start()
        s.wait()
        pattern_before.append(s.diffraction_pattern.copy())
        s.listen(listener)
        s.set_selector("rectangle")
        s.selection_method = "max"
        s.wait()
        assert any("cancelled" in t for t in statuses)
        # the cancelled pass delivered nothing: the pattern shown is still the one before
        np.testing.assert_array_equal(s.diffraction_pattern, pattern_before[0])
    finally:
        s.close()
