"""``fourd-widgets dashboard [DIR]``: the explorer dashboard (Voila) on your own data in DIR.

The dashboard notebook (``explorer_dashboard.ipynb``) is rendered by Voila on
127.0.0.1 from a private folder that holds only that notebook, and Voila is
told to serve no file: nothing of DIR, nor of anything else, is served over
HTTP. The notebook's kernel gets DIR through
:data:`~fourd_widgets.app.dashboard_ui.DATA_DIR_ENV`; its file chooser lists
the loadable files under DIR and opens nothing outside it (symbolic links and
``..`` that lead out are refused). "save recipe" writes to the output folder
(``--out``; default ``./fourd-widgets-out``, see :mod:`fourd_widgets.app.output`),
never into DIR. The URL printed carries the access token; Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..core.errors import FileFormatError
from .output import DEFAULT_OUT, resolve_output_dir
from .demo import (DASHBOARD_NAME, ServerSpec, add_server_options, app_folder, dashboard_notebook_source, free_port,
                   serve, voila_spec)

__all__ = ["add_parser", "run", "dashboard_spec"]


def dashboard_spec(folder: Path, app: Path, port: int, out: Path | None = None) -> ServerSpec:
    """The Voila server of the dashboard on the data in ``folder``.

    Parameters
    ----------
    folder : Path
        The data folder (must be a folder); the kernel gets it, resolved, in
        :data:`~fourd_widgets.app.dashboard_ui.DATA_DIR_ENV`.
    app : Path
        The folder holding the dashboard notebook (:func:`~fourd_widgets.app.demo.app_folder`).
    port : int
    out : Path, optional
        The output folder, already checked (:func:`~fourd_widgets.app.output.resolve_output_dir`);
        the kernel gets it in :data:`~fourd_widgets.app.dashboard_ui.OUTPUT_DIR_ENV`.

    Returns
    -------
    ServerSpec

    Raises
    ------
    FileFormatError
        If ``folder`` is not a folder.
    """
    from .dashboard_ui import DATA_DIR_ENV, OUTPUT_DIR_ENV

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise FileFormatError(folder, "is not a folder.", "Give the folder that holds your data files.")
    env = {DATA_DIR_ENV: str(root)}
    if out is not None:
        env[OUTPUT_DIR_ENV] = str(out)
    return voila_spec(app, DASHBOARD_NAME, port, env=env)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dashboard`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "dashboard",
        help="open the explorer dashboard on the data files of a folder",
        description=(
            "Serve the explorer dashboard with Voila on 127.0.0.1. Its file chooser lists the data "
            "files under DIR (by extension, sub-folders included) and opens nothing outside DIR. "
            "Ctrl-C stops the server."
        ),
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR",
                        help="the folder to browse (default: the current folder)")
    parser.add_argument("--out", type=Path, default=None, metavar="OUT",
                        help=f"where 'save recipe' writes (default: ./{DEFAULT_OUT} when the current folder is "
                             "outside DIR); never inside DIR")
    add_server_options(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard on ``args.dir`` until interrupted; returns the exit status."""
    folder = Path(args.dir).expanduser().resolve()
    if not folder.is_dir():
        raise FileFormatError(args.dir, "is not a folder.", "Give the folder that holds your data files.")
    out = resolve_output_dir(folder, args.out)  # refuses before any server starts
    print(f"fourd-widgets dashboard: recipes are saved to {out}", file=sys.stderr)
    port = args.port or free_port()
    notebook = dashboard_notebook_source()
    with app_folder(notebook) as app:
        spec = dashboard_spec(folder, app, port, out)
        log = Path(tempfile.gettempdir()) / f"fourd-widgets-dashboard-{port}.log"
        return serve(spec, folder, port, open_browser=not args.no_browser, log=log, command="dashboard")
