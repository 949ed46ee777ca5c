"""ExplorerSession without a browser: replay equality, what is recomputed when, errors as messages."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.detectors import Annulus, Circle
from fourd_widgets.analysis.run import run
from fourd_widgets.core import DataCube
from fourd_widgets.tools.explorer import ExplorerSession


@pytest.fixture
def cube(rng) -> DataCube:
    return DataCube(rng.integers(0, 500, size=(5, 6, 12, 12), dtype=np.uint16))


@pytest.fixture
def session(cube):
    s = ExplorerSession(cube, [Circle((6, 6), 2), Annulus((6, 6), 3, 5)], build_cache=False).wait()
    yield s
    s.close()


def test_session_replays_headless(session, cube) -> None:
    session.set_selector({"kind": "rectangle", "x0": 1, "x1": 3, "y0": 2, "y1": 5})
    session.selection_method = "max"
    session.wait()
    res = run(session.params, cube)
    np.testing.assert_array_equal(res["virtual_image"], session.virtual_images)
    np.testing.assert_array_equal(res["virtual_diffraction"], session.diffraction_pattern)
    np.testing.assert_array_equal(session.diffraction_pattern, cube.array[1:3, 2:5].max(axis=(0, 1)))


def test_selector_changes_recompute_no_image(session, cube) -> None:
    passes, computed = session.full_passes, session._image_runner.computed
    session.select(4, 1)
    session.wait()
    session.diffraction = "mean"
    session.wait()
    assert session.full_passes == passes and session._image_runner.computed == computed
    np.testing.assert_array_equal(session.diffraction_pattern, cube.array.mean(axis=(0, 1)))


def test_whole_scan_pattern_is_computed_once(session) -> None:
    events = []
    session.listen(lambda e, v: events.append(e))
    session.diffraction = "max"
    session.wait()
    session.diffraction = "selection"
    session.wait()
    session.diffraction = "max"
    session.wait()
    # the second 'max' is read from the session's cache: no busy work announced for it
    assert events.count("pattern") == 3 and events.count("busy") == 2


def test_one_detector_edit_recomputes_one_image_while_dragging(cube) -> None:
    s = ExplorerSession(cube, [Circle((6, 6), 2), Annulus((6, 6), 3, 5)]).wait()
    try:
        assert s.wait_cache(60)
        shown = []
        s.listen(lambda e, v: e == "images" and shown.append(sorted(v[0])))
        ov = {"id": "d0", "kind": "circle", "x": 5.0, "y": 6.0, "r": 2.0, "color": "#ff0000", "editable": True}
        s.edit_overlays([ov], dragging=True)
        s.wait()
        assert shown == [[0]] and s.detectors[0].center == (5.0, 6.0)
        s.release()
        s.wait()
        np.testing.assert_array_equal(run(s.params, cube)["virtual_image"], s.virtual_images)
    finally:
        s.close()


class Broken:
    """A cube backing that fails on reads of whole chunks (but not single patterns)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, key):
        if isinstance(key, tuple) and isinstance(key[0], slice):
            raise OSError("the disk went away")
        return self.data[key]


def test_errors_are_messages_not_exceptions(rng) -> None:
    cube = DataCube(Broken(rng.integers(0, 9, size=(3, 4, 8, 8), dtype=np.uint16)))
    s = ExplorerSession(cube, [Circle((4, 4), 2)], build_cache=False).wait()
    try:
        assert "the disk went away" in s.error and "error" in s.status
        assert not s.exact and np.isnan(s.virtual_images).all()
    finally:
        s.close()


def test_exports_hold_what_is_shown_and_the_recipe(session, tmp_path) -> None:
    from fourd_widgets.io.results import Results

    back = Results.load(session.export_h5(tmp_path / "explorer.h5"))
    assert back.recipe == session.params
    np.testing.assert_array_equal(back["virtual_image"], session.virtual_images)
    np.testing.assert_array_equal(back["virtual_diffraction"], session.diffraction_pattern)
    png = session.export_png(tmp_path / "d1.png", "d1", colormap="magma")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
