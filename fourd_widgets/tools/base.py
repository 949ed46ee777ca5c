"""``Tool``: the headless session every interactive tool is built on.

A tool is a session (this layer: records, caches, compute policy, workers,
progress, cancel, partial results) plus a thin view (:mod:`fourd_widgets.widgets`:
controls and image views only). The session never imports a front-end package;
it tells its view what changed through :meth:`Tool.listen` events and is
tested without a browser.

The contract every tool keeps:

* :attr:`Tool.params` is its recipe: ``fw.run(tool.params, cube)`` replays what it shows;
* :meth:`Tool.from_params` rebuilds it from that recipe;
* :meth:`Tool.run_on_all` starts the whole-scan computation;
  :meth:`Tool.wait`, :meth:`Tool.cancel`, :meth:`Tool.close` drive it from scripts;
* :attr:`Tool.busy`, :attr:`Tool.progress`, :attr:`Tool.messages` / :attr:`Tool.error`
  are what the view shows beside its controls (errors never raise into a notebook);
* :meth:`Tool.export_h5` and :meth:`Tool.export_png` save its results with the recipe.

View events (``listener(event, value)``, called on the thread that changed the state):

============  =====================================================
``busy``      ``busy`` text changed (``''``: idle)
``progress``  ``(done, total)`` of the work in progress
``message``   ``(where, text, level)``: a message beside a control
``status``    a one-line status text
``update``    new results are shown (also calls :meth:`Tool.on_update` callbacks)
============  =====================================================

Subclasses add their own events (e.g. ``'images'``) for what their views draw.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np

from ..core.datacube import DataCube
from ..core.errors import FourDError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .worker import LatestOnly

__all__ = ["Tool", "Request", "explain", "Listener"]

T = TypeVar("T", bound="Tool")
#: A view's hook: ``listener(event, value)``.
Listener = Callable[[str, Any], Any]


@dataclass
class Request:
    """One computation asked of a session's worker: its parameters and the token that cancels it."""

    params: Any
    cancel: Cancel = field(default_factory=Cancel)


