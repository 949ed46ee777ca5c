"""The front end's pure modules (js/*.js: scaling, view transform, overlay geometry, markers, help lines),
unit-tested with Node's own runner: ``node --test js/test/*.test.js`` must exit 0.

Also: the view's styles travel as anywidget ``_css`` (fourd_widgets/static/image_view.css), not as a
string the script injects.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fourd_widgets.widgets.image_view import CSS_PATH, ESM_PATH, ImageView

REPO = Path(__file__).resolve().parents[2]
JS_TESTS = sorted((REPO / "js" / "test").glob("*.test.js"))


def test_js_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not on PATH: the front-end unit tests need it (scripts/install.sh installs it; "
                    "or `apt install nodejs`)")
    assert JS_TESTS, f"no *.test.js files in {REPO / 'js' / 'test'}"
    done = subprocess.run([node, "--test", "--test-reporter=tap", *map(str, JS_TESTS)], cwd=REPO,
                          capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test failed (exit {done.returncode}):\n{output}"
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    assert passed and int(passed.group(1)) > 0, f"node --test ran no tests:\n{output}"


def test_styles_are_anywidget_css() -> None:
    assert CSS_PATH.is_file(), "run npm run build (or pip install -e .)"
    css = str(ImageView()._css)
    for rule in (".fw-view", ".fw-stage", ".fw-help", ".fw-badge", ".fw-toolbar"):
        assert rule in css
    script = ESM_PATH.read_text()
    assert "fw-view" in script and ".fw-stage" not in script  # classes used, no stylesheet inside
