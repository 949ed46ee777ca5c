"""The README's recipe example runs as written and its replay claim holds."""

from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_recipe_block_runs_and_replays(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Virtual images, recipes and batch runs", 1)[1]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["images"].shape == (2,) + ns["cube"].scan_shape
    assert np.array_equal(ns["again"]["virtual_image"], ns["results"]["virtual_image"])
    # bright field inside the central disk sees more than the dark-field annulus
    assert ns["images"][0].mean() > ns["images"][1].mean()
    assert (tmp_path / "recipe.json").is_file() and (tmp_path / "results.h5").is_file()
