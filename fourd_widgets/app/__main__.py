"""``python -m fourd_widgets.app`` runs the command line (same as ``fourd-widgets``)."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
