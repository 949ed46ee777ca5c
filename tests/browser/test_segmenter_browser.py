"""fw.Segmenter in a real browser (Voila + Chromium): type a new number of components and see the component
map change; click a class on the class map and see its mean pattern. Python sees both, and the recipe the
tool holds replays the classes shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from browser_helpers import WAIT_S, canvas_pixels, press_and_move, screen_point, view_info, wait_canvas_change, wait_state, wait_views, write_notebook

pytestmark = pytest.mark.browser

#: Image views in page order: component map, loading, class map, class pattern.
MAP, LOADING, CLASSES, PATTERN = 0, 1, 2, 3

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
STATE = Path({state!r})
rng = np.random.default_rng(0)
truth = np.repeat(np.array([0] * 4 + [1] * 4 + [2] * 4)[None], 10, axis=0)
a = rng.normal(0.1, 0.02, (10, 12, 16, 16)).clip(0).astype(np.float32)
for k, (i, j) in enumerate([(4, 4), (4, 11), (11, 8)]):
    a[truth == k, i - 1:i + 2, j - 1:j + 2] += 1.0
cube = fw.DataCube(a, fw.Calibration(origin=(8.0, 8.0)))
seg = fw.Segmenter(cube, fw.ClassifyParams(features=fw.FeatureParams(bin=2), n_components=3, method="kmeans",
                                           n_classes=3), size=240)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        s = seg.session
        state = {{"n": s.decomposition.maps.shape[-1], "selected": s.selected_class, "params": seg.params.to_json(),
                  "updates": seg.updates, "error": seg.error,
                  "painted": None if s.painted_labels is None else s.painted_labels.tolist()}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), labels=s.classification.labels,
                 pattern=np.zeros(1) if s.selected_class is None else s.classification.mean_patterns[s.selected_class])
        os.replace(tmp, STATE / "state.npz")

seg.on_update(dump)
seg.session.listen(lambda e, v: dump() if e in ("components", "class_pattern") and seg.session.classification is not None else None)
seg.wait()
dump()
seg
'''



def type_into(page, selector: str, text: str) -> None:
    """Type a value into a slider's readout, as a user does, and press Enter."""
    readout = page.locator(selector)
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_voila_components_and_class_pick(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_segmenter.ipynb", SETUP.format(state=str(tmp_path)), "# Segmenter under test")
    page.goto(f"{voila.base}/voila/render/voila_segmenter.ipynb")
    wait_views(page, 3)
    first = wait_state(tmp_path, lambda s: s["updates"] >= 1, "the first classes")
    assert first["error"] == "" and first["n"] == 3 and len(np.unique(first["labels"])) == 3

    # show the third component's map, then drop to one component: the map shown becomes the first one's
    page.locator(".fw-view").nth(MAP).scroll_into_view_if_needed()
    before = canvas_pixels(page, MAP)
    type_into(page, ".fw-seg-show .widget-readout", "2")
    third = wait_canvas_change(page, MAP, before, "the third component was shown")
    type_into(page, ".fw-seg-components .widget-readout", "1")
    wait_state(tmp_path, lambda s: s["n"] == 1, "one component in Python")
    first_map = wait_canvas_change(page, MAP, third, "the number of components changed")
    assert first_map == before  # the first component's map again, as drawn at the start

    # a click on the class map at a position of the right band: its class's mean pattern is shown
    page.locator(".fw-view").nth(CLASSES).scroll_into_view_if_needed()
    info = view_info(page, CLASSES)
    page.mouse.click(*screen_point(info, 5.0, 10.0))
    picked = wait_state(tmp_path, lambda s: s["selected"] is not None, "a class picked")
    assert picked["selected"] == int(picked["labels"][5, 10])
    page.wait_for_function("() => +document.querySelectorAll('.fw-view')[3].dataset.imageVersion >= 1")
    # its mean pattern has the right band's spot (rows 10..12, columns 7..9), not another band's
    pattern = picked["pattern"]
    assert pattern[10:13, 7:10].mean() > 0.5 and pattern[3:6, 3:6].mean() < 0.5

    import fourd_widgets as fw
    from fourd_widgets.core.recipe import Recipe

    rng = np.random.default_rng(0)
    truth = np.repeat(np.array([0] * 4 + [1] * 4 + [2] * 4)[None], 10, axis=0)
    a = rng.normal(0.1, 0.02, (10, 12, 16, 16)).clip(0).astype(np.float32)
    for k, (i, j) in enumerate([(4, 4), (4, 11), (11, 8)]):
        a[truth == k, i - 1:i + 2, j - 1:j + 2] += 1.0
    replay = fw.run(Recipe.from_json(picked["params"]), fw.DataCube(a))
    np.testing.assert_array_equal(replay["classify"].labels, picked["labels"])
    assert page.locator(".jp-InputArea-editor").count() == 0 and "Traceback" not in page.inner_text("body")


def test_voila_brush_strokes_paint_classes(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    """Paint mode: a click dabs, dragging the marker paints a stroke; two strokes make two classes."""
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_segmenter_brush.ipynb", SETUP.format(state=str(tmp_path)),
                   "# Segmenter brush under test")
    page.goto(f"{voila.base}/voila/render/voila_segmenter_brush.ipynb")
    wait_views(page, 3)
    first = wait_state(tmp_path, lambda s: s["updates"] >= 1, "the first classes")
    assert first["error"] == "" and len(np.unique(first["labels"])) == 3 and first["painted"] is None
    page.locator(".fw-seg-mode .widget-toggle-button", has_text="paint").click()
    page.locator(".fw-view").nth(CLASSES).scroll_into_view_if_needed()

    def stroke(a: tuple[int, int], b: tuple[int, int]) -> None:
        info = view_info(page, CLASSES)
        page.mouse.click(*screen_point(info, *a))  # the marker jumps there (a dab)
        x0, y0 = screen_point(info, *a)
        x1, y1 = screen_point(info, *b)
        press_and_move(page, (x0, y0), (x1 - x0, y1 - y0), 12)  # grab it and drag it along
        page.mouse.up()

    # class 0 down the left band (rows 1..8 of column 1): one class, all 0
    stroke((1, 1), (8, 1))
    one = wait_state(tmp_path, lambda s: s["painted"] is not None and (np.array(s["painted"]) == 0).sum() == 8,
                     "a stroke of class 0")
    assert (np.array(one["painted"])[1:9, 1] == 0).all()
    # class 1 across the other two bands (columns 5..10 of row 5)
    readout = page.locator(".fw-seg-paint-class input")
    readout.fill("1")
    readout.press("Enter")
    stroke((5, 5), (5, 10))
    two = wait_state(tmp_path, lambda s: s["painted"] is not None and (np.array(s["painted"]) == 1).sum() == 6
                     and len(np.unique(s["labels"])) == 2, "a stroke of class 1 and its classes")
    truth = np.repeat(np.array([0] * 4 + [1] * 4 + [2] * 4)[None], 10, axis=0)
    np.testing.assert_array_equal(two["labels"], (truth > 0).astype(int))  # the strokes set the classes
    assert two["error"] == "" and "Traceback" not in page.inner_text("body")


BRAGG_SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.analysis.bragg_classes import BraggClassParams
STATE = Path({state!r})
cube, truth = fw.datasets.sample("polycrystal", small=True)
peaks = fw.PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                     truth.peak_intensity)
seg = fw.Segmenter(cube, BraggClassParams(bragg_bin=2.0), peaks=peaks, size=240)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        s = seg.session
        if s.classification is None:
            return
        rec = s.bragg_record
        state = {{"selected": s.selected_class, "n": s.classification.n_classes, "error": seg.error,
                  "edits": None if rec is None else [list(e) for e in rec.edits], "updates": seg.updates}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), labels=s.classification.labels, grains=truth.grain_map)
        os.replace(tmp, STATE / "state.npz")

