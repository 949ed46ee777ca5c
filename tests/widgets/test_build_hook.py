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
    (tmp_path / "js" / "image_view.js").write_text("export default {};\n")
    (tmp_path / "js" / "image_view.css").write_text(".fw-view {}\n")
    (tmp_path / "package.json").write_text("{}")
    return tmp_path


def build_all(static: Path) -> None:
    static.mkdir(parents=True, exist_ok=True)
    for name in ("image_view.js", "image_view.css"):
        (static / name).write_text("built")


def test_stale_when_missing_or_older(tmp_path: Path) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    static = root / "fourd_widgets" / "static"
    assert hb._stale(root, static)
    build_all(static)
    for source in ("image_view.js", "image_view.css"):
        os.utime(root / "js" / source, (1, 1))
    assert not hb._stale(root, static)
    os.utime(static / "image_view.js", (0, 0))
    assert hb._stale(root, static)


def test_stale_when_a_bundle_is_missing(tmp_path: Path) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    static = root / "fourd_widgets" / "static"
    build_all(static)
    (static / "image_view.css").unlink()
    assert hb._stale(root, static)


@pytest.mark.parametrize("source", ["image_view.css", "image_view/stage.js", "image_view/deeper/part.css"])
def test_css_and_sub_folder_sources_count(tmp_path: Path, source: str) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    static = root / "fourd_widgets" / "static"
    for existing in ("image_view.js", "image_view.css"):
        os.utime(root / "js" / existing, (1, 1))
    build_all(static)
    for name in ("image_view.js", "image_view.css"):
        os.utime(static / name, (10, 10))
    path = root / "js" / source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("/* edited */\n")
    os.utime(path, (5, 5))
    assert not hb._stale(root, static)  # older than the bundles
    os.utime(path, (20, 20))
    assert hb._stale(root, static)  # edited after the last build
    (root / "js" / "notes.txt").write_text("not a source")
    os.utime(path, (5, 5))
    assert not hb._stale(root, static)  # other files do not trigger a build


def test_without_node_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    hook = hb.CustomBuildHook(str(root), {}, None, None, str(tmp_path / "dist"), "wheel")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("FOURD_WIDGETS_SKIP_JS", raising=False)
    data: dict = {}
    with pytest.raises(RuntimeError, match="Node.js"):
        hook.initialize("standard", data)
    assert data["artifacts"] == ["fourd_widgets/static/*.js", "fourd_widgets/static/*.css"]


def test_sdist_and_skip_do_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hb = load_hook()
    root = make_tree(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    hb.CustomBuildHook(str(root), {}, None, None, str(tmp_path), "sdist").initialize("standard", {})
    monkeypatch.setenv("FOURD_WIDGETS_SKIP_JS", "1")
    hb.CustomBuildHook(str(root), {}, None, None, str(tmp_path), "wheel").initialize("editable", {})
