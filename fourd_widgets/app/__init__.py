"""The application shell: the ``fourd-widgets`` command line and (later) the Voila dashboard.

The command line lives in :mod:`fourd_widgets.app.cli`; each subcommand is a
small module with an ``add_parser(subparsers)`` function.
"""

__all__: list[str] = []
