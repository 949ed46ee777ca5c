"""Explorer state: what is shown equals a headless replay of ``explorer.params``, whatever the user did."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fourd_widgets.analysis.detectors import Annulus, Circle, Mask, Point, Polygon, Rectangle
from fourd_widgets.analysis.run import run
from fourd_widgets.analysis.virtual import virtual_image
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.widgets.explorer import Explorer, _ImageRequest
from fourd_widgets.widgets.overlays import make_overlay


@pytest.fixture
def int_cube(rng) -> DataCube:
    return DataCube(rng.integers(0, 500, size=(6, 7, 16, 16), dtype=np.uint16),
                    Calibration(real_step=2.0, reciprocal_step=0.05, origin=(8.0, 7.5)))


@pytest.fixture
def float_cube(rng) -> DataCube:
    data = rng.random((5, 6, 12, 12)).astype(np.float32)
    data[1, 2, 6, 6] = np.nan                       # a dead pixel inside the BF disc
    data[3, 3, 0, 0] = np.float32(3.4e38)           # a saturated one off it
    return DataCube(data)


@pytest.fixture
def make():
    """``make(cube, detectors, **options)``: an Explorer with its first images shown; closed after the test."""
    made: list[Explorer] = []

    def factory(cube: DataCube, *args, params=None, **kw) -> Explorer:
        ex = Explorer.from_params(cube, params, **kw) if params is not None else Explorer(cube, *args, **kw)
        made.append(ex)
        ex.wait()
        if kw.get("build_cache", True):
            ex.wait_cache(60)
        return ex

    yield factory
    for ex in made:
        ex.close()


def assert_replays(ex: Explorer, cube: DataCube) -> None:
    ex.wait()
    res = run(ex.params, cube)
    np.testing.assert_array_equal(res["virtual_image"], ex.virtual_images)
    np.testing.assert_array_equal(res["virtual_diffraction"], ex.diffraction_pattern)
    # the browser holds the same images, as float32
    for k, view in enumerate(ex.real_views):
        np.testing.assert_array_equal(view.wire_image, res["virtual_image"][k].astype(np.float32))
    np.testing.assert_array_equal(ex.diffraction_view.wire_image, res["virtual_diffraction"].astype(np.float32))


def drag(ex: Explorer, ident: str, steps: list[tuple[float, float]]) -> None:
    """What the browser sends during a drag: dragging=id, throttled overlays, then dragging=''."""
    view = ex.diffraction_view
    view.dragging = ident
    for dx, dy in steps:
        ov = view.overlay(ident)
        moved = {**ov, "x": ov["x"] + dx, "y": ov["y"] + dy} if "x" in ov else ov
        view.overlays = [moved if o["id"] == ident else o for o in view.overlays]
    view.dragging = ""


def test_unknown_arguments_are_type_errors(int_cube) -> None:
    with pytest.raises(TypeError, match="detecter"):
        Explorer(int_cube, detecter=[Circle((1, 1), 1)])
    with pytest.raises(TypeError):
        Explorer(np.zeros((2, 2, 4, 4)))


@pytest.mark.parametrize("bad, field", [({"diffraction": "median"}, "diffraction"),
                                        ({"selection_method": "sum"}, "selection_method"),
                                        ({"selector": "circle"}, "selector")])
def test_bad_options_name_the_field(int_cube, bad, field) -> None:
    with pytest.raises(ParameterError) as info:
        Explorer(int_cube, build_cache=False, **bad)
    assert info.value.field == field


def test_default_view_replays(make, int_cube) -> None:
    ex = make(int_cube, build_cache=False)
    assert [d.step for d in ex.detectors] == ["detector.circle", "detector.annulus"]
    assert ex.detectors[0].center == (8.0, 7.5)            # the calibrated origin
    assert len(ex.real_views) == 2 and ex.exact
    assert isinstance(ex.params, Recipe) and ex.params.labels == ("virtual_image", "virtual_diffraction")
    assert_replays(ex, int_cube)
    np.testing.assert_array_equal(ex.diffraction_pattern, int_cube.pattern(3, 3))


def test_drag_with_exact_cache_needs_no_second_pass(make, int_cube) -> None:
    ex = make(int_cube, [Circle((8, 8), 3)])
    drag(ex, "d0", [(1, 0), (1, 1), (0.5, 0)])
    ex.wait()
    assert ex.detectors[0].center == (10.5, 9.0) and ex.exact
    assert_replays(ex, int_cube)


def test_preview_when_the_cube_does_not_fit(make, float_cube) -> None:
    ex = make(float_cube, [Circle((6, 6), 2)], cache_budget=2000)
    view = ex.diffraction_view
    view.dragging = "d0"
    view.overlays = [{**view.overlay("d0"), "x": 5.0}]
    ex.wait()
    assert "preview" in ex.status.value and not ex.exact
    assert ex.real_views[0].badge == "preview"
    view.dragging = ""
    assert_replays(ex, float_cube)
    assert ex.real_views[0].badge == ""
    assert np.isnan(ex.virtual_images[0, 1, 2])            # NaN pixel inside the detector
    assert ex.exact


@pytest.mark.filterwarnings("ignore:.*covers no pixel")
def test_burst_of_drags_newest_wins(make, float_cube) -> None:
    ex = make(float_cube, [Circle((6, 6), 2), Annulus((6, 6), 3, 5)])
    drag(ex, "d1", [(0.25, -0.25)] * 40)
    drag(ex, "d0", [(-0.5, 0.0)] * 20)
    ex.wait()
    assert ex.detectors[1].center == (16.0, -4.0) or ex.detectors[1].center == pytest.approx((16.0, -4.0))
    assert_replays(ex, float_cube)


def test_stale_result_is_dropped(make, int_cube) -> None:
    ex = make(int_cube, [Circle((8, 8), 3)], build_cache=False)
    shown = ex.virtual_images.copy()
    version = ex.real_views[0].image_version
    stale = _ImageRequest((Circle((1, 1), 1),), (0,), final=True)
    ex._deliver_images(stale, ("exact", {0: np.zeros(int_cube.scan_shape)}, frozenset()))
    np.testing.assert_array_equal(ex.virtual_images, shown)
    assert ex.real_views[0].image_version == version


@pytest.mark.parametrize("det", [Circle((40, 40), 3), Circle((8, 8), 0), Rectangle((3, 3), (2, 9)),
                                 Polygon(((1, 1), (2, 2))), Annulus((15, 15), 2, 30), Point(-4, 2)])
@pytest.mark.filterwarnings("ignore:.*covers no pixel")
def test_detectors_off_the_pattern_or_without_area(make, int_cube, det) -> None:
    ex = make(int_cube, [det], build_cache=False)
    assert ex.exact and np.isfinite(ex.virtual_images).all()
    assert_replays(ex, int_cube)


@pytest.mark.parametrize("response", ["com_x", "com_y", "max"])
def test_responses(make, int_cube, response) -> None:
    ex = make(int_cube, [Circle((8, 8), 4)])
    ex._active.value = "d0"
    ex._response.value = response
    ex.wait()
    assert ex.detectors[0].response == response and response in ex.real_views[0].title
    drag(ex, "d0", [(1, 1)])
    assert_replays(ex, int_cube)


def test_selectors_and_diffraction_modes(make, int_cube) -> None:
    ex = make(int_cube, [Circle((8, 8), 4)], build_cache=False)
    ex.select(4, 1)
    assert_replays(ex, int_cube)
    np.testing.assert_array_equal(ex.diffraction_pattern, int_cube.pattern(4, 1))
    # a click in real space: the browser moves the selector overlay of one view
    ex.real_views[0].overlays = [{**ex.selector, "x": 2.0, "y": 6.0}]
    ex.wait()
    np.testing.assert_array_equal(ex.diffraction_pattern, int_cube.pattern(2, 6))
    assert ex.real_views[1 if len(ex.real_views) > 1 else 0].overlays[0]["x"] == 2.0
    ex.set_selector(make_overlay("rectangle", x0=1, x1=4, y0=2, y1=5))
    ex.selection_method = "max"
    assert_replays(ex, int_cube)
    np.testing.assert_array_equal(ex.diffraction_pattern, int_cube.array[1:4, 2:5].max(axis=(0, 1)))
    ex._sel_kind.value = "polygon"
    assert_replays(ex, int_cube)
    with pytest.raises(ParameterError):
        ex.diffraction = "median"
    for mode in ("mean", "max"):
        ex.diffraction = mode
        assert_replays(ex, int_cube)
    ex.select(50, -3)                                       # off the scan: clamped
    ex.diffraction = "selection"
    ex._sel_kind.value = "point"
    ex.select(50, -3)
    ex.wait()
    assert (ex.selector["x"], ex.selector["y"]) == (5.0, 0.0)
    assert_replays(ex, int_cube)


def test_add_remove_and_from_params(make, int_cube) -> None:
    ex = make(int_cube, [Circle((8, 8), 3)], build_cache=False)
    ident = ex.add_detector(Annulus((0.0, 0.0), 0.1, 0.3, units="1/Å", relative_to_origin=True, response="com_y"))
    ex.add_detector(Rectangle((2, 6), (3, 12), response="max"))
    ex.wait()
    assert len(ex.real_views) == 3 and len({o["color"] for o in ex.diffraction_view.overlays}) == 3
    ex.set_selector(make_overlay("polygon", vertices=[[0, 0], [5, 1], [2, 6]]))
    assert_replays(ex, int_cube)
    again = make(int_cube, params=ex.params.to_json(), build_cache=False)
    assert again.detectors == ex.detectors and again.selector["kind"] == "polygon"
    np.testing.assert_array_equal(again.virtual_images, ex.virtual_images)
    np.testing.assert_array_equal(again.diffraction_pattern, ex.diffraction_pattern)
    ex.remove_detector(ident)
    ex.wait()
    assert len(ex.detectors) == 2 and len(ex.real_views) == 2
    assert_replays(ex, int_cube)


def test_from_params_point_selector_and_refusals(make, int_cube) -> None:
    ex = make(int_cube, [Circle((8, 8), 3)], build_cache=False)
    ex.select(1, 2)
    ex.wait()
    recipe = ex.params
    ex.close()
    again = make(int_cube, params=recipe.to_dict(), build_cache=False)
    assert again.selector["kind"] == "point" and (again.selector["x"], again.selector["y"]) == (1, 2)
    with pytest.raises(ParameterError, match="virtual_image"):
        Explorer.from_params(int_cube, Recipe(steps=()))
    with pytest.raises((ParameterError, ValueError)):
        Explorer(int_cube, [Mask(np.ones((16, 16)))], build_cache=False)


def test_look_changes_send_no_image(make, int_cube) -> None:
    ex = make(int_cube, build_cache=False)
    versions = [v.image_version for v in [ex.diffraction_view, *ex.real_views]]
    for v in [ex.diffraction_view, *ex.real_views]:
        v.colormap, v.scale, v.contrast, v.vmax = "magma", "sqrt", "absolute", 10.0
    ex.wait()
    assert versions == [v.image_version for v in [ex.diffraction_view, *ex.real_views]]


def test_on_update_is_called_with_exact_images(int_cube) -> None:
    ex = Explorer(int_cube, [Circle((8, 8), 3)], build_cache=False)
    seen = []
    ex.on_update(lambda e: seen.append(e.updates))
    ex.wait()
    ex.select(0, 0)
    ex.wait()
    ex.close()
    assert seen and seen == sorted(seen)


class GatedArray:
    """A cube backing whose reads wait while the gate is shut, and are counted (deterministic slow passes)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()

    def __getitem__(self, key):
        if not self.gate.is_set():
            self.blocked.set()
            self.gate.wait(60)
        self.reads += 1
        return self.data[key]


