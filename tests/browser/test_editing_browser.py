"""Editing and drawing in a real browser (Voila): polygon vertices, the binned preview path, peak markers.

As in test_explorer_browser.py, Python state is read from the dumps the test notebook writes, and
every image Python showed is compared with a headless replay of ``explorer.params``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from browser_helpers import (WAIT_S, assert_replay, canvas_pixels, d0, make_cube, pixel_at, press_and_move,
                             screen_point, view_info, wait_canvas_change, wait_state, wait_views, write_notebook,
                             write_test_notebook)
from fourd_widgets.analysis.interactive import DragCache, PreviewCache, interactive_cache
from fourd_widgets.core.recipe import Recipe

pytestmark = pytest.mark.browser

SQUARE = "[Polygon(((12.0, 11.0), (12.0, 19.0), (20.0, 19.0), (20.0, 11.0)))]"


@pytest.fixture(scope="module")
def cube():
    return make_cube()


def open_in_voila(page, voila, root: Path, name: str, state_dir: Path, **notebook) -> dict:
    """Serve the explorer notebook with Voila; return the first exact state."""
    write_test_notebook(root, name, state_dir, **notebook)
    page.goto(f"{voila.base}/voila/render/{name}")
    wait_views(page, 2)
    page.locator(".fw-view").nth(0).scroll_into_view_if_needed()
    return wait_state(state_dir, lambda s: s["exact"] and s["pattern"].size > 0, "the first exact images")


def vertices(state: dict) -> list[list[float]]:
    return d0(state)["vertices"]


def recorded_vertices(state: dict) -> list[list[float]]:
    """The polygon of explorer.params (what a headless replay draws)."""
    return [list(v) for v in Recipe.from_json(state["params"]).steps[0].detectors[0].vertices]


def test_voila_polygon_insert_and_remove_vertices(page, voila, notebook_root: Path, cube, tmp_path: Path) -> None:
    """Double-click an edge inserts a vertex; Alt-click, right-click and Delete remove one; three stay."""
    first = open_in_voila(page, voila, notebook_root, "voila_polygon.ipynb", tmp_path, detectors=SQUARE)
    assert vertices(first) == [[12.0, 11.0], [12.0, 19.0], [20.0, 19.0], [20.0, 11.0]]
    info = view_info(page, 0)

    # insert: double-click the middle of the edge (12, 19)-(20, 19)
    page.mouse.dblclick(*screen_point(info, 16.0, 19.0))
    state = wait_state(tmp_path, lambda s: len(vertices(s)) == 5 and s["exact"], "the inserted vertex")
    new = vertices(state)[2]
    assert new == pytest.approx([16.0, 19.0], abs=0.15)
    assert vertices(state)[:2] + vertices(state)[3:] == vertices(first)
    assert recorded_vertices(state) == vertices(state)
    assert_replay(state, cube)

    # the new vertex is a handle: drag it out by 4 columns, the virtual image changes
    before = canvas_pixels(page, 1)
    press_and_move(page, screen_point(view_info(page, 0), *new), (40, 0), 4)
    page.mouse.up()
    state = wait_state(tmp_path, lambda s: s["exact"] and len(vertices(s)) == 5
                       and vertices(s)[2][1] == pytest.approx(new[1] + 4, abs=0.15), "the dragged vertex")
    assert not np.array_equal(state["virtual"][0], first["virtual"][0])
    wait_canvas_change(page, 1, before, "the vertex drag")
    assert_replay(state, cube)
    dragged = vertices(state)[2]

    # remove with Alt-click: the corner (20, 11)
    page.keyboard.down("Alt")
    page.mouse.click(*screen_point(view_info(page, 0), 20.0, 11.0))
    page.keyboard.up("Alt")
    state = wait_state(tmp_path, lambda s: s["exact"] and len(vertices(s)) == 4, "the Alt-click removal")
    assert vertices(state) == [[12.0, 11.0], [12.0, 19.0], dragged, [20.0, 19.0]]
    assert recorded_vertices(state) == vertices(state)
    assert_replay(state, cube)

    # insert on another edge, remove that vertex with a right-click
    page.mouse.dblclick(*screen_point(view_info(page, 0), 12.0, 15.0))
    state = wait_state(tmp_path, lambda s: len(vertices(s)) == 5, "the second inserted vertex")
    assert vertices(state)[1] == pytest.approx([12.0, 15.0], abs=0.15)
    page.mouse.click(*screen_point(view_info(page, 0), *vertices(state)[1]), button="right")
    state = wait_state(tmp_path, lambda s: s["exact"] and len(vertices(s)) == 4, "the right-click removal")
    assert vertices(state) == [[12.0, 11.0], [12.0, 19.0], dragged, [20.0, 19.0]]

    # remove with Delete: click the dragged vertex (focus it), press Delete
    page.mouse.click(*screen_point(view_info(page, 0), *dragged))
    page.keyboard.press("Delete")
    state = wait_state(tmp_path, lambda s: s["exact"] and len(vertices(s)) == 3, "the Delete removal")
    assert vertices(state) == [[12.0, 11.0], [12.0, 19.0], [20.0, 19.0]]
    assert_replay(state, cube)

    # three vertices stay: a further Alt-click changes nothing in the browser
    page.keyboard.down("Alt")
    page.mouse.click(*screen_point(view_info(page, 0), 12.0, 11.0))
    page.keyboard.up("Alt")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # drawn
    assert len(next(o for o in view_info(page, 0)["overlays"] if o["id"] == "d0")["vertices"]) == 3


def test_voila_drag_shows_preview_then_exact(page, voila, notebook_root: Path, cube, tmp_path: Path) -> None:
    """A cube larger than the cache budget: the drag paints a flagged binned preview, release the exact image.

    The same page then checks the keyboard help (one notebook less to start).
    """
    budget = DragCache.required_bytes(cube) // 3
    assert isinstance(interactive_cache(cube, budget), PreviewCache)
    first = open_in_voila(page, voila, notebook_root, "voila_preview.ipynb", tmp_path,
                          options=f", cache_budget={budget}")
    assert first["cache"] == "PreviewCache" and first["badges"] == ["", ""]
    assert view_info(page, 1)["badge"] == ""
    press_and_move(page, screen_point(view_info(page, 0), 16.0, 15.0), (30, 20), 5)  # (+2, +3) pixels
    # still holding the button: the first real-space view shows the binned preview, flagged
    page.wait_for_function("""() => { const v = document.querySelectorAll('.fw-view')[1];
        const b = v.querySelector('.fw-badge');
        return v.dataset.badge === 'preview' && b.textContent === 'preview' && b.offsetParent !== null; }""",
                           timeout=WAIT_S * 1000)
    page.mouse.up()
    state = wait_state(tmp_path, lambda s: s["exact"] and (d0(s)["x"], d0(s)["y"]) == (18.0, 18.0),
                       "the exact image after release")
    assert state["badges"] == ["", ""]
    page.wait_for_function("() => document.querySelectorAll('.fw-view')[1].dataset.badge === ''")
    assert page.locator(".fw-view").nth(1).locator(".fw-badge").is_hidden()
    assert not np.array_equal(state["virtual"][0], first["virtual"][0])
    assert np.isfinite(state["virtual"]).all()    # a preview's trimmed edges are NaN; the exact image has none
    assert_replay(state, cube)
    check_help(page)


def check_help(page) -> None:
    """'?' on a focused view opens the shortcut list of that view's keymap (py4D-browser's keys); Esc closes it."""
    views = page.locator(".fw-view")
    for index, keys, what in ((0, "W A S D", "move the selected shape"),
                              (1, "I J K L", "move the real-space selector")):
        views.nth(index).focus()
        page.keyboard.press("?")
        help_box = views.nth(index).locator(".fw-help")
        help_box.wait_for(state="visible")
        rows = help_box.locator("div").all_inner_texts()
        assert any(r.startswith(keys) and what in r for r in rows), rows
        assert any(r.startswith("↑ ← ↓ →") for r in rows) and any("insert a polygon vertex" in r for r in rows)
        page.keyboard.press("Escape")
        help_box.wait_for(state="hidden")
    views.nth(1).locator("button.fw-help-button").click()
    views.nth(1).locator(".fw-help").wait_for(state="visible")
    assert views.nth(0).locator(".fw-help").is_hidden()


MARKERS = '''\
import numpy as np
from fourd_widgets.widgets import ImageView
from fourd_widgets.widgets.overlays import make_overlay
view = ImageView(np.zeros((40, 40)), size=400)
grid = np.array([[i, j] for i in range(5, 40, 10) for j in range(5, 40, 10)], dtype=np.float64)
view.set_markers("peaks", grid, style="dot", color="#ff00ff", radius=1.0)
many = np.random.default_rng(0).random((5000, 2)) * [3.0, 39.0]     # a band of 5000 plus-markers on rows 0-3
view.set_markers("many", many, style="plus", color="#00ffff", radius=0.3)
view.set_markers("valued", [[20.0, 25.0], [30.0, 25.0]], style="dot", radius=1.0, values=[0.0, 1.0],
                 colormap="gray")
view.set_overlay(make_overlay("lattice", id="lat", x=10, y=10, ax=0, ay=10, bx=10, by=0, r=0, color="#ffff00",
                              editable=False))
view
'''


def test_voila_markers_are_drawn(page, voila, notebook_root: Path) -> None:
    """5000+ markers from binary buffers: each dot is painted in its colour where Python put it; lattice arrows."""
    write_notebook(notebook_root, "voila_markers.ipynb", MARKERS)
    page.goto(f"{voila.base}/voila/render/voila_markers.ipynb")
    wait_views(page, 1)
    page.wait_for_function("() => +document.querySelector('.fw-view').dataset.markersDrawn > 0")
    info = view_info(page, 0)
    assert info["transform"]["s"] == pytest.approx(10.0)
    assert info["markersDrawn"] == 16 + 5000 + 2
    for i in range(5, 40, 10):
        for j in range(5, 40, 10):
            assert pixel_at(page, 0, info, i, j)[:3] == (255, 0, 255), f"no magenta dot at ({i}, {j})"
    assert pixel_at(page, 0, info, 10, 30)[:3] == (0, 0, 0)            # between dots: the (black) image
    r, g, b, _ = pixel_at(page, 0, info, 30, 25)                          # value 1 of 0..1 on gray: light
    assert r == g == b and r > 200
    r, g, b, _ = pixel_at(page, 0, info, 20, 25)                          # value 0: dark
    assert r == g == b and r < 60
    r, g, b, _ = pixel_at(page, 0, info, 10, 15)                          # on lattice vector a: yellow
    assert r > 100 and g > 100 and b < 60, (r, g, b)
    # the band of 5000 markers is cyan somewhere on rows 0-3, and nowhere below row 4
    band = np.frombuffer(canvas_pixels(page, 0), np.uint8).reshape(info["box"]["ch"], info["box"]["cw"], 4)
    top = int(info["transform"]["oy"] + 3.5 * 10)
    cyan = (band[..., 0] == 0) & (band[..., 1] == 255) & (band[..., 2] == 255)
    assert cyan[:top].sum() > 1000 and cyan[top + 5:].sum() == 0