def explain(exc: BaseException) -> str:
    """One line for the user: the message of our own errors, the type too for anything else.

    >>> from fourd_widgets.core.errors import ParameterError
    >>> explain(ParameterError("sigma must be positive")), explain(KeyError("x"))
    ('sigma must be positive', "KeyError: 'x'")
    """
    if isinstance(exc, FourDError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Tool:
    """Headless session of an interactive tool (subclass it; see the module notes).

    Parameters
    ----------
    cube : DataCube or None
        The data the tool reads (None for tools that work on results only).

    Attributes
    ----------
    busy : str
        What the workers are doing (``''`` when idle).
    progress : (int, int)
        ``(done, total)`` of the latest work that reports progress.
    messages : dict of str -> (str, str)
        ``where -> (text, level)``: what is wrong (or worth saying) beside each
        group of controls; level ``'error'``, ``'warning'`` or ``'info'``.
    status : str
        One line about the session as a whole.
    updates : int
        How many times new results were shown (what ``on_update`` callbacks see).

    Examples
    --------
    >>> class Doubler(Tool):
    ...     name = "doubler"
    ...     def __init__(self):
    ...         super().__init__(None)
    ...         self.value = None
    ...         self._worker = self._add_worker(lambda x: 2 * x, self._shown)
    ...     def _shown(self, request, result):
    ...         self.value = result
    ...         self._notify()
    >>> d = Doubler()
    >>> d._worker.submit(21); d.wait().value, d.updates
    (42, 1)
    >>> d.close()
    """

    #: How the tool is named in messages ("the explorer did not finish ...").
    name: ClassVar[str] = "tool"

    def __init__(self, cube: DataCube | None) -> None:
        self.cube = cube
        self.busy = ""
        self.progress: tuple[int, int] = (0, 0)
        self.messages: dict[str, tuple[str, str]] = {}
        self.status = ""
        self.updates = 0
        self.closed = False
        self._lock = threading.RLock()
        self._callbacks: list[Callable[[Any], Any]] = []
        self._listeners: list[Listener] = []
        self._workers: list[LatestOnly] = []
        self._threads: list[threading.Thread] = []
        self._work: dict[int, tuple[Cancel, str]] = {}

    # --- the recipe (subclasses) --------------------------------------------------------------
    @property
    def params(self) -> Recipe:
        """The recipe of what is shown: ``fw.run(tool.params, cube)`` replays it."""
        raise NotImplementedError

    @classmethod
    def from_params(cls: type[T], cube: Any, params: Any, **options: Any) -> T:
        """Rebuild the tool from its :attr:`params` (a Recipe, its dict or its JSON)."""
        raise NotImplementedError

    def results(self) -> dict[str, Any]:
        """Named results shown (step label -> array or container), for :meth:`export_h5`."""
        return {}

    def run_on_all(self: T) -> T:
        """Start the whole-scan computation of the current parameters (returns at once)."""
        raise NotImplementedError(f"the {self.name} has no whole-scan run")

    # --- views and callbacks ------------------------------------------------------------------
    def listen(self, listener: Listener) -> None:
        """Call ``listener(event, value)`` whenever the session's state changes (for views)."""
        self._listeners.append(listener)

    def on_update(self, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(tool)`` (on a worker thread) whenever the tool shows new results."""
        self._callbacks.append(callback)

    def _emit(self, event: str, value: Any = None) -> None:
        for fn in list(self._listeners):
            try:
                fn(event, value)
            except Exception as exc:  # noqa: BLE001 - a broken view must not stop the session
                self.status = f"the view failed to show {event!r}: {explain(exc)}"

    def _notify(self) -> None:
        """New results are shown: count them, tell the view, call the user's callbacks."""
        self.updates += 1
        self._emit("update", self.updates)
        for fn in list(self._callbacks):
            try:
                fn(self)
            except Exception as exc:  # noqa: BLE001 - a user callback must not stop the tool
                self._set_status(f"on_update callback failed: {exc}")

    # --- state the view shows -------------------------------------------------------------------
    @property
    def error(self) -> str:
        """The first error message beside any control (``''`` when all is well)."""
        return next((text for text, level in self.messages.values() if level == "error" and text), "")

    def _say(self, where: str, text: str, level: str = "error") -> None:
        """Set (``text``) or clear (``''``) the message beside the controls ``where``."""
        self.messages[where] = (text, level)
        self._emit("message", (where, text, level))

    def _fail(self, where: str, exc: BaseException) -> None:
        """An error of the user's input or the data, shown beside ``where`` (never raised)."""
        self._say(where, explain(exc), "error")

    def _set_status(self, text: str) -> None:
        self.status = text
        self._emit("status", text)

    def _start(self, text: str, cancel: Cancel | None = None) -> Cancel:
        """Register a piece of work (its cancel token is returned); the view shows ``busy``."""
        token = Cancel() if cancel is None else cancel
        with self._lock:
            self._work[id(token)] = (token, text)
            self.busy = text
        self.progress = (0, 0)
        self._emit("busy", text)
        return token

    def _report(self, done: int, total: int) -> None:
        """Progress of the work in progress (call from the worker)."""
        self.progress = (int(done), int(total))
        self._emit("progress", self.progress)

    def _finish(self, token: Cancel) -> None:
        """The work of ``token`` ended (done, failed or cancelled)."""
        with self._lock:
            self._work.pop(id(token), None)
            before, self.busy = self.busy, next(reversed(self._work.values()))[1] if self._work else ""
        if not self.busy:
            self.progress = (self.progress[1], self.progress[1]) if self.progress[1] else (1, 1)
        if not self.busy or self.busy != before:
            self._emit("busy", self.busy)

    # --- workers ------------------------------------------------------------------------------
    def _add_worker(self, compute: Callable[[Any], Any], deliver: Callable[[Any, Any], Any],
                    on_error: Callable[[Any, BaseException], Any] | None = None) -> LatestOnly:
        """A newest-wins worker thread whose errors land in :attr:`messages`, not on the thread."""
        worker = LatestOnly(compute, deliver, on_error=on_error or self._worker_failed,
                            name=f"fourd-{self.name.replace(' ', '-')}")
        self._workers.append(worker)
        return worker

    def _worker_failed(self, request: Any, exc: BaseException) -> None:
        self._fail("error", exc)

    def _add_thread(self, target: Callable[[], Any], name: str) -> threading.Thread:
        """Start a thread for a long run (run on all); :meth:`wait` and :meth:`close` join it."""
        thread = threading.Thread(target=target, name=f"fourd-{name}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _pending(self) -> bool:
        """True while results of the current parameters are still on their way (subclasses)."""
        return False

    # --- driving it from a script -----------------------------------------------------------------
    def wait(self: T, timeout: float = 120.0) -> T:
        """Block until the tool shows the results of its current parameters (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while True:
            left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
            workers = list(self._workers)
            # one worker's result may submit to another already checked (the disk tuner's strip ->
            # its lattice fit): settled only when no request was submitted during the pass
            submitted = [w.submitted for w in workers]
            idle = all(w.wait_idle(left()) for w in workers)
            for t in list(self._threads):
                t.join(left())
                idle = idle and not t.is_alive()
            idle = idle and [w.submitted for w in workers] == submitted and len(self._workers) == len(workers)
            if idle and not self._pending():
                return self
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the {self.name} did not finish within {timeout} s")
            time.sleep(0.01)

    def cancel(self) -> None:
        """Stop the work in progress between chunks (partial results stay)."""
        with self._lock:
            tokens = [tok for tok, _ in self._work.values()]
        for tok in tokens:
            tok.cancel()

    def close(self) -> None:
        """Stop the workers and threads (again: nothing)."""
        if self.closed:
            return
        self.closed = True
        self.cancel()
        for w in self._workers:
            w.close(5.0)
        for t in list(self._threads):
            t.join(10.0)
        self._emit("closed")

    # --- exports ------------------------------------------------------------------------------------
    def export_h5(self, path: str | os.PathLike) -> str:
        """Write :meth:`results` and :attr:`params` to an HDF5 results file (atomically); returns the path.

        Raises
        ------
        ParameterError
            When there is nothing to save yet.
        """
        from ..core.errors import ParameterError
        from ..io.results import Results

        values = self.results()
        if not values:
            raise ParameterError(f"the {self.name} has no results to save yet")
        return Results(values, self.params, {"tool": self.name}).save(path)

    def export_png(self, path: str | os.PathLike, name: str, *, colormap: Any = "gray",
                   limits: tuple[float, float] | None = None, title: str | None = None) -> str:
        """Write the 2-D result (or image) ``name`` as a PNG with a labelled colorbar; returns the path.

        ``colormap`` is a matplotlib colormap or its name; NaN pixels are gray.
        """
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from ..core.errors import ParameterError

        image = self.images().get(name)
        if image is None:
            raise ParameterError(f"no image {name!r} to save; the {self.name} shows {sorted(self.images())}",
                                 field="name")
        cmap = colormaps[colormap] if isinstance(colormap, str) else colormap
        cmap = cmap.with_extremes(bad=(0.6, 0.6, 0.6))
        data = np.ma.masked_invalid(np.abs(image) if np.iscomplexobj(image) else np.asarray(image, float))
        lo, hi = limits if limits is not None else (None, None)
        fig = Figure(figsize=(4.2, 3.4), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title or name)
        fig.colorbar(im, ax=ax, label=title or name)
        path = os.fspath(path)
        fig.savefig(path)
        return path

    def images(self) -> Mapping[str, np.ndarray]:
        """The 2-D images shown, by name, for :meth:`export_png` (subclasses)."""
        return {k: v for k, v in self.results().items() if isinstance(v, np.ndarray) and v.ndim == 2}
