"""The dashboard app: a file chooser confined to one folder, the linked explorer, "save recipe".

``notebooks/explorer_dashboard.ipynb`` shows :meth:`Dashboard.from_environment`
and Voila lays it out as an app. ``fourd-widgets dashboard DIR`` sets
:data:`DATA_DIR_ENV` to DIR: the chooser then lists the loadable files under DIR
(:func:`fourd_widgets.app.files.list_data_files`) and opens the one picked with
:func:`fourd_widgets.load` in an :class:`~fourd_widgets.widgets.Explorer`. With
no folder set (``fourd-widgets demo``, or the notebook run on its own) the
explorer shows the built-in sample. A file that cannot be opened gives a message
on the page, never a traceback.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     app = Dashboard(d)
...     print(app.chooser.options, app.explorer)
...     app.close()
() None
"""

from __future__ import annotations

import html
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..core.datacube import DataCube
from ..core.errors import FourDError
from ..widgets import Explorer
from .files import MAX_DEPTH, MAX_FILES, list_data_files, loadable_extensions, resolve_inside

__all__ = ["Dashboard", "DATA_DIR_ENV", "OUTPUT_DIR_ENV", "RECIPE_NAME", "SAMPLE"]

#: The folder the dashboard browses (set by ``fourd-widgets dashboard DIR``); unset: the built-in sample.
DATA_DIR_ENV = "FOURD_WIDGETS_DATA_DIR"
#: Where "save recipe" writes; unset: the data folder, or else the working folder.
OUTPUT_DIR_ENV = "FOURD_WIDGETS_OUTPUT_DIR"
#: File name of the saved recipe.
RECIPE_NAME = "explorer_recipe.json"
#: The built-in sample shown when no data folder is set.
SAMPLE = "strained_crystal"


def _describe(cube: DataCube) -> str:
    rx, ry, qx, qy = cube.shape
    return f"scan {rx} x {ry}, detector {qx} x {qy}, {cube.dtype}"


