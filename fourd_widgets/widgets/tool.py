"""What the interactive tools share: update callbacks and waiting for their worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from ..engine.run import Cancel

__all__ = ["WorkerTool", "ToolRequest"]

P = TypeVar("P")

T = TypeVar("T", bound="WorkerTool")


class WorkerTool:
    """Mixin for a tool whose computations run on one ``LatestOnly`` worker.

    The tool sets ``self._callbacks`` (a list) and ``self._runner`` (with
    ``wait_idle(timeout) -> bool``); ``_tool_name`` names it in messages.
    """

    _tool_name = "tool"
    _callbacks: list
    _runner: Any

    def on_update(self: T, callback: Callable[[T], Any]) -> None:
        """Call ``callback(tool)`` (on the worker thread) whenever the tool shows new results."""
        self._callbacks.append(callback)

    def wait(self: T, timeout: float = 120.0) -> T:
        """Block until the tool shows the results of its current parameters (for scripts and tests)."""
        if not self._runner.wait_idle(timeout):
            raise TimeoutError(f"the {self._tool_name} did not finish within {timeout} s")
        return self


@dataclass
class ToolRequest(Generic[P]):
    """One computation asked of a tool's worker: its parameters and the token that cancels it."""

    params: P
    cancel: Cancel = field(default_factory=Cancel)
