"""Tool sessions: the headless half of every interactive tool (no front-end imports).

* :class:`Tool`: the base (recipe, workers, progress, cancel, messages, exports);
* :class:`Request`: parameters and cancel token of one worker computation;
* :class:`LatestOnly`: one worker thread where the newest request wins;
* :mod:`~fourd_widgets.tools.overlays`: overlay dicts and their detector records.

The views in :mod:`fourd_widgets.widgets` lay out controls over these sessions.
"""

from .base import Request, Tool, explain
from .worker import LatestOnly

__all__ = ["Tool", "Request", "LatestOnly", "explain"]
