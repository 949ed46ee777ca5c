"""Progress reporting for jobs: tqdm on a terminal, ipywidgets in a notebook, or a callable.

``progress`` option of :func:`~fourd_widgets.engine.run_job`:

* ``None`` (default): a bar appears only if the job is still running after
  :data:`AUTO_DELAY` seconds, so quick interactive updates never flicker one;
* ``True``: a bar from the start;
* ``False``: nothing;
* a callable ``f(done, total)``: called with ``(0, total)`` first and after every chunk.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

__all__ = ["make_progress", "in_notebook", "AUTO_DELAY"]

#: Seconds an automatic bar waits before showing itself.
AUTO_DELAY = 0.5


def in_notebook() -> bool:
    """True when running inside a Jupyter (IPython) kernel.

    >>> isinstance(in_notebook(), bool)
    True
    """
    ip_mod = sys.modules.get("IPython")
    if ip_mod is None:
        return False
    try:
        shell = ip_mod.get_ipython()
    except Exception:  # an odd IPython install must not break a computation
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Null:
    def update(self, done: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Callback(_Null):
    def __init__(self, fn: Callable[[int, int], Any], total: int) -> None:
        self.fn = fn
        self.total = total
        fn(0, total)

    def update(self, done: int) -> None:
        self.fn(done, self.total)


class _Bar(_Null):
    """A tqdm or ipywidgets bar created lazily once ``delay`` has passed."""

    def __init__(self, total: int, desc: str, delay: float) -> None:
        self.total = total
        self.desc = desc
        self.start = time.monotonic()
        self.delay = delay
        self.bar: Any = None
        self.widget: Any = None
        if delay <= 0:
            self._open()

    def _open(self) -> None:
        if in_notebook():
            try:
                import ipywidgets
                from IPython.display import display

                self.widget = ipywidgets.IntProgress(value=0, min=0, max=self.total, description=self.desc)
                display(self.widget)
                return
            except ImportError:  # fall back to tqdm's text bar
                pass
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, leave=False)

    def update(self, done: int) -> None:
        if self.bar is None and self.widget is None:
            if time.monotonic() - self.start < self.delay or done >= self.total:
                return
            self._open()
        if self.widget is not None:
            self.widget.value = done
        else:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.widget is not None:
            self.widget.close()


def make_progress(progress: Any, total: int, desc: str = "") -> Any:
    """A reporter with ``update(done)`` and ``close()`` for the ``progress`` option.

    >>> seen = []
    >>> r = make_progress(lambda d, t: seen.append((d, t)), 2)
    >>> r.update(1); r.update(2); r.close()
    >>> seen
    [(0, 2), (1, 2), (2, 2)]
    """
    if progress is False:
        return _Null()
    if callable(progress):
        return _Callback(progress, total)
    if progress is None:
        return _Bar(total, desc, AUTO_DELAY)
    if progress is True:
        return _Bar(total, desc, 0.0)
    raise TypeError(f"progress must be None, True, False or a callable(done, total), got {progress!r}")
