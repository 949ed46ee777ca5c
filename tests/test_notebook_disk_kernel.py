"""Issue 12 item 18: the disk tutorial recommends the kernel the evidence supports (the default 'flat').

tests/test_notebooks.py runs the notebook, whose "Which kernel?" cell measures both kernels against
the ground truth and asserts that 'flat' places disks and strain better; this test pins what the
tutorial teaches: the template it builds everything on has the default kernel.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import fourd_widgets as fw

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "disk_detection.ipynb"


def test_the_tutorial_template_uses_the_default_flat_kernel():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    [first] = [c for c in code if "template_params = fw.ProbeTemplateParams(" in c]
    call = next(n.value for n in ast.walk(ast.parse(first))
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "template_params")
    kernel = {k.arg: k.value for k in call.keywords}.get("kernel")
    chosen = fw.ProbeTemplateParams().kernel if kernel is None else ast.literal_eval(kernel)
    assert chosen == "flat"
    # and the tutorial says why, with the figures of both kernels
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "## Which kernel?" in text and "`'gaussian'` | off | 0.024 px" in text
    assert "`'flat'` (default) | on (default) |" in text  # and with the default probe fit
