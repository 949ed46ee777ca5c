"""``LatestOnly``: one worker thread where the newest request wins (what every tool session runs on).

A threading utility, not analysis: a slider or a drag sends a request per
update, and only the newest one is worth computing and showing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["LatestOnly"]

Req = TypeVar("Req")


class LatestOnly(Generic[Req]):
    """One worker thread where the newest request wins.

    ``submit(request)`` never blocks. While ``fn`` runs, later requests replace
    the pending one (stale requests are dropped without running). A result is
    passed to ``callback(request, result)`` only if no newer request was
    submitted meanwhile (``deliver_stale=True`` delivers every computed result).

    Parameters
    ----------
    fn : callable(request) -> result
        The computation (e.g. ``lambda det: cache.query(det)``).
    callback : callable(request, result)
        Called on the worker thread.
    on_error : callable(request, exception), optional
        Called when ``fn`` raises; default: keep it in :attr:`last_error`.
    deliver_stale : bool

    Attributes
    ----------
    computed : int
        How many requests ``fn`` ran.
    delivered : int
        How many results reached ``callback``.

    Examples
    --------
    >>> seen = []
    >>> runner = LatestOnly(lambda x: x * 2, lambda req, res: seen.append(res))
    >>> runner.submit(21); runner.wait_idle(5.0)
    True
    >>> runner.close(); seen
    [42]
    """

    def __init__(self, fn: Callable[[Req], Any], callback: Callable[[Req, Any], Any], *,
                 on_error: Callable[[Req, BaseException], Any] | None = None,
                 deliver_stale: bool = False, name: str = "fourd-latest-only") -> None:
        self.fn = fn
        self.callback = callback
        self.on_error = on_error
        self.deliver_stale = deliver_stale
        self.computed = 0
        self.delivered = 0
        self.last_error: BaseException | None = None
        self._cond = threading.Condition()
        self._pending: list[Req] = []
        self._serial = 0
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Req) -> None:
        """Queue ``request``, replacing any request not started yet."""
        with self._cond:
            if self._closed:
                raise RuntimeError("this LatestOnly runner is closed")
            self._pending[:] = [request]
            self._serial += 1
            self._cond.notify_all()

    @property
    def submitted(self) -> int:
        """How many requests were submitted so far (a new one since a check means "not settled")."""
        return self._serial

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drop what is pending, let the running request finish, stop the thread."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    self._cond.notify_all()
                    return
                request = self._pending.pop()
                serial = self._serial
                self._busy = True
            try:
                result = self.fn(request)
                failed = None
            except BaseException as exc:  # noqa: BLE001 - delivered to on_error, the thread lives on
                result, failed = None, exc
            self.computed += 1
            with self._cond:
                newest = serial == self._serial
            try:
                if failed is not None:
                    self.last_error = failed
                    if self.on_error is not None and newest:
                        self.on_error(request, failed)
                elif newest or self.deliver_stale:
                    self.delivered += 1
                    self.callback(request, result)
            except Exception as exc:  # noqa: BLE001 - a failing callback must not kill the worker
                self.last_error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
