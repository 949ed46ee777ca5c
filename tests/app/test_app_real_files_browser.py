"""The dashboard on every real detector file in ../shared/data/real/, in one Voila server.

A new user's first look: each file either shows painted views or says why it cannot (no empty
view without a message), the detectors start on the beam measured from the data, and a view of
calibrated data has a scale bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.beam import find_beam, sparse_mean_pattern
from fourd_widgets.app.demo import free_port
from fourd_widgets.app.files import list_data_files

from .app_helpers import AppProcess
from .test_app_browser import PAGE_TIMEOUT_MS, assert_no_code_and_no_traceback, browser_page  # noqa: F401

#: What the page shows once a file is open (or refused): painted explorer views, or a message. The
#: state is read in the same call that sees the page settled (a separate read could catch the views
#: while they are being redrawn).
SETTLED_STATE = """(name) => {
    const info = document.querySelector('.fw-dashboard-info');
    const err = document.querySelector('.fw-dashboard-error');
    const views = Array.from(document.querySelectorAll('.fw-explorer .fw-view')).filter(v => v.offsetParent);
    let settled;
    if (err) settled = err.innerText.includes(name.split('/').pop()) || !info.innerText.includes('opening');
    else settled = !!info && info.innerText.startsWith(name + ':')  // the file picked, not the one before
                   && views.length > 0 && views.every(v => +v.dataset.imageVersion >= 1);
    if (!settled) return false;
    const first = views[0];
    const centres = {};
    if (first) for (const o of JSON.parse(first.dataset.overlays || '[]')) if ('x' in o) centres[o.id] = [o.x, o.y];
    return {error: err ? err.innerText : '',
            views: views.map(v => ({painted: +v.dataset.imageVersion >= 1, scaleBar: v.dataset.scaleBar || ''})),
            centres};
}"""


@pytest.fixture(scope="module")
def real_dashboard(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    real = shared_data / "real"
    out = tmp_path_factory.mktemp("real-out")
    app = AppProcess(["dashboard", str(real), "--out", str(out)], free_port())
    try:
        yield app, real
    finally:
        app.stop()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.shared_data
def test_every_real_file_shows_views_or_says_why(real_dashboard, browser_page) -> None:
    app, real = real_dashboard
    page = browser_page
    page.goto(app.url)
    files = list_data_files(real).files
    assert "merlin_4x2x256x256_6bit.hdr" not in files  # the .mib and its header are one dataset
    select = page.locator(".fw-dashboard-chooser select")
    select.wait_for(state="visible")
    problems = []
    for name in files:
        select.select_option(name)
        state = page.wait_for_function(SETTLED_STATE, arg=name, timeout=PAGE_TIMEOUT_MS).json_value()
        if state["error"]:
            # refused with a message: it must name the file and say something beyond a type name
            if name.split("/")[-1] not in state["error"] and "scan" not in state["error"]:
                problems.append(f"{name}: message does not say which file or what to do: {state['error']!r}")
            continue
        assert state["views"] and all(v["painted"] for v in state["views"]), name
        try:
            cube = fw.load(real / name)
        except fw.errors.FourDError:
            continue
        with cube:
            cal = cube.calibration
            if cal.reciprocal_step is not None and not state["views"][0]["scaleBar"]:
                problems.append(f"{name}: the calibrated diffraction view has no scale bar")
            if cube.scan_shape != (1, 1) and cal.real_step is not None and not all(
                    v["scaleBar"] for v in state["views"][1:]):
                problems.append(f"{name}: a calibrated real-space view has no scale bar")
            if cal.origin is None and "d0" in state["centres"]:
                beam = find_beam(sparse_mean_pattern(cube))
                off = np.hypot(*(np.asarray(state["centres"]["d0"]) - beam.center))
                if off > max(1.0, 0.1 * beam.radius):
                    problems.append(f"{name}: detector d0 at {state['centres']['d0']} is {off:.1f} px off the beam "
                                    f"at {beam.center}")
    assert_no_code_and_no_traceback(page)
    assert problems == []