seg.on_update(dump)
seg.session.listen(lambda e, v: dump() if e == "class_pattern" else None)
seg.wait()
dump()
seg
'''


def test_voila_bragg_classes_merge_by_clicking(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    """Classes by Bragg-vector co-occurrence: click a grain, merge it with another by the button, split it."""
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_segmenter_bragg.ipynb", BRAGG_SETUP.format(state=str(tmp_path)),
                   "# Segmenter Bragg classes under test")
    page.goto(f"{voila.base}/voila/render/voila_segmenter_bragg.ipynb")
    wait_views(page, 3)
    first = wait_state(tmp_path, lambda s: s["updates"] >= 1 and s["edits"] is not None, "the Bragg classes")
    grains = first["grains"]
    assert first["error"] == "" and first["n"] == len(np.unique(grains))
    assert page.locator(".fw-seg-class-method select").input_value() == "bragg"
    page.locator(".fw-view").nth(CLASSES).scroll_into_view_if_needed()
    page.mouse.click(*screen_point(view_info(page, CLASSES), 0.0, 0.0))
    picked = wait_state(tmp_path, lambda s: s["selected"] is not None, "a class picked")
    a, b = int(picked["labels"][0, 0]), int(picked["labels"][15, 6])
    assert picked["selected"] == a and a != b
    other = page.locator(".fw-seg-merge-with input")
    other.fill(str(b))
    other.press("Enter")
    page.get_by_role("button", name="merge selected + other").click()
    merged = wait_state(tmp_path, lambda s: s["edits"] == [["merge", min(a, b), max(a, b)]], "the merge")
    both = (grains == grains[0, 0]) | (grains == grains[15, 6])
    assert merged["n"] == first["n"] - 1 and len(np.unique(merged["labels"][both])) == 1
    assert "Traceback" not in page.inner_text("body")
