"""The image view's styles arrive through anywidget ``_css`` (fourd_widgets/static/image_view.css) and
apply in JupyterLab and in Voila: the stage is a positioned dark box, the badge and the '?' panel sit
over the canvas, the panel within the stage.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_helpers import wait_views, write_notebook

pytestmark = pytest.mark.browser

SOURCE = """\
import numpy as np
from fourd_widgets.widgets.image_view import ImageView
view = ImageView(np.arange(48.0).reshape(6, 8), title="styled", badge="preview", size=240)
view
"""

#: Computed styles of the view's parts, and where the help panel and badge sit (page px).
PROBE = """() => {
    const root = document.querySelector('.fw-view');
    const part = (cls) => (root.matches(cls) ? root : root.querySelector(cls));
    const style = (cls, prop) => getComputedStyle(part(cls)).getPropertyValue(prop);
    const box = (cls) => { const r = part(cls).getBoundingClientRect();
                           return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
    return {
        viewDisplay: style('.fw-view', 'display'),
        stagePosition: style('.fw-stage', 'position'), stageBackground: style('.fw-stage', 'background-color'),
        stageCursor: style('.fw-stage', 'cursor'),
        badgePosition: style('.fw-badge', 'position'), badgeBackground: style('.fw-badge', 'background-color'),
        helpPosition: style('.fw-help', 'position'), helpZ: style('.fw-help', 'z-index'),
        readoutFont: style('.fw-readout', 'font-family'), titleWeight: style('.fw-title', 'font-weight'),
        helpOpen: root.dataset.help === 'open',
        stage: box('.fw-stage'), canvas: box('canvas.fw-canvas'), help: box('.fw-help'), badge: box('.fw-badge'),
    };
}"""


def check_styles(page) -> None:
    wait_views(page, 1)
    view = page.locator(".fw-view").first
    view.focus()
    page.keyboard.press("?")  # open the help panel: it is hidden (no box) until then
    page.wait_for_function("() => document.querySelector('.fw-view').dataset.help === 'open'")
    s = page.evaluate(PROBE)
    assert s["viewDisplay"] == "inline-flex"
    assert (s["stagePosition"], s["stageBackground"], s["stageCursor"]) == ("relative", "rgb(51, 51, 51)", "crosshair")
    assert s["badgePosition"] == "absolute" and s["badgeBackground"] == "rgba(255, 170, 0, 0.9)"
    assert s["helpPosition"] == "absolute" and s["helpZ"] == "2"
    assert "monospace" in s["readoutFont"] and s["titleWeight"] == "700"
    # absolutely positioned over the canvas: inside the stage, not pushed below it
    stage, help_box, badge = s["stage"], s["help"], s["badge"]
    assert stage["left"] < help_box["left"] and help_box["right"] < stage["right"]
    assert stage["top"] < help_box["top"] < s["canvas"]["bottom"]
    assert stage["top"] <= badge["top"] and badge["right"] <= stage["right"] and badge["bottom"] < s["canvas"]["bottom"]


def test_lab_applies_the_view_styles(page, lab, notebook_root: Path) -> None:
    name = "styles_lab.ipynb"
    write_notebook(notebook_root, name, SOURCE)
    page.goto(f"{lab.base}/lab/workspaces/styles/tree/{name}?reset")
    page.wait_for_function("""(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === name && w.sessionContext && w.sessionContext.session; }""",
                           arg=name)
    page.evaluate("""async () => { const w = window.jupyterapp.shell.currentWidget;
        await w.sessionContext.ready; await w.context.ready;
        await window.jupyterapp.commands.execute('notebook:run-all-cells'); }""")
    check_styles(page)


def test_voila_applies_the_view_styles(page, voila, notebook_root: Path) -> None:
    name = "styles_voila.ipynb"
    write_notebook(notebook_root, name, SOURCE)
    page.goto(f"{voila.base}/voila/render/{name}")
    check_styles(page)