class Dashboard:
    """The dashboard: file chooser (when given a folder), explorer, save-recipe button.

    Parameters
    ----------
    data_dir : path, optional
        The folder to browse; the dashboard opens nothing outside it. None:
        show the built-in sample (:data:`SAMPLE`) and no chooser.
    output_dir : path, optional
        Where "save recipe" writes :data:`RECIPE_NAME`; default ``data_dir``,
        or the working folder when there is none.
    size : int
        Canvas width of each view of the explorer, in CSS pixels.
    max_files, max_depth : int
        Bounds of the search for files (see :func:`~fourd_widgets.app.files.list_data_files`).

    Attributes
    ----------
    widget : ipywidgets.VBox
        What to display.
    chooser : ipywidgets.Select
        The files found, as paths relative to ``data_dir``.
    explorer : Explorer or None
        The explorer of the open data, if any.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, *, output_dir: str | os.PathLike | None = None,
                 size: int = 360, max_files: int = MAX_FILES, max_depth: int = MAX_DEPTH) -> None:
        self.data_dir = None if data_dir is None else Path(data_dir).expanduser().resolve()
        self.output_dir = Path(output_dir) if output_dir else (self.data_dir or Path.cwd())
        self.size = int(size)
        self.explorer: Explorer | None = None
        self.cube: DataCube | None = None
        self.message = widgets.HTML()
        self.message.add_class("fw-dashboard-message")
        self.info = widgets.HTML()
        self.info.add_class("fw-dashboard-info")
        self.chooser = widgets.Select(options=[], value=None, description="file",
                                      layout=widgets.Layout(width="520px"))
        self.chooser.add_class("fw-dashboard-chooser")
        self._view = widgets.Box()
        self._save = widgets.Button(description="save recipe", icon="save", disabled=True)
        self._saved = widgets.Label()
        self._save.on_click(lambda _: self.save_recipe())
        rows = [widgets.HBox([self.info]), self.message, self._view, widgets.HBox([self._save, self._saved])]
        if self.data_dir is not None:
            rows.insert(0, self.chooser)
        self.widget = widgets.VBox(rows)
        self.widget.add_class("fw-dashboard")
        if self.data_dir is None:
            self._show_sample()
        else:
            self._list_files(max_files, max_depth)
            self.chooser.observe(self._on_choose, names="value")

    @classmethod
    def from_environment(cls, **options: Any) -> "Dashboard":
        """The dashboard of the folders named by :data:`DATA_DIR_ENV` and :data:`OUTPUT_DIR_ENV`."""
        return cls(os.environ.get(DATA_DIR_ENV) or None, output_dir=os.environ.get(OUTPUT_DIR_ENV) or None,
                   **options)

    # --- actions ---------------------------------------------------------------------------
    def open(self, relative: str) -> Explorer | None:
        """Open ``relative`` (a path under the data folder) in the explorer.

        Returns the new explorer, or None when the file was refused or could
        not be read; the reason is then shown in :attr:`message`.
        """
        if self.data_dir is None:
            raise RuntimeError("this dashboard shows the built-in sample; it has no data folder")
        self._close_data()
        self.info.value = f"opening <b>{html.escape(relative)}</b> ..."
        try:
            path = resolve_inside(self.data_dir, relative)
            from ..io import load

            self.cube = load(path)
            explorer = Explorer(self.cube, size=self.size)
        except FourDError as exc:
            self._close_data()
            self._error(str(exc))
            return None
        except Exception as exc:  # a bug, or a reader's own error: a message here, the traceback to the log
            self._close_data()
            traceback.print_exc(file=sys.stderr)
            self._error(f"{relative}: could not be opened ({type(exc).__name__}: {exc}).")
            return None
        self._show(explorer, f"<b>{html.escape(relative)}</b>: {_describe(self.cube)}")
        return explorer

    def save_recipe(self) -> Path | None:
        """Save the explorer's parameters to ``output_dir / RECIPE_NAME``; returns the path (None on failure)."""
        if self.explorer is None:
            return None
        path = self.output_dir / RECIPE_NAME
        try:
            self.explorer.params.save(path)
        except (OSError, FourDError) as exc:
            self._saved.value = ""
            self._error(f"the recipe was not saved: {exc}")
            return None
        self._saved.value = f"saved {path}: replay it with fourd-widgets run"
        return path

    def close(self) -> None:
        """Close the explorer and the open file."""
        self._close_data()
        self.widget.close()

    # --- internals -------------------------------------------------------------------------
    def _list_files(self, max_files: int, max_depth: int) -> None:
        assert self.data_dir is not None
        try:
            found = list_data_files(self.data_dir, max_files=max_files, max_depth=max_depth)
        except FourDError as exc:
            self._error(str(exc))
            return
        self.chooser.options = found.files
        self.chooser.rows = max(2, min(10, len(found.files)))
        self.chooser.value = None
        if not found.files:
            self._error(f"No data files in {self.data_dir}. Files are found by extension: "
                        f"{', '.join(loadable_extensions())}.")
        else:
            more = " (the list is cut short: the folder holds more, or deeper, files)" if found.truncated else ""
            self.info.value = f"{len(found.files)} data files in {html.escape(str(self.data_dir))}{more}; pick one."

    def _show_sample(self) -> None:
        from ..datasets import sample

        cube, _truth = sample(SAMPLE)
        self.cube = cube
        self._show(Explorer(cube, size=self.size), f"built-in sample <b>{SAMPLE}</b>: {_describe(cube)}")

    def _show(self, explorer: Explorer, info: str) -> None:
        self.explorer = explorer
        self._view.children = (explorer.widget,)
        self.info.value = info
        self.message.value = ""
        self._saved.value = ""
        self._save.disabled = False

    def _error(self, text: str) -> None:
        self.message.value = (f'<div class="fw-dashboard-error" style="color: #b00020; white-space: pre-wrap">'
                              f"{html.escape(text)}</div>")

    def _on_choose(self, change: dict) -> None:
        if change["new"]:
            self.open(change["new"])

    def _close_data(self) -> None:
        if self.explorer is not None:
            self.explorer.close()
            self.explorer = None
        if self.cube is not None:
            self.cube.close()
            self.cube = None
        self._view.children = ()
        self._save.disabled = True
        self.message.value = ""
        self.info.value = ""