def test_newer_drag_update_cancels_a_running_max_pass(make, rng) -> None:
    """A 'max' detector has no cache answer: each drag update is a chunked pass, and a newer one stops it."""
    data = GatedArray(rng.integers(0, 500, size=(6, 7, 16, 16), dtype=np.uint16))
    cube = DataCube(data)
    row = 7 * 16 * 16 * 2
    ex = make(cube, [Circle((8, 8), 3, response="max")], engine_options={"chunk_bytes": row, "workers": 1})
    runner = ex._image_runner
    computed, delivered, passes = runner.computed, runner.delivered, ex.full_passes
    view = ex.diffraction_view
    data.gate.clear()
    view.dragging = "d0"
    view.overlays = [{**view.overlay("d0"), "x": 7.0}]
    assert data.blocked.wait(60), "the first drag pass never started reading"
    reads = data.reads
    first = ex._latest_image
    for x in (6.0, 5.0, 4.0, 3.5):                       # the burst, while pass 1 waits on its first chunk
        view.overlays = [{**view.overlay("d0"), "x": x}]
    assert first.cancel.is_set()
    data.gate.set()
    ex.wait()
    # pass 1 stopped after the chunk it was reading; only the newest pass ran, over all 6 rows
    assert data.reads - reads == 1 + 6
    assert ex.cancelled_passes == 1 and ex.full_passes - passes == 2
    assert runner.computed - computed == 2 and runner.delivered - delivered == 1
    assert ex.detectors[0].center == (3.5, 8.0) and not ex.exact
    np.testing.assert_array_equal(ex.virtual_images[0], virtual_image(cube, ex.detectors[0]))
    view.dragging = ""
    assert_replays(ex, cube)
    assert ex.exact


