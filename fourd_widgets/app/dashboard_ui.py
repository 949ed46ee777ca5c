"""The dashboard app: a file chooser confined to one folder, a page per tool, "save recipe".

``notebooks/explorer_dashboard.ipynb`` shows :meth:`Dashboard.from_environment`
and Voila lays it out as an app. ``fourd-widgets dashboard DIR`` sets
:data:`DATA_DIR_ENV` to DIR: the chooser then lists the loadable files under DIR
(:func:`fourd_widgets.app.files.list_data_files`) and opens the one picked with
:func:`fourd_widgets.load`. The pages (one per registered tool: :func:`fourd_widgets.app.chain.dashboard_pages`)
go explore -> disks -> calibration -> strain on that file; each opens its tool
when first shown. With no folder set (``fourd-widgets demo``, or the notebook
run on its own) the pages show the built-in sample. A file that cannot be
opened gives a message on the page, never a traceback.

"save recipe" writes the recipe of the whole chain, as far as it got, to the
output folder (:data:`OUTPUT_DIR_ENV`; see :mod:`fourd_widgets.app.output`) as
``<dataset>.<tool>.recipe.json``, never into the data folder, and overwrites an
existing file only after "overwrite" is pressed.

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
from ..core.errors import FourDError, MissingOptionError
from .chain import NotReady, ToolChain, dashboard_pages
from .files import MAX_DEPTH, MAX_FILES, list_data_files, loadable_extensions, resolve_inside
from .output import OutputFolderError, is_inside, recipe_filename, resolve_output_dir

__all__ = ["Dashboard", "DATA_DIR_ENV", "OUTPUT_DIR_ENV", "SAMPLE"]

#: The folder the dashboard browses (set by ``fourd-widgets dashboard DIR``); unset: the built-in sample.
DATA_DIR_ENV = "FOURD_WIDGETS_DATA_DIR"
#: Where "save recipe" writes (set by ``--out``); unset: ``./fourd-widgets-out`` unless that is in the data folder.
OUTPUT_DIR_ENV = "FOURD_WIDGETS_OUTPUT_DIR"
#: The built-in sample shown when no data folder is set.
SAMPLE = "strained_crystal"


def _describe(cube: DataCube) -> str:
    rx, ry, qx, qy = cube.shape
    return f"scan {rx} x {ry}, detector {qx} x {qy}, {cube.dtype}"


class Dashboard:
    """The dashboard: file chooser (when given a folder), one page per tool, save-recipe button.

    Parameters
    ----------
    data_dir : path, optional
        The folder to browse; the dashboard opens nothing outside it and writes
        nothing into it. None: show the built-in sample (:data:`SAMPLE`) and no chooser.
    output_dir : path, optional
        Where "save recipe" writes. Default: ``./fourd-widgets-out`` in the working
        folder, unless that lies inside ``data_dir`` (then saving says to set one).
    size : int
        Canvas width of each view of the tools, in CSS pixels.
    max_files, max_depth : int
        Bounds of the search for files (see :func:`~fourd_widgets.app.files.list_data_files`).

    Attributes
    ----------
    widget : ipywidgets.VBox
        What to display.
    chooser : ipywidgets.Select
        The files found, as paths relative to ``data_dir``.
    tabs : ipywidgets.Tab
        One page per registered tool (:func:`~fourd_widgets.app.chain.dashboard_pages`).
    chain : ToolChain or None
        The tools opened on the current data.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, *, output_dir: str | os.PathLike | None = None,
                 size: int = 360, max_files: int = MAX_FILES, max_depth: int = MAX_DEPTH) -> None:
        self.data_dir = None if data_dir is None else Path(data_dir).expanduser().resolve()
        self._output_problem = ""
        if output_dir:
            self.output_dir: Path | None = Path(output_dir)
        else:
            try:
                self.output_dir = resolve_output_dir(self.data_dir, None, create=False)
            except OutputFolderError as exc:
                self.output_dir, self._output_problem = None, str(exc)
        self.size = int(size)
        self.chain: ToolChain | None = None
        self.cube: DataCube | None = None
        self.dataset = ""
        self.message = widgets.HTML()
        self.message.add_class("fw-dashboard-message")
        self.info = widgets.HTML()
        self.info.add_class("fw-dashboard-info")
        self.chooser = widgets.Select(options=[], value=None, description="file",
                                      layout=widgets.Layout(width="520px"),
                                      tooltip="The 4D-STEM data set to open (click one; the tools below show it)")
        self.chooser.add_class("fw-dashboard-chooser")
        self._page_list = dashboard_pages()
        self._pages = {p.name: _PageBox(p.help) for p in self._page_list}
        self.tabs = widgets.Tab(children=[b.box for b in self._pages.values()])
        self.tabs.titles = tuple(self._pages)
        self.tabs.add_class("fw-dashboard-tabs")
        self.tabs.observe(self._on_tab, names="selected_index")
        self._save = widgets.Button(description="save recipe", icon="save", disabled=True,
                                    tooltip="Save the recipe of every tool used so far, to replay it with "
                                            "fourd-widgets run")
        self._overwrite = widgets.Button(description="overwrite", button_style="warning",
                                         layout=widgets.Layout(display="none"),
                                         tooltip="Replace the recipe file that is already there")
        self._saved = widgets.HTML()
        self._saved.add_class("fw-dashboard-saved")
        self._save.on_click(lambda _: self.save_recipe())
        self._overwrite.on_click(lambda _: self.save_recipe(overwrite=True))
        self.tabs.layout.display = "none"
        # a frame stack that does not record its scan shape: ask for the row length here
        self._pending_stack: str | None = None
        self._scan_width = widgets.BoundedIntText(value=0, min=0, max=10**7, description="scan width",
                                                  layout=widgets.Layout(width="200px"),
                                                  tooltip="Scan positions per row: the frames are laid out row by "
                                                          "row, so rows = frames / scan width")
        self._scan_width_note = widgets.Label()
        open_stack = widgets.Button(description="open", tooltip="Open the stack with this scan width")
        open_stack.on_click(lambda _: self._open_with_scan_width())
        self._options_row = widgets.HBox([self._scan_width_note, self._scan_width, open_stack],
                                         layout=widgets.Layout(display="none"))
        self._options_row.add_class("fw-dashboard-options")
        rows = [widgets.HBox([self.info]), self.message, self._options_row, self.tabs,
                widgets.HBox([self._save, self._overwrite, self._saved])]
        if self.data_dir is not None:
            rows.insert(0, self.chooser)
        self.help = widgets.HTML(self._help_html())
        self.help.add_class("fw-dashboard-help")
        rows.insert(0, self.help)
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

    @property
    def explorer(self) -> Any:
        """The explorer of the open data, if any."""
        return None if self.chain is None else self.chain.current("explore")

    # --- actions ---------------------------------------------------------------------------
    def open(self, relative: str, **load_options: Any) -> Any:
        """Open ``relative`` (a path under the data folder) on the explore page.

        ``load_options`` go to :func:`fourd_widgets.load` (``scan_width=`` for a
        frame stack that does not record its scan shape: the page asks for it).
        Returns the new explorer, or None when the file was refused or could
        not be read; the reason is then shown in :attr:`message`.
        """
        if self.data_dir is None:
            raise RuntimeError("this dashboard shows the built-in sample; it has no data folder")
        self._close_data()
        self.info.value = f"opening <b>{html.escape(relative)}</b> ..."
        try:
            path = resolve_inside(self.data_dir, relative)
            from .files import check_hdf5_links_inside
            check_hdf5_links_inside(path, self.data_dir)  # external storage, links, VDS: inside too
            from ..io import load

            self.cube = load(path, **load_options)
            self._start(self.cube, relative)
        except MissingOptionError as exc:
            self._close_data()
            self._error(str(exc))
            if "scan_width" in exc.options:  # ask here: the message's Python has nowhere to be typed
                self._ask_scan_width(relative, exc.frames)
            return None
        except FourDError as exc:
            self._close_data()
            self._error(str(exc))
            return None
        except Exception as exc:  # a bug, or a reader's own error: a message here, the traceback to the log
            self._close_data()
            traceback.print_exc(file=sys.stderr)
            self._error(f"{relative}: could not be opened ({type(exc).__name__}: {exc}).")
            return None
        self.info.value = f"<b>{html.escape(relative)}</b>: {_describe(self.cube)}"
        return self.explorer

    def show_page(self, name: str) -> Any:
        """Show the page ``name`` and return its tool (None when it cannot open yet: :attr:`message` says why)."""
        index = list(self._pages).index(name)
        if self.tabs.selected_index != index:
            self.tabs.selected_index = index  # builds it through _on_tab
        else:
            self._build_page(name)
        return None if self.chain is None else self.chain.current(name)

    def recipe_path(self) -> Path | None:
        """Where "save recipe" writes now: ``<output>/<dataset>.<tool>.recipe.json`` (None: nothing to save)."""
        if self.chain is None or self.output_dir is None:
            return None
        tool = self.chain.furthest()
        return None if tool is None else self.output_dir / recipe_filename(self.dataset, tool)

    def save_recipe(self, overwrite: bool = False) -> Path | None:
        """Save the chain's recipe to :meth:`recipe_path`; returns the path (None when not saved).

        An existing file is replaced only with ``overwrite=True`` (the "overwrite"
        button); otherwise the page asks. Nothing is ever written inside the data folder.
        """
        self._overwrite.layout.display = "none"
        recipe = None if self.chain is None else self.chain.recipe()
        if recipe is None:
            return None
        if self.output_dir is None:
            self._error(f"the recipe was not saved: {self._output_problem}")
            return None
        path = self.recipe_path()
        assert path is not None
        out = path.parent.resolve()
        if self.data_dir is not None and is_inside(out, self.data_dir):
            self._error(f"the recipe was not saved: the output folder {out} is inside the data folder "
                        f"{self.data_dir}. Start the dashboard with --out and a folder outside it.")
            return None
        if path.exists() and not overwrite:
            self._saved.value = (f"<b>{html.escape(path.name)}</b> is already in {html.escape(str(out))}: "
                                 "press overwrite to replace it.")
            self._overwrite.layout.display = ""
            return None
        try:
            out.mkdir(parents=True, exist_ok=True)
            recipe.save(path)
        except (OSError, FourDError) as exc:
            self._saved.value = ""
            self._error(f"the recipe was not saved: {exc}")
            return None
        self.message.value = ""
        self._saved.value = (f"saved <b>{html.escape(str(path))}</b>: replay it with "
                             f"<code>fourd-widgets run {html.escape(path.name)} DATA</code>")
        return path

    def close(self) -> None:
        """Close the tools and the open file."""
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
        self._start(cube, SAMPLE)
        self.info.value = f"built-in sample <b>{SAMPLE}</b>: {_describe(cube)}"

    def _start(self, cube: DataCube, dataset: str) -> None:
        """A new chain on ``cube``, with the explore page open."""
        self.chain = ToolChain(cube, size=self.size, pages=self._page_list)
        self.dataset = dataset
        self.tabs.layout.display = ""
        self.message.value = ""
        self._saved.value = ""
        self._save.disabled = False
        if self.tabs.selected_index != 0:
            self.tabs.selected_index = 0
        self._build_page("explore")

    def _on_tab(self, change: dict) -> None:
        if change["new"] is not None and self.chain is not None:
            self._build_page(list(self._pages)[change["new"]])

    def _build_page(self, name: str) -> None:
        page = self._pages[name]
        assert self.chain is not None
        try:
            tool = self.chain.tool(name)
        except NotReady as exc:
            page.show(None, str(exc))
            return
        except FourDError as exc:
            page.show(None, str(exc))
            return
        except Exception as exc:  # a bug: a message on the page, the traceback to the server log
            traceback.print_exc(file=sys.stderr)
            page.show(None, f"the {name} tool could not be opened ({type(exc).__name__}: {exc}).")
            return
        page.show(tool, "")
        for other in self.chain.drop_stale():  # built on what this page just replaced
            self._pages[other].clear()

    def _help_html(self) -> str:
        """What the page is and how to use it, for this dashboard (a data folder, or the demo's sample)."""
        if self.data_dir is None:
            first = ("This demo shows the built-in sample: a simulated, strained silicon crystal "
                     "(64 x 64 scan, 128 x 128 detector). <code>fourd-widgets dashboard DIR</code> opens "
                     "your own files the same way.")
        else:
            first = (f"<b>Pick a file</b> in the list: the data files in {html.escape(str(self.data_dir))}. "
                     "Nothing outside that folder is listed or opened.")
        out = (f"the output folder {html.escape(str(self.output_dir))}" if self.output_dir is not None
               else "the output folder (start the dashboard with <code>--out</code>)")
        items = [
            first,
            "The pages go <b>explore</b> (virtual images) &rarr; <b>disks</b> (Bragg disk detection) &rarr; "
            "<b>calibration</b> (origin, descan, ellipse) &rarr; <b>strain</b>; a page that needs an earlier "
            "one says so.",
            "<b>Drag</b> a detector or its square handles; <b>wheel</b> zooms, dragging the background pans, "
            "double-click fits. <b>Click</b> a virtual image to show the pattern there. Keys (click a view "
            "first): <b>W A S D</b> move the detector, <b>I J K L</b> the scan position, <b>Shift</b> for 5 px.",
            "Colormap, scaling and contrast are in each view's toolbar; the histogram sets the limits.",
            f"<b>save recipe</b> writes the recipe of every page used so far to {out} as "
            "<code>&lt;dataset&gt;.&lt;page&gt;.recipe.json</code>; <code>fourd-widgets run</code> replays it "
            "on any number of files.",
        ]
        return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"

    def _ask_scan_width(self, relative: str, frames: int | None) -> None:
        self._pending_stack = relative
        self._scan_width.value = 0
        self._scan_width_note.value = (f"{frames} frames: " if frames else "") + "how many positions per scan row?"
        self._options_row.layout.display = ""

    def _open_with_scan_width(self) -> None:
        width = int(self._scan_width.value)
        if self._pending_stack is None or width < 1:
            return
        relative, self._pending_stack = self._pending_stack, None
        self.open(relative, scan_width=width)

    def _error(self, text: str) -> None:
        self.message.value = (f'<div class="fw-dashboard-error" style="color: #b00020; white-space: pre-wrap">'
                              f"{html.escape(text)}</div>")

    def _on_choose(self, change: dict) -> None:
        if change["new"]:
            self.open(change["new"])

    def _close_data(self) -> None:
        if self.chain is not None:
            self.chain.close()
            self.chain = None
        for box in self._pages.values():
            box.clear()
        if self.cube is not None:
            self.cube.close()
            self.cube = None
        self.tabs.layout.display = "none"
        self._options_row.layout.display = "none"
        self._save.disabled = True
        self._overwrite.layout.display = "none"
        self.message.value = ""
        self.info.value = ""


class _PageBox:
    """One tab: a help line, a "not yet" note, and the tool's view."""

    def __init__(self, help_text: str) -> None:
        self.help = widgets.HTML(f'<div class="fw-page-help">{html.escape(help_text)}</div>')
        self.note = widgets.HTML()
        self.note.add_class("fw-page-note")
        self.view = widgets.Box()
        self.box = widgets.VBox([self.help, self.note, self.view])

    def show(self, tool: Any, note: str) -> None:
        self.note.value = f'<div style="color: #8a5a00">{html.escape(note)}</div>' if note else ""
        self.view.children = () if tool is None else (tool.widget,)

    def clear(self) -> None:
        self.note.value = ""
        self.view.children = ()
