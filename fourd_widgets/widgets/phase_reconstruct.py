"""The PhaseTuner's reconstruct panel: iterative ptychography from the sliders, painted as it converges.

A thin view over :class:`fourd_widgets.tools.phase_reconstruct.PhaseReconstruction`
(through the tuner's session): iterations, batch size and how often to paint;
reconstruct, cancel and resume buttons; the object phase and probe intensity
images and the error curve (bqplot), repainted on each ``'ptychography'`` event.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np

from .image_view import ImageView
from .tool_view import message_html, message_label

__all__ = ["ReconstructPanel"]


class ReconstructPanel:
    """Reconstruct / cancel / resume buttons, the painted phase and probe, and the error curve.

    Parameters
    ----------
    session : PhaseTunerSession
        The tuner's session (its sliders give the rotation, flip and aberrations).
    size : int
        Canvas width of the phase and probe images, CSS px.

    Examples
    --------
    >>> from fourd_widgets.datasets.phase import simulate_phase
    >>> from fourd_widgets.tools.phase_tuner import PhaseTunerSession
    >>> cube, _ = simulate_phase(scan_shape=(8, 8), scan_step_A=0.3, detector_shape=(32, 32), reciprocal_step_mrad=2.0)
    >>> s = PhaseTunerSession(cube)
    >>> panel = ReconstructPanel(s)
    >>> panel.iterations.value = 1
    >>> panel.reconstruct_button.click(); _ = s.wait()
    >>> len(panel.curve.y), panel.phase_view.title
    (1, 'object phase (rad), iteration 1 of 1')
    >>> s.close()
    """

    def __init__(self, session: Any, size: int = 240) -> None:
        import bqplot as bq

        self.session = session
        rec = session.reconstruction.record
        style = {"description_width": "90px"}
        self.iterations = w.BoundedIntText(value=rec.iterations if rec else 10, min=1, max=1000,
                                           description="iterations", style=style, layout=w.Layout(width="170px"))
        self.batch_size = w.BoundedIntText(value=rec.batch_size if rec else 64, min=1, max=65536,
                                           description="batch size", style=style, layout=w.Layout(width="170px"),
                                           tooltip="Positions per update (memory grows with the batch, not the scan)")
        self.paint_every = w.BoundedIntText(value=1, min=1, max=1000, description="paint every", style=style,
                                            layout=w.Layout(width="170px"))
        self.reconstruct_button = w.Button(description="reconstruct", button_style="primary",
                                           tooltip="Iterative ptychography starting from the sliders' scan rotation, "
                                                   "transpose and aberrations")
        self.cancel_button = w.Button(description="cancel", disabled=True,
                                      tooltip="Stop after the current block; the last iteration is kept")
        self.resume_button = w.Button(description="resume", disabled=True,
                                      tooltip="Continue the cancelled reconstruction from its last iteration")
        for b, css in ((self.reconstruct_button, "fw-ptycho-reconstruct"), (self.cancel_button, "fw-ptycho-cancel"),
                       (self.resume_button, "fw-ptycho-resume")):
            b.add_class(css)
        self.message = message_label()
        self.state = w.HTML("")
        self.state.add_class("fw-ptycho-state")
        self.phase_view = ImageView(title="object phase (rad)", colormap="gray", size=size)
        self.probe_view = ImageView(title="probe intensity", colormap="inferno", size=size)
        xs, ys = bq.LinearScale(), bq.LogScale()
        self.curve = bq.Lines(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys}, colors=["#c62828"],
                              marker="circle", marker_size=16)
        self.error_figure = bq.Figure(
            marks=[self.curve], title="Fourier error per iteration",
            axes=[bq.Axis(scale=xs, label="iteration", tick_format="d"),
                  bq.Axis(scale=ys, side="left", label="error", tick_format=".1e", label_offset="56px")],
            layout=w.Layout(width="340px", height="240px"), fig_margin={"top": 30, "bottom": 40, "left": 72, "right": 10})
        self.reconstruct_button.on_click(lambda _: self._act(self._reconstruct))
        self.cancel_button.on_click(lambda _: self._act(session.cancel_reconstruction))
        self.resume_button.on_click(lambda _: self._act(self._resume))
        controls = w.VBox([self.iterations, self.batch_size, self.paint_every,
                           w.HBox([self.reconstruct_button, self.cancel_button, self.resume_button]),
                           self.state, self.message])
        self.widget = w.VBox([w.HTML("<b>Ptychography</b>"),
                              w.HBox([controls, self.error_figure]), w.HBox([self.phase_view, self.probe_view])])
        self.widget.add_class("fw-ptycho-panel")
        session.listen(self._on_event)

    def _act(self, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a refused value is shown, not raised into the notebook
            self.message.value = message_html(str(exc))

    def _reconstruct(self) -> None:
        self.cancel_button.disabled, self.resume_button.disabled = False, True
        self.session.reconstruct(iterations=int(self.iterations.value), batch_size=int(self.batch_size.value),
                                 paint_every=int(self.paint_every.value))

    def _resume(self) -> None:
        self.cancel_button.disabled, self.resume_button.disabled = False, True
        self.session.resume()

    def _on_event(self, event: str, value: Any) -> None:
        if event == "ptychography":
            self.paint(value)
        elif event == "ptychography_state":
            self.cancel_button.disabled = True
            self.resume_button.disabled = value != "cancelled"
            rec = self.session.reconstruction
            self.state.value = f"{value} after iteration {rec.iteration}"
        elif event == "message" and value[0] == "ptychography":
            self.message.value = message_html(value[1], value[2])

    def paint(self, painted: dict[str, Any]) -> None:
        """Show one painting (:func:`fourd_widgets.tools.phase_reconstruct.painting`)."""
        i, n = painted["iteration"], painted["iterations"]
        self.phase_view.set_image(painted["phase"])
        self.phase_view.title = f"object phase (rad), iteration {i} of {n}"
        self.probe_view.set_image(painted["probe"])
        errors = painted["errors"]
        with self.curve.hold_sync():
            self.curve.x = np.arange(1, len(errors) + 1, dtype=np.float64)
            self.curve.y = np.asarray(errors, np.float64)
        self.state.value = f"iteration {i} of {n}" + (f", error {errors[-1]:.3g}" if len(errors) else "")

    def views(self) -> list[Any]:
        return [self.phase_view, self.probe_view]
