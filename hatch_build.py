"""Hatch build hook: bundle the front end (js/ -> fourd_widgets/static/) with esbuild.

``fourd_widgets/static/`` is a build artifact (git-ignored): ``image_view.js``
and ``image_view.css``, what :class:`fourd_widgets.widgets.image_view.ImageView`
gives anywidget as ``_esm`` and ``_css``. When building a wheel or installing
(editable included), this hook runs ``npm ci`` (only if ``node_modules`` is
missing) and ``npm run build`` whenever a bundle is missing or older than a
source (``.js`` or ``.css``, sub-folders of ``js/`` included). Node.js and npm must be on
PATH; if they are not, the build stops with a message saying what to install.
Set ``FOURD_WIDGETS_SKIP_JS=1`` to skip (the widgets then show a notice).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLES = ("image_view.js", "image_view.css")
#: What the bundles are built from: any of these under js/ (at any depth) newer than a bundle rebuilds.
SOURCE_SUFFIXES = (".js", ".css")
ARTIFACTS = ("fourd_widgets/static/*.js", "fourd_widgets/static/*.css")


class CustomBuildHook(BuildHookInterface):
    """Builds ``fourd_widgets/static/*.js`` and ``*.css`` and ships them as artifacts."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name not in ("wheel", "editable") and version != "editable":
            return
        root = Path(self.root)
        static = root / "fourd_widgets" / "static"
        build_data.setdefault("artifacts", []).extend(ARTIFACTS)
        if os.environ.get("FOURD_WIDGETS_SKIP_JS"):
            return
        if not (root / "package.json").is_file():  # building from a wheel-only tree: nothing to bundle
            return
        if not _stale(root, static):
            return
        npm = shutil.which("npm")
        if shutil.which("node") is None or npm is None:
            raise RuntimeError(
                "fourd_widgets: building the front end needs Node.js (>= 18) and npm, which were not found on "
                "PATH. Install Node.js (e.g. `apt install nodejs npm` or https://nodejs.org), then run "
                "`pip install` again; or build the bundle yourself with `npm ci && npm run build`.")
        if not (root / "node_modules" / ".bin" / "esbuild").exists():
            _run([npm, "ci", "--no-audit", "--no-fund"], root)
        _run([npm, "run", "build"], root)
        missing = [b for b in BUNDLES if not (static / b).is_file()]
        if missing:
            raise RuntimeError(f"fourd_widgets: `npm run build` did not produce {missing} in {static}")


def _stale(root: Path, static: Path) -> bool:
    bundles = [static / b for b in BUNDLES]
    if not all(b.is_file() for b in bundles):
        return True
    sources = (p for p in (root / "js").rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())
    newest_source = max((p.stat().st_mtime for p in sources), default=0.0)
    return min(b.stat().st_mtime for b in bundles) < newest_source


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"fourd_widgets: `{' '.join(cmd[1:])}` failed (exit {exc.returncode}) in {cwd}; "
                           "see the npm output above") from None
