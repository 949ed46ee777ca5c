"""What every tool view shares: busy/progress/cancel display, message lines, the delegating base.

A view (:class:`ToolView`) lays out controls and image views over a headless
:class:`~fourd_widgets.tools.base.Tool` session: it maps user events to session
calls and the session's events to traits. Nothing here computes.
"""

from __future__ import annotations

import html
import os
from typing import Any, Callable, TypeVar

import ipywidgets as w

from ..tools.base import Tool, explain

__all__ = ["Busy", "ToolView", "message_html", "message_label", "error_text", "LEVEL_COLORS"]

V = TypeVar("V", bound="ToolView")
LEVEL_COLORS = {"error": "#c62828", "warning": "#b26a00", "info": "#2e7d32"}


def message_html(text: str, level: str = "error") -> str:
    """A message beside a control as HTML (escaped; errors marked ⚠); ``''`` for no message.

    >>> message_html("")
    ''
    >>> message_html("a < b", "info")
    '<span class="fw-message fw-info" style="color:#2e7d32">a &lt; b</span>'
    """
    if not text:
        return ""
    mark = "⚠ " if level == "error" else ""
    return (f'<span class="fw-message fw-{level}" style="color:{LEVEL_COLORS[level]}">'
            f"{mark}{html.escape(text, quote=False)}</span>")


def error_text(exc: BaseException) -> str:
    """The message HTML of a failed step: our errors say what is missing; others name their type."""
    return message_html(explain(exc), "error")


def message_label() -> w.HTML:
    """The message line shown beside a section's controls (empty when all is well)."""
    return w.HTML("", layout=w.Layout(min_width="200px"))


class Busy:
    """Progress bar, cancel button and status line showing a session's ``busy``, ``progress`` and ``status``."""

    def __init__(self, session: Tool | None = None, width: str = "160px") -> None:
        self.bar = w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(width=width))
        self.cancel_button = w.Button(description="cancel", disabled=True, layout=w.Layout(width="70px"))
        self.status = w.Label("")
        self.box = w.HBox([self.bar, self.cancel_button, self.status])
        self._session = session
        self.cancel_button.on_click(lambda _: self.cancel())
        if session is not None:
            session.listen(self.show)

    def show(self, event: str, value: Any) -> None:
        """A session event -> the bar, the button and the status line."""
        if event == "busy":
            self.cancel_button.disabled = not value
            if value:
                self.bar.value = 0.0
                self.status.value = value
            else:
                self.bar.value = 1.0
        elif event == "progress":
            done, total = value
            self.bar.value = done / total if total else 1.0
        elif event == "status":
            self.status.value = value

    def cancel(self) -> None:
        """What the cancel button does: stop the session's work in progress."""
        if self._session is not None:
            self._session.cancel()


class ToolView:
    """Base of the tool views: delegates the tool contract to :attr:`session`.

    Subclasses set ``session`` and ``widget`` and list their image views in
    :meth:`_views` (closed with the tool).
    """

    session: Tool
    widget: w.Widget
    #: True while the view writes the session's state into its controls (their observers then stay quiet).
    _syncing: bool = False

    def _synced(self, fn: Any) -> None:
        """Run ``fn`` (which sets controls from the session) without echoing it back to the session."""
        self._syncing = True
        try:
            fn()
        finally:
            self._syncing = False

    def _unless_syncing(self, fn: Any, *args: Any) -> None:
        """``fn(*args)`` for a user's change, nothing for one made by :meth:`_synced`."""
        if not self._syncing:
            fn(*args)

    @property
    def params(self) -> Any:
        """The recipe of what is shown (the session's): ``fw.run(tool.params, cube)`` replays it."""
        return self.session.params

    @property
    def cube(self) -> Any:
        return self.session.cube

    @property
    def updates(self) -> int:
        """How many times new results were shown."""
        return self.session.updates

    @property
    def error(self) -> str:
        """The session's first error message ('' when all is well)."""
        return self.session.error

    def on_update(self, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(tool)`` (on a worker thread) whenever the tool shows new results."""
        self.session.on_update(lambda _session: callback(self))

    def wait(self: V, timeout: float = 120.0) -> V:
        """Block until the tool shows the results of its current parameters (for scripts and tests)."""
        self.session.wait(timeout)
        return self

    def run_on_all(self: V) -> V:
        """Start the whole-scan computation (returns at once)."""
        self.session.run_on_all()
        return self

    def cancel(self) -> None:
        """Stop the work in progress (partial results stay)."""
        self.session.cancel()

    def export_h5(self, path: str | os.PathLike) -> str:
        """Write the results and the recipe to an HDF5 results file."""
        return self.session.export_h5(path)

    def export_png(self, path: str | os.PathLike, name: str, **options: Any) -> str:
        """Write the image ``name`` as a PNG with a colorbar."""
        return self.session.export_png(path, name, **options)

    def _views(self) -> list[Any]:
        return []

    def close(self) -> None:
        """Stop the session and close the widgets (again: nothing)."""
        if getattr(self, "_view_closed", False):
            return
        self._view_closed = True
        self.session.close()
        for v in self._views():
            if v is not None:
                v.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
