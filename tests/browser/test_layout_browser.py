"""Views a microscopist can read, in a real browser at 1280 x 800 and 1920 x 1080 (issue 10, item 4).

One Voila page shows the four tools (an Explorer with a third detector on an uncalibrated file whose beam
is far from the detector centre, a DiskTuner, a CalibrationTool and a StrainMapper on the calibrated
demo sample). Measured in the page: no label or number box cut (scrollWidth > clientWidth), nothing
wider than its tool or the window, a scale bar on every view that has a calibration, the Explorer's
detectors on the beam. In JupyterLab, the Explorer's views sit side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_helpers import wait_views, write_notebook

pytestmark = pytest.mark.browser

SIZES = [(1280, 800), (1920, 1080)]
#: Where the screenshots of the checked layouts go (to look at them), default the notebook folder.
SHOTS = os.environ.get("FW_LAYOUT_SHOTS")
#: Where the synthetic beam is (detector px): the ground truth the default detectors must find.
BEAM = (12.0, 33.0)

EXPLORER_SOURCE = """\
import numpy as np
from fourd_widgets.analysis.detectors import Circle
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.widgets.explorer import Explorer
ii, jj = np.indices((48, 48))
q = np.hypot(ii - {bx}, jj - {by})
pattern = np.where(q <= 5, 1000.0, 0.0) + np.where(np.abs(q - 14) < 2, 50.0, 1.0)
cube = DataCube(np.broadcast_to(pattern, (8, 8, 48, 48)).astype(np.float32).copy(),
                Calibration(real_step=0.5, reciprocal_step=0.02))   # no origin: the beam must be measured
ex = Explorer(cube, build_cache=False, size=300)
ex.add_detector(Circle((30.0, 20.0), 3.0))                         # a third detector
ex.wait()
ex
"""

TOOLS_SOURCE = EXPLORER_SOURCE + """
from fourd_widgets.analysis.disks import PeakTable
from fourd_widgets.datasets import sample
from fourd_widgets.widgets.calibration_tool import CalibrationTool
from fourd_widgets.widgets.disk_tuner import DiskTuner
from fourd_widgets.widgets.strain_mapper import StrainMapper
crystal, truth = sample("strained_crystal", small=True)
exact = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                  truth.peak_intensity)
c = crystal.calibration
cal = Calibration(origin_map=truth.origin_map, origin=truth.origin, real_step=c.real_step,
                  reciprocal_step=c.reciprocal_step)
tuner = DiskTuner(crystal).wait()
calib = CalibrationTool(crystal, exact).wait()
mapper = StrainMapper(crystal, exact, cal).wait()
from fourd_widgets.widgets.image_view import ImageView
clipped = ImageView(np.arange(100.0).reshape(10, 10), contrast="absolute", vmin=0.0, vmax=49.0, size=160)
clipped.add_class("fw-clipped")
display(ex.widget, tuner.widget, calib.widget, mapper.widget, clipped)
"""

ROOTS = ".fw-explorer, .fw-disk-tuner, .fw-calibration-tool, .fw-strain-mapper"

#: Labels and number boxes cut by their width, things wider than their tool or the window.
PROBE = """(roots) => {
    const visible = (e) => e.offsetParent !== null && e.getClientRects().length > 0;
    const cut = [];
    for (const root of document.querySelectorAll(roots)) {
        const labels = root.querySelectorAll(
            '.widget-label, .widget-label-basic, .widget-readout, button, .widget-toggle-button, label');
        for (const e of labels) {
            if (visible(e) && e.scrollWidth > e.clientWidth + 1) cut.push(`${e.className}: ${e.textContent}`);
        }
        for (const e of root.querySelectorAll('input[type=number], input[type=text]')) {
            if (visible(e) && e.scrollWidth > e.clientWidth + 1) cut.push(`input: ${e.value}`);
        }
    }
    const wide = [];
    for (const root of document.querySelectorAll(roots)) {
        const r = root.getBoundingClientRect();
        if (root.scrollWidth > root.clientWidth + 1) wide.push(`${root.className} scrolls`);
        for (const v of root.querySelectorAll('.fw-view, .bqplot')) {
            const b = v.getBoundingClientRect();
            if (visible(v) && b.right > r.right + 1) wide.push(`${v.className} past ${root.className}`);
        }
    }
    if (document.documentElement.scrollWidth > window.innerWidth + 1) wide.push('page scrolls sideways');
    const views = [];
    for (const root of document.querySelectorAll(roots)) {
        for (const v of root.querySelectorAll('.fw-view')) {
            if (+v.dataset.imageVersion >= 1) views.push({tool: root.className, scaleBar: v.dataset.scaleBar || '',
                                                          title: (v.querySelector('.fw-title') || {}).textContent});
        }
    }
    return {cut, wide, views};
}"""


def detector_centres(page) -> dict:
    """Overlay centres on the Explorer's diffraction view, by id (image px)."""
    return page.evaluate("""() => {
        const v = document.querySelector('.fw-explorer .fw-view');
        const out = {};
        for (const o of JSON.parse(v.dataset.overlays || '[]')) if ('x' in o) out[o.id] = [o.x, o.y];
        return out;
    }""")


