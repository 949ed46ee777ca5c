"""Iterative ptychography started from a :class:`~fourd_widgets.tools.phase_tuner.PhaseTunerSession`'s sliders.

:class:`PhaseReconstruction` is the PhaseTuner's "reconstruct" action: it builds a
:class:`~fourd_widgets.analysis.ptychography.PtychographyParams` from the tuned scan
rotation, transpose (flip), C10, C12 and φ12, runs
:func:`~fourd_widgets.analysis.ptychography.reconstruct_ptychography` on a thread
of the session (progress per iteration, cancel between blocks), and paints the
object phase, the probe intensity and the error curve every ``paint_every``
iterations (event ``'ptychography'``). The state is checkpointed after each
iteration into a private folder, so :meth:`PhaseReconstruction.resume` continues
a cancelled run from its last iteration and ends with the uninterrupted run's
result, to the bit. The record joins the tuner's recipe once a reconstruction
was asked for, so ``fw.run(tuner.params, cube)`` replays it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any

import numpy as np

from ..analysis.ptychography import PtychographyParams, PtychographyResult, reconstruct_ptychography
from ..core.errors import CancelledError, ParameterError
from ..engine.checkpoint import CheckpointError
from ..engine.run import Cancel

__all__ = ["PhaseReconstruction", "painting", "TUNED"]

#: The PtychographyParams fields the tuner's sliders set.
TUNED = ("rotation_deg", "flip", "C10", "C12", "phi12_deg")


def painting(preview: dict[str, Any], iteration: int, iterations: int, done: bool) -> dict[str, Any]:
    """What the view paints from a reconstruction's preview.

    Returns
    -------
    dict
        ``phase`` (M1, M2) float32 rad (the sum over slices of a multislice
        object), ``probe`` (N1, N2) float32 intensity of all modes,
        ``errors`` (n,) float64 error curve, ``iteration``, ``iterations``, ``done``.

    >>> p = painting({"phase": np.zeros((4, 4)), "probe": np.ones((1, 2, 2), complex), "errors": [0.5]}, 1, 3, False)
    >>> p["phase"].shape, p["probe"].tolist(), p["errors"].tolist()
    ((4, 4), [[1.0, 1.0], [1.0, 1.0]], [0.5])
    """
    phase = np.asarray(preview["phase"], np.float32)
    if phase.ndim == 3:
        phase = phase.sum(axis=0)
    probe = np.sum(np.abs(np.asarray(preview["probe"])) ** 2, axis=0).astype(np.float32)
    return {"phase": phase, "probe": probe, "errors": np.asarray(preview["errors"], np.float64),
            "iteration": int(iteration), "iterations": int(iterations), "done": bool(done)}


class PhaseReconstruction:
    """The reconstruct action of a tool session (the session owns the thread, busy text and events).

    Parameters
    ----------
    tool : Tool
        The session: its cube, engine options, ``controls`` (the tuned values) and event methods.

    Attributes
    ----------
    record : PtychographyParams or None
        The record of the last reconstruction asked for (None: none yet).
    result : PtychographyResult or None
        The finished reconstruction of :attr:`record`.
    painted : dict or None
        The last painting (see :func:`painting`).
    iteration : int
        Iterations done by the current (or cancelled) run.
    """

    def __init__(self, tool: Any) -> None:
        self.tool = tool
        self.record: PtychographyParams | None = None
        self.result: PtychographyResult | None = None
        self.painted: dict[str, Any] | None = None
        self.iteration = 0
        self.paint_every = 1
        self._dir = tempfile.mkdtemp(prefix="fourd-ptycho-")
        self._token: Cancel | None = None
        self._thread: threading.Thread | None = None

    @property
    def checkpoint(self) -> str:
        """The state file of the current record's run."""
        return os.path.join(self._dir, "reconstruction.npz")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def record_from(self, controls: dict[str, Any], **fields: Any) -> PtychographyParams:
        """A record from the tuned values (``controls``), the last record's other fields and ``fields``."""
        unknown = set(fields) - set(PtychographyParams.__dataclass_fields__)
        if unknown:
            raise ParameterError(f"ptychography has no field {sorted(unknown)[0]!r}; see PtychographyParams",
                                 field=sorted(unknown)[0])
        base = self.record if self.record is not None else PtychographyParams(iterations=10, batch_size=64)
        tuned = {k: (bool(controls[k]) if k == "flip" else float(controls[k])) for k in TUNED}
        return base.replace(**{**tuned, **fields})

    def start(self, record: PtychographyParams, *, resume: bool = False, paint_every: int = 1) -> None:
        """Run ``record`` on a thread; ``resume`` continues from the checkpoint of the same record."""
        if int(paint_every) < 1:
            raise ParameterError(f"paint_every must be 1 or more, got {paint_every}", field="paint_every")
        self.stop()
        if not resume or record != self.record:
            self._forget()
        self.record, self.result, self.paint_every = record, None, int(paint_every)
        self._token = self.tool._start(f"ptychography: {record.iterations} iterations", Cancel())
        self.tool._say("ptychography", "")
        token = self._token
        self._thread = self.tool._add_thread(lambda: self._run(record, token), "ptychography")

    def resume(self) -> None:
        """Continue the last (cancelled) reconstruction from its last iteration."""
        if self.record is None:
            raise ParameterError("nothing to resume: start a reconstruction first")
        self.start(self.record, resume=True, paint_every=self.paint_every)

    def cancel(self) -> None:
        """Stop the reconstruction between blocks (its state after the last iteration is kept for resume)."""
        if self._token is not None:
            self._token.cancel()

    def stop(self) -> None:
        """Cancel a running reconstruction and wait for its thread."""
        if self.running:
            self.cancel()
            assert self._thread is not None
            self._thread.join()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _forget(self) -> None:
        if os.path.exists(self.checkpoint):
            os.remove(self.checkpoint)
        self.iteration = 0

    def _run(self, record: PtychographyParams, token: Cancel) -> None:
        tool = self.tool
        opts = {k: v for k, v in tool.engine_options.items() if k in ("scheduler", "workers")}
        n = record.iterations

        def paint(i: int, preview: dict[str, Any]) -> None:
            self.iteration = i
            if i % self.paint_every == 0 or i == n:
                self.painted = painting(preview, i, n, i == n)
                tool._emit("ptychography", self.painted)

        try:
            try:
                res = reconstruct_ptychography(tool.cube, record, progress=tool._report, cancel=token,
                                               on_iteration=paint, checkpoint=self.checkpoint, **opts)
            except CheckpointError:  # a state file of another record: start afresh
                self._forget()
                res = reconstruct_ptychography(tool.cube, record, progress=tool._report, cancel=token,
                                               on_iteration=paint, checkpoint=self.checkpoint, **opts)
        except CancelledError as exc:
            self.iteration = int(getattr(exc, "iteration", self.iteration))
            tool._set_status(f"ptychography cancelled after iteration {self.iteration} of {n}; resume continues it")
            tool._emit("ptychography_state", "cancelled")
        except Exception as exc:  # noqa: BLE001 - shown beside the reconstruct button
            tool._fail("ptychography", exc)
            tool._emit("ptychography_state", "failed")
        else:
            self.result = res
            self.iteration = res.iterations
            if self.painted is None or self.painted["iteration"] != res.iterations:
                self.painted = painting({"phase": res.phase, "probe": res.probe, "errors": res.errors},
                                        res.iterations, n, True)
                tool._emit("ptychography", self.painted)
            err = f", error {res.errors[-1]:.3g}" if len(res.errors) else ""
            tool._set_status(f"ptychography: {res.iterations} iterations{err}")
            tool._emit("ptychography_state", "done")
            tool._notify()
        finally:
            tool._finish(token)
