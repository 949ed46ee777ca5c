"""The RadialProfiler in a real browser (JupyterLab + Chromium): drag the outer edge of a k band on the pattern
and the V(k) plot changes; Python sees the new band, and what it shows equals a headless replay."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import (WAIT_S, press_and_move, read_state, screen_point, view_info, wait_state, wait_views,
                             write_notebook)

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
STATE = Path({state!r})
rng = np.random.default_rng(4)
x, y = np.meshgrid(np.arange(48) - 23.6, np.arange(48) - 24.2, indexing="ij")
r, th = np.hypot(x, y), np.arctan2(y, x)
data = np.stack([[np.exp(-0.5 * ((r - 10) / 1.2) ** 2) * (1 + 0.8 * np.cos(6 * th + rng.uniform(0, 7)))
                  + np.exp(-0.5 * ((r - 17) / 1.5) ** 2) + 0.1 for _ in range(8)] for _ in range(8)])
cube = fw.DataCube(data, fw.Calibration(origin=(23.6, 24.2), reciprocal_step=0.025, reciprocal_units="1/Å"))
profiler = fw.RadialProfiler(cube, fem=fw.polar.FEMParams(k_ranges=((0.22, 0.26),)), size=320)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        s = profiler.session
        state = {{"bands": [list(b) for b in s.fem_params.k_ranges], "params": profiler.params.to_json(),
                  "V_band": [None if not np.isfinite(v) else float(v) for v in profiler.plots.V_band.y],
                  "title": profiler.plots.V_figure.title, "updates": profiler.updates,
                  "message": profiler.bands_message.value}}
        tmp = STATE / "state.tmp.json"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, STATE / "state.json")

profiler.on_update(dump)
profiler.wait()
dump()
profiler
'''



def v_plot(page) -> dict:
    """The V(k) figure as drawn: its title and the path of every line."""
    return page.evaluate("""() => { const f = document.querySelector('.fw-profiler-vk');
        return {title: Array.from(f.querySelectorAll('text')).map(t => t.textContent).join('|'),
                paths: Array.from(f.querySelectorAll('path.line')).map(p => p.getAttribute('d') || '')}; }""")


def test_lab_drag_a_k_band_and_v_of_k_changes(page, lab, notebook_root: Path, tmp_path: Path) -> None:
    name = "lab_profiler.ipynb"
    write_notebook(notebook_root, name, SETUP.format(state=str(tmp_path)), "# RadialProfiler under test")
    page.goto(f"{lab.base}/lab/workspaces/profiler/tree/{name}?reset")
    page.wait_for_function("""(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === name && w.sessionContext && w.sessionContext.session; }""",
                           arg=name)
    page.evaluate("""async () => { const w = window.jupyterapp.shell.currentWidget;
        await w.sessionContext.ready; await w.context.ready;
        await window.jupyterapp.commands.execute('notebook:run-all-cells'); }""")
    wait_views(page, 2)
    first = wait_state(tmp_path, lambda s: s["updates"] >= 1, "the first V(k)")
    assert first["bands"] == [[0.22, 0.26]]
    page.wait_for_function("() => { const f = document.querySelector('.fw-profiler-vk');"
                           " return f && f.querySelectorAll('path.line').length >= 3; }")
    page.locator(".fw-view").nth(0).scroll_into_view_if_needed()
    before = v_plot(page)
    info = view_info(page, 0)
    band = next(o for o in info["overlays"] if o["id"] == "band0")
    # the outer-edge handle of the annulus sits at (x, y + r_out); drag it 4 detector px outwards (+y)
    start = screen_point(info, band["x"], band["y"] + band["r_out"])
    px = info["transform"]["s"] * info["box"]["width"] / info["box"]["cw"]
    press_and_move(page, start, (4 * px, 0), 8)
    page.mouse.up()
    moved = wait_state(tmp_path, lambda s: s["bands"][0][1] > 0.26 + 0.05, "the band's outer edge dragged out")
    lo, hi = moved["bands"][0]
    assert lo == pytest.approx(0.22, abs=1e-6) and hi == pytest.approx(0.26 + 4 * 0.025, abs=0.03)
    assert moved["message"] == ""
    # Python's V(k) inside the band grew with it, and the browser redrew the plot
    assert sum(v is not None for v in moved["V_band"]) > sum(v is not None for v in first["V_band"])
    page.wait_for_function("""(old) => { const f = document.querySelector('.fw-profiler-vk');
        const paths = Array.from(f.querySelectorAll('path.line')).map(p => p.getAttribute('d') || '');
        return JSON.stringify(paths) !== JSON.stringify(old); }""", arg=before["paths"], timeout=WAIT_S * 1000)
    # the drag sends several updates: compare once the browser shows the last one Python wrote
    deadline = time.monotonic() + WAIT_S
    while True:
        moved, after = read_state(tmp_path), v_plot(page)
        if moved["title"] in after["title"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after["title"] != before["title"] and moved["title"] in after["title"]
    # what the browser shows is the headless replay of the recorded parameters
    import fourd_widgets as fw
    from fourd_widgets.core.recipe import Recipe
    from fourd_widgets.tools.radial_profiler_compute import band_curve

    recipe = Recipe.from_json(moved["params"])
    rng = np.random.default_rng(4)
    x, y = np.meshgrid(np.arange(48) - 23.6, np.arange(48) - 24.2, indexing="ij")
    r, th = np.hypot(x, y), np.arctan2(y, x)
    data = np.stack([[np.exp(-0.5 * ((r - 10) / 1.2) ** 2) * (1 + 0.8 * np.cos(6 * th + rng.uniform(0, 7)))
                      + np.exp(-0.5 * ((r - 17) / 1.5) ** 2) + 0.1 for _ in range(8)] for _ in range(8)])
    res = fw.run(recipe, fw.DataCube(data), progress=False)
    v = res["fem"].variance
    _, inside = band_curve(v.k, v.V_mean_of_variance, res["fem"].params.k_ranges)
    shown = np.array([np.nan if e is None else e for e in moved["V_band"]])
    np.testing.assert_array_equal(shown, inside)
