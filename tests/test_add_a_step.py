"""Following docs/how-to-add-a-step.md by adding files only registers a step everywhere.

The package, the README and the table script are copied to a temporary folder; the code
blocks of the how-to are written there as the new files it names, the table script is
run, and a fresh interpreter checks that the toy step is in ``fw``, ``fw.run``, results
files and the list of tools, and that the README table has its row. Then the copy is
compared with the original: the only changes are the new files and the README table.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOWTO = ROOT / "docs" / "how-to-add-a-step.md"


def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(python|json)\n(.*?)```", text, flags=re.S)


def _tree(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file (caches left out)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and "__pycache__" not in rel.parts:
            out[str(rel)] = p.read_bytes()
    return out


@pytest.mark.slow
def test_a_step_added_by_the_how_to_appears_everywhere(tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "fourd_widgets", work / "fourd_widgets",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    shutil.copytree(ROOT / "scripts", work / "scripts")
    shutil.copy(ROOT / "README.md", work / "README.md")
    if not (work / "fourd_widgets" / "tools" / "__init__.py").exists():  # the tools layer is being written
        (work / "fourd_widgets" / "tools").mkdir(exist_ok=True)
        (work / "fourd_widgets" / "tools" / "__init__.py").write_text('"""Tool sessions."""\n')
    before = _tree(work)

    blocks = _blocks(HOWTO.read_text(encoding="utf-8"))
    python = [b for kind, b in blocks if kind == "python"]
    (manifest,) = [b for kind, b in blocks if kind == "json"]
    new = {"fourd_widgets/analysis/toy.py": python[0], "fourd_widgets/manifest/toy.json": manifest,
           "fourd_widgets/tools/toy.py": python[1], "fourd_widgets/widgets/toy.py": python[2]}
    for rel, text in new.items():
        assert not (work / rel).exists(), rel
        (work / rel).write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(work)}
    gen = subprocess.run([sys.executable, str(work / "scripts" / "gen_step_table.py")], env=env,
                         capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr

    check = r'''
import numpy as np, fourd_widgets as fw
from fourd_widgets.core import registry
cube = fw.DataCube(np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4))
assert fw.toy.toy_sum is fw.toy_sum and fw.toy.ToySumParams is fw.ToySumParams
res = fw.run(fw.Recipe((fw.ToySumParams(factor=2.0),)), cube)
want = cube.to_numpy().sum(axis=(2, 3), dtype=np.float64) * 2.0
assert np.array_equal(res["toy_sum"], want)
back = fw.Results.load(res.save("toy.h5"))
assert np.array_equal(back["toy_sum"], want) and back.recipe.steps[0].factor == 2.0
assert [t.name for t in registry.tools() if "toy_sum" in t.steps] == ["ToyTool"]
tool = fw.ToyTool(cube).wait()
assert np.array_equal(tool.session.run_on_all().result, fw.run(tool.params, cube)["toy_sum"])
tool.factor.value = 4.0  # the slider: a new image on the worker, equal to the replay of the new params
tool.wait()
assert tool.session.record.factor == 4.0 and tool.session.error == ""
assert np.array_equal(tool.session.result, fw.run(tool.params, cube)["toy_sum"])
tool.close()
# the dashboard offers it as a page, and its recipe carries the step
import os
from fourd_widgets.app.dashboard_ui import Dashboard
os.makedirs("data", exist_ok=True)
np.save("data/scan.npy", cube.to_numpy())
board = Dashboard("data", output_dir="out", size=100)
board.open("scan.npy")
assert "toytool" in board.tabs.titles
page_tool = board.show_page("toytool")
assert type(page_tool).__name__ == "ToyTool", board._pages["toytool"].note.value
saved = board.save_recipe()
assert saved.name == "scan.toytool.recipe.json" and "toy_sum" in fw.Recipe.load(saved).labels
board.close()
print("ok")
'''
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    readme = (work / "README.md").read_text(encoding="utf-8")
    assert "| `fw.toy` | `toy_sum` | `toy_sum` | `ToySumParams` | `ndarray` |  | `fw.ToyTool` |" in readme
    recheck = subprocess.run([sys.executable, str(work / "scripts" / "gen_step_table.py"), "--check"], env=env,
                             capture_output=True, text=True)
    assert recheck.returncode == 0, recheck.stderr

    after = _tree(work)
    added = set(after) - set(before)
    assert added - {"toy.h5", "data/scan.npy", "out/scan.toytool.recipe.json"} == set(new)
    changed = [rel for rel in before if before[rel] != after[rel]]
    assert changed == ["README.md"]
    old = (ROOT / "README.md").read_text(encoding="utf-8")
    cut = lambda t: t[:t.index("<!-- step-table:start -->")] + t[t.index("<!-- step-table:end -->"):]  # noqa: E731
    assert cut(readme) == cut(old)  # only the generated table changed
