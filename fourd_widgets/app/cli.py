"""The ``fourd-widgets`` command line.

Each subcommand is a module of this package with a function
``add_parser(subparsers)`` that adds its parser and sets ``func`` (a callable
taking the parsed arguments and returning an exit status). Registering a new
subcommand is one entry in :data:`SUBCOMMANDS`.

Errors from :mod:`fourd_widgets.errors` are the user's to fix: they are printed
as one line on stderr, without a traceback, and the exit status is 2. Any other
exception is a bug and keeps its traceback.

Examples
--------
>>> build_parser().parse_args(["info", "scan.h5", "--json"]).json
True
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from .._version import __version__
from ..errors import FourDError
from . import batch, dashboard, demo, info

__all__ = ["SUBCOMMANDS", "USER_ERROR", "build_parser", "main"]

#: The subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[ModuleType, ...] = (info, demo, dashboard, batch)

#: Exit status for an error the user can fix (bad file, bad option).
USER_ERROR = 2

PROG = "fourd-widgets"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`SUBCOMMANDS` registered.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Interactive 4D-STEM analysis in Jupyter: command-line tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 on success, :data:`USER_ERROR` (2) for a usage
        error or a :class:`~fourd_widgets.errors.FourDError`.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else USER_ERROR
    try:
        return int(args.func(args) or 0)
    except FourDError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
