"""The application shell: the ``fourd-widgets`` command line and the Voila dashboard.

The command line lives in :mod:`fourd_widgets.app.cli`; each subcommand is a
small module with an ``add_parser(subparsers)`` function. The dashboard app
(file chooser + explorer) is :class:`fourd_widgets.app.dashboard_ui.Dashboard`,
shown by ``notebooks/explorer_dashboard.ipynb``; :mod:`fourd_widgets.app.files`
keeps it inside its folder.
"""

__all__: list[str] = []
