"""The Tool base: errors become messages, cancel stops work, exports carry the recipe."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fourd_widgets.analysis.virtual import VirtualDiffractionParams
from fourd_widgets.core.errors import CancelledError, ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results
from fourd_widgets.tools import Tool


class Square(Tool):
    """A toy session: squares an array on its worker; negative input is the user's error."""

    name = "squarer"

    def __init__(self) -> None:
        super().__init__(None)
        self.result: np.ndarray | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.events: list[tuple[str, object]] = []
        self.listen(lambda e, v: self.events.append((e, v)))
        self._worker = self._add_worker(self._compute, self._deliver)

    def submit(self, x: np.ndarray) -> None:
        self._worker.submit((x, self._start("squaring")))

    def _compute(self, req):
        x, token = req
        try:
            if (x < 0).any():
                raise ParameterError("negative input: give values >= 0", field="x")
            for k in range(4):
                self.gate.wait(10)
                if token.is_set():
                    raise CancelledError("cancelled")
                self._report(k + 1, 4)
            return x ** 2
        finally:
            self._finish(token)

    def _deliver(self, req, out) -> None:
        self.result = out
        self._notify()

    @property
    def params(self) -> Recipe:
        return Recipe(steps=(VirtualDiffractionParams(method="mean"),), labels=("virtual_diffraction",))

    def results(self):
        return {} if self.result is None else {"virtual_diffraction": self.result}


def test_worker_errors_are_messages_not_exceptions() -> None:
    tool = Square()
    try:
        tool.submit(np.array([[-1.0]]))
        tool.wait(30)
        assert "negative input" in tool.error and tool.result is None
        assert ("message", ("error", "negative input: give values >= 0", "error")) in tool.events
        assert tool.busy == ""
    finally:
        tool.close()


def test_progress_callbacks_and_cancel() -> None:
    tool = Square()
    seen = []
    tool.on_update(lambda t: seen.append(t.updates))
    try:
        tool.submit(np.arange(4.0).reshape(2, 2))
        tool.wait(30)
        assert seen == [1] and tool.progress == (4, 4)
        np.testing.assert_array_equal(tool.result, np.arange(4.0).reshape(2, 2) ** 2)
        tool.gate.clear()
        tool.submit(np.ones((2, 2)))
        tool.cancel()
        tool.gate.set()
        tool.wait(30)
        assert seen == [1] and tool.busy == ""          # nothing new shown
        assert tool.result[1, 1] == 9.0                  # the previous result stays
    finally:
        tool.close()


def test_exports_carry_the_recipe(tmp_path) -> None:
    tool = Square()
    try:
        with pytest.raises(ParameterError, match="no results"):
            tool.export_h5(tmp_path / "none.h5")
        tool.submit(np.arange(6.0).reshape(2, 3))
        tool.wait(30)
        back = Results.load(tool.export_h5(tmp_path / "out.h5"))
        assert back.recipe == tool.params
        np.testing.assert_array_equal(back["virtual_diffraction"], np.arange(6.0).reshape(2, 3) ** 2)
        png = tool.export_png(tmp_path / "out.png", "virtual_diffraction", colormap="viridis")
        assert open(png, "rb").read(4) == b"\x89PNG"
        with pytest.raises(ParameterError, match="no image"):
            tool.export_png(tmp_path / "x.png", "strain")
    finally:
        tool.close()


class Chain(Tool):
    """Two workers: the first's result feeds the second, registered before it (as the disk tuner's
    lattice worker is registered before its strip's results arrive)."""

    name = "chain"

    def __init__(self) -> None:
        super().__init__(None)
        self.gate = threading.Event()
        self.final: int | None = None
        self._second = self._add_worker(self._slow_increment, self._got_second)
        self._first = self._add_worker(self._slow_double, lambda req, out: self._second.submit(out))

    def _slow_double(self, x: int) -> int:
        self.gate.wait(10)  # holds the first worker until the test has entered wait()
        return 2 * x

    @staticmethod
    def _slow_increment(x: int) -> int:
        time.sleep(0.2)
        return x + 1

    def _got_second(self, req, out) -> None:
        self.final = out

    @property
    def params(self) -> Recipe:
        return Recipe(steps=(VirtualDiffractionParams(method="mean"),), labels=("virtual_diffraction",))

    def results(self):
        return {}


def test_wait_settles_only_when_a_result_passed_on_to_another_worker_is_done() -> None:
    """wait() checks the second worker (idle), then the first, whose result submits to the second:
    it must not return before the second worker ran on it."""
    t = Chain()
    try:
        t._first.submit(20)
        threading.Timer(0.2, t.gate.set).start()
        t.wait(30)
        assert t.final == 41
    finally:
        t.close()
