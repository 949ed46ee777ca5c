"""hatch_build.py: builds the bundle when it is missing or stale, and says what to install without Node."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_hook():
    spec = importlib.util.spec_from_file_location("hatch_build", REPO / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tree(tmp_path: Path) -> Path:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "explorer.js").write_text("export default {};\n")
    (tmp_path / "package.json").write_text("{}")
    return tmp_path


def test_stale_when_missing_or_older(tmp_path: Path) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    static = root / "fourd_widgets" / "static"
    assert hb._stale(root, static)
    static.mkdir(parents=True)
    (static / "explorer.js").write_text("built")
    os.utime(root / "js" / "explorer.js", (1, 1))
    assert not hb._stale(root, static)
    os.utime(static / "explorer.js", (0, 0))
    assert hb._stale(root, static)


def test_without_node_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    hook = hb.CustomBuildHook(str(root), {}, None, None, str(tmp_path / "dist"), "wheel")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("FOURD_WIDGETS_SKIP_JS", raising=False)
    data: dict = {}
    with pytest.raises(RuntimeError, match="Node.js"):
        hook.initialize("standard", data)
    assert data["artifacts"] == ["fourd_widgets/static/*.js"]


def test_sdist_and_skip_do_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    hb.CustomBuildHook(str(root), {}, None, None, str(tmp_path), "sdist").initialize("standard", {})
    monkeypatch.setenv("FOURD_WIDGETS_SKIP_JS", "1")
    hb.CustomBuildHook(str(root), {}, None, None, str(tmp_path), "wheel").initialize("editable", {})