def test_voila_tools_hold_their_layout_with_scale_bars_and_detectors_on_the_beam(page, voila,
                                                                                  notebook_root: Path) -> None:
    name = "layout_tools.ipynb"
    write_notebook(notebook_root, name, TOOLS_SOURCE.format(bx=BEAM[0], by=BEAM[1]))
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    page.goto(f"{voila.base}/voila/render/{name}")
    wait_views(page, 12)
    # absolute limits [0, 49] on the values 0..99: half of them over range, and the view says so
    page.wait_for_function("() => { const v = document.querySelector('.fw-clipped .fw-view');"
                           " return v && +v.dataset.imageVersion >= 1; }")
    clipped = page.evaluate("""() => { const v = document.querySelector('.fw-clipped .fw-view');
        return {range: JSON.parse(v.dataset.overRange), badge: v.querySelector('.fw-range-badge').textContent}; }""")
    assert clipped == {"range": {"under": 0, "over": 0.5}, "badge": "▲ 50 % over range"}
    centres = detector_centres(page)
    # the default BF and ADF sit on the disk's centre (pixel (12, 33) exactly, rounded to 0.01 px)
    for ident in ("d0", "d1"):
        assert centres[ident] == pytest.approx(BEAM, abs=0.05), centres
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)  # reflow
        s = page.evaluate(PROBE, ROOTS)
        assert s["cut"] == [], f"{width}x{height}: cut labels or values: {s['cut']}"
        assert s["wide"] == [], f"{width}x{height}: overflow: {s['wide']}"
        # every painted view of the four tools has a calibration here, so every one has a scale bar
        calibrated = [v for v in s["views"]]
        assert len(calibrated) >= 12
        assert [v for v in calibrated if not v["scaleBar"]] == []
        # the Explorer (three detectors) still shows its pattern above the fold
        top = page.evaluate("() => document.querySelector('.fw-explorer .fw-view canvas').getBoundingClientRect().top")
        assert top < height - 200
        page.screenshot(path=str(Path(SHOTS or notebook_root) / f"layout_voila_{width}x{height}.png"))
        if SHOTS:  # each tool whole, to look at
            for cls in ROOTS.replace(" ", "").split(","):
                page.locator(cls).first.screenshot(path=str(Path(SHOTS) / f"{cls[1:]}_{width}.png"))
        # nothing taller than it needs: the DiskTuner once was 2240 px with an empty gap
        tall = page.evaluate("() => document.querySelector('.fw-disk-tuner').getBoundingClientRect().height")
        assert tall < 1700, tall


def test_lab_explorer_views_side_by_side(page, lab, notebook_root: Path) -> None:
    name = "layout_lab.ipynb"
    write_notebook(notebook_root, name, EXPLORER_SOURCE.format(bx=BEAM[0], by=BEAM[1]))
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    page.goto(f"{lab.base}/lab/workspaces/layout/tree/{name}?reset")
    page.wait_for_function("""(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === name && w.sessionContext && w.sessionContext.session; }""",
                           arg=name)
    page.evaluate("""async () => { const w = window.jupyterapp.shell.currentWidget;
        await w.sessionContext.ready; await w.context.ready;
        await window.jupyterapp.commands.execute('notebook:run-all-cells'); }""")
    wait_views(page, 4)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)
        boxes = page.evaluate("""() => Array.from(document.querySelectorAll('.fw-explorer .fw-view canvas.fw-canvas'))
            .map(c => { const r = c.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })""")
        pattern, first_real = boxes[0], boxes[1]
        # the first virtual image is to the right of the pattern, at its height: not stacked below it
        assert first_real[0] >= pattern[2] and first_real[1] < pattern[3], boxes
        s = page.evaluate(PROBE, ".fw-explorer")
        assert s["cut"] == [] and s["wide"] == [], s
        page.screenshot(path=str(Path(SHOTS or notebook_root) / f"layout_lab_{width}x{height}.png"))
