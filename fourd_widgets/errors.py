"""``fw.errors``: the exception hierarchy (defined in :mod:`fourd_widgets.core.errors`)."""

from .core.errors import *  # noqa: F401,F403
from .core.errors import __all__  # noqa: F401