def test_cancel_button_stops_the_exact_pass(make, rng) -> None:
    data = GatedArray(rng.integers(0, 500, size=(6, 7, 16, 16), dtype=np.uint16))
    cube = DataCube(data)
    ex = make(cube, [Circle((8, 8), 3)], build_cache=False, engine_options={"chunk_bytes": 7 * 16 * 16 * 2,
                                                                              "workers": 1})
    data.gate.clear()
    ex.set_detector("d0", Circle((7, 7), 3, response="com_x"))
    assert data.blocked.wait(60)
    ex.cancel()
    data.gate.set()
    ex.wait()
    assert ex.cancelled_passes == 1 and not ex.exact
    assert "cancelled" in ex.status.value


def test_polygon_vertex_lists_from_the_browser(make, int_cube) -> None:
    """What the view sends after inserting or removing a vertex becomes the detector record."""
    ex = make(int_cube, [Polygon(((4, 4), (4, 11), (11, 11), (11, 4)))], build_cache=False)
    view = ex.diffraction_view
    ov = view.overlay("d0")
    before = ex.virtual_images.copy()
    inserted = ov["vertices"][:2] + [[7.5, 14.0]] + ov["vertices"][2:]
    view.overlays = [{**ov, "vertices": inserted}]
    assert_replays(ex, int_cube)
    np.testing.assert_array_equal(np.array(ex.detectors[0].vertices), inserted)
    assert not np.array_equal(ex.virtual_images, before)
    view.overlays = [{**ov, "vertices": inserted[1:]}]
    assert_replays(ex, int_cube)
    assert len(ex.detectors[0].vertices) == 4 and ex.exact
