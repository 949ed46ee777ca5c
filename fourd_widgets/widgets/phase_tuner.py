"""``PhaseTuner``: sliders for scan rotation, defocus, astigmatism and DPC filters over live DPC, iDPC, tcBF, SSB.

A thin view over :class:`fourd_widgets.tools.phase_tuner.PhaseTunerSession`
(``tuner.session``): it lays out the sliders, the four previews and the parallax
shift field (measured shifts as yellow circles, the fit's model as cyan crosses,
the sliders' model as magenta dots, each drawn from its detector group's place in
the bright-field disk), the ptychography panel (:mod:`.phase_reconstruct`: reconstruct
from the sliders, cancel, resume, the phase and probe painted beside the error curve),
and maps events both ways. ``fw.run(tuner.params, cube)`` replays the results shown.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as w
import numpy as np

from ..core.datacube import DataCube
from ..tools.phase_tuner import PARTS, PhaseTunerSession
from .image_view import ImageView
from .phase_reconstruct import ReconstructPanel
from .tool_view import Busy, ToolView, message_html, message_label

__all__ = ["PhaseTuner"]

_TITLES = {"dpc": "DPC: centre of mass along scan x (1/Å)", "idpc": "iDPC phase (rad)",
           "tcbf": "tcBF (sliders' aberrations)", "ssb": "SSB phase (rad)"}
#: Image pixels per detector group in the shift-field view.
_CELL_PX = 5
#: Where each part's message is shown: the previews it concerns.
_MESSAGES = ("dpc", "parallax", "ssb")


def _filter_value(v: float) -> float | None:
    """A cut-off slider's value -> the record's (0 means no filter)."""
    return None if v <= 0 else float(v)


class PhaseTuner(ToolView):
    """Scan rotation and flip, defocus, astigmatism and filter cut-offs tuned on live phase previews.

    Parameters
    ----------
    cube : DataCube
        Calibrated (scan and detector steps, energy, convergence semi-angle, origin).
    params : Recipe, dict or JSON, optional
        Starting records (dpc, parallax, ssb steps).
    bin : int
        Parallax: detector pixels grouped ``bin x bin``.
    size : int
        Canvas width of each preview, CSS px.
    engine_options : dict, optional
        ``workers``, ``scheduler``, ``chunk_bytes`` for the passes over the cube.

    Examples
    --------
    >>> from fourd_widgets.datasets.phase import simulate_phase
    >>> cube, _ = simulate_phase(scan_shape=(16, 16), scan_step_A=0.244, detector_shape=(48, 48), C10=60.0)
    >>> tuner = PhaseTuner(cube).wait()
    >>> tuner.defocus.value = 60.0
    >>> tuner.wait().session.record("ssb").C10
    60.0
    >>> tuner.close()
    """

    def __init__(self, cube: DataCube, params: Any = None, *, bin: int = 2, size: int = 240,
                 engine_options: dict | None = None) -> None:
        self.session = PhaseTunerSession(cube, params, bin=bin, engine_options=engine_options, start=False)
        s = self.session
        cal = cube.calibration
        step = cal.real_step_in("Å") if cal.real_step is not None else None
        self.views = {n: ImageView(title=_TITLES[n], colormap="gray", size=size,
                                   pixel_size=step, units="Å" if step else "px") for n in PARTS}
        self.shift_view = ImageView(title="parallax shifts: measured (o), fit (x), sliders (.)", colormap="gray",
                                    size=size, contrast="absolute", vmin=0.0, vmax=1.0)
        c = s.controls
        c10_range = max(500.0, 2 * abs(c["C10"]))
        slider = dict(continuous_update=True, layout=w.Layout(width="330px"), style={"description_width": "130px"})
        self.rotation = w.FloatSlider(value=c["rotation_deg"], min=-180, max=180, step=0.5,
                                      description="scan rotation (°)", **slider)
        self.transpose = w.Checkbox(value=c["flip"], description="transpose (flip)", indent=False)
        self.ctf = w.Checkbox(value=s.record("parallax").ctf_correction, description="tcBF CTF correction",
                              indent=False, tooltip="Flip the tcBF image's Fourier phase where sin χ(q) < 0 "
                              "(phase flipping with the sliders' aberrations)")
        self.defocus = w.FloatSlider(value=c["C10"], min=-c10_range, max=c10_range, step=1.0,
                                     description="C10 (Å, Δf=−C10)", **slider)
        self.astigmatism = w.FloatSlider(value=c["C12"], min=0, max=max(300.0, 2 * c["C12"]), step=1.0,
                                         description="C12 (Å)", **slider)
        self.astigmatism_angle = w.FloatSlider(value=c["phi12_deg"], min=-90, max=90, step=1.0,
                                               description="φ12 (°)", **slider)
        q_max = 0.5 / step if step else 2.0
        self.highpass = w.FloatSlider(value=c["q_highpass"] or 0.0, min=0, max=round(q_max / 4, 3), step=0.001,
                                      readout_format=".3f", description="DPC high-pass (1/Å)", **slider)
        self.lowpass = w.FloatSlider(value=c["q_lowpass"] or 0.0, min=0, max=round(q_max, 3), step=0.005,
                                     readout_format=".3f", description="DPC low-pass (1/Å)", **slider)
        self.use_fit_button = w.Button(description="use parallax fit", tooltip="Copy the fitted defocus, "
                                       "astigmatism and scan rotation onto the sliders")
        self.fit_label = w.HTML("")
        self.messages = {n: message_label() for n in _MESSAGES}
        self.busy = Busy(s)
        bind = [(self.rotation, "rotation_deg", float), (self.transpose, "flip", bool), (self.defocus, "C10", float),
                (self.astigmatism, "C12", float), (self.astigmatism_angle, "phi12_deg", float),
                (self.highpass, "q_highpass", _filter_value), (self.lowpass, "q_lowpass", _filter_value)]
        for control, name, conv in bind:
            control.observe(lambda ch, name=name, conv=conv: self._unless_syncing(self._moved, name, conv(ch["new"])),
                            names="value")
        self.ctf.observe(lambda ch: self._unless_syncing(self._moved, "parallax__ctf_correction", bool(ch["new"])),
                         names="value")
        self.use_fit_button.on_click(lambda _: self._use_fit())
        tips = {self.rotation: "Scan rotation in the calibration's sense: a scan vector v appears on the detector "
                               "as R(θ) S v. DPC and SSB are right when the iDPC image shows no streaks",
                self.transpose: "The detector axes are swapped relative to the scan (S above)",
                self.defocus: "Probe defocus coefficient C10 in Å (the microscope's defocus is Δf = −C10); "
                              "tcBF and SSB are sharp at the right value",
                self.astigmatism: "Two-fold astigmatism C12 in Å", self.astigmatism_angle: "Azimuth of C12, degrees",
                self.highpass: "Butterworth high-pass of iDPC in 1/Å (0: none): removes slow background",
                self.lowpass: "Butterworth low-pass of iDPC in 1/Å (0: none): removes noise"}
        for control, tip in tips.items():
            control.tooltip = tip
        for control, css in ((self.defocus, "fw-phase-defocus"), (self.rotation, "fw-phase-rotation"),
                             (self.use_fit_button, "fw-phase-use-fit")):
            control.add_class(css)
        controls = w.VBox([self.rotation, self.transpose, self.defocus, self.astigmatism, self.astigmatism_angle,
                           self.highpass, self.lowpass, self.ctf, w.HBox([self.use_fit_button, self.fit_label]),
                           *self.messages.values()])
        grid = w.GridBox([self.views[n] for n in PARTS],
                         layout=w.Layout(grid_template_columns=f"repeat(2, {size + 20}px)"))
        grid.add_class("fw-phase-previews")
        self.reconstruct_panel = ReconstructPanel(s, size=size)
        self.widget = w.VBox([self.busy.box, w.HBox([controls, self.shift_view]), grid, self.reconstruct_panel.widget])
        s.listen(self._on_event)
        s.start()

    # --- user -> session ----------------------------------------------------------------------------
    def _moved(self, name: str, value: Any) -> None:
        try:
            self.session.set(**{name: value})
        except Exception as exc:  # noqa: BLE001 - a refused value is shown, not raised into the notebook
            self.messages["dpc"].value = message_html(str(exc))

    def _use_fit(self) -> None:
        try:
            self.session.use_fit()
        except Exception as exc:  # noqa: BLE001
            self.messages["parallax"].value = message_html(str(exc))

    # --- session -> widgets ---------------------------------------------------------------------------
    def _on_event(self, event: str, value: Any) -> None:
        if event == "images":
            for name, image in value.items():
                self.views[name].set_image(image)
        elif event == "message":
            where, text, level = value
            if where in self.messages:
                self.messages[where].value = message_html(text, level)
        elif event == "shifts" and value is not None:
            self._draw_shifts(*value)
        elif event == "params":
            self._synced(self._show_controls)
        elif event == "update":
            fit = self.session.fitted
            if fit is not None:
                ab, rot = fit
                self.fit_label.value = (f"fit: C10 {ab.C10:.1f} Å, C12 {ab.C12:.1f} Å at {ab.phi12_deg:.0f}°, "
                                        f"rotation {rot:.1f}°")

    def _show_controls(self) -> None:
        c = self.session.controls
        self.rotation.value = c["rotation_deg"]
        self.transpose.value = c["flip"]
        self.defocus.max = max(self.defocus.max, abs(c["C10"]))
        self.defocus.min = -self.defocus.max
        self.defocus.value = c["C10"]
        self.astigmatism.max = max(self.astigmatism.max, c["C12"])
        self.astigmatism.value = c["C12"]
        self.astigmatism_angle.value = c["phi12_deg"]
        self.highpass.value = c["q_highpass"] or 0.0
        self.lowpass.value = c["q_lowpass"] or 0.0
        self.ctf.value = self.session.record("parallax").ctf_correction

    def _draw_shifts(self, k: np.ndarray, measured: np.ndarray, fitted: np.ndarray, model: np.ndarray) -> None:
        """The shift field: each detector group is a cell (gray centre), its shifts drawn from that centre
        (scaled so the longest stays inside its cell)."""
        cal = self.session.cube.calibration
        dk = cal.reciprocal_step_in("1/Å") * self.session.record("parallax").bin
        cell = _CELL_PX
        half = (int(math.ceil(np.abs(k).max() / dk)) + 1) * cell + cell // 2
        grid = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
        at = k / dk * cell + half
        ij = np.clip(np.rint(at).astype(int), 0, 2 * half)
        grid[ij[:, 0], ij[:, 1]] = 0.35  # the groups fitted
        longest = max(float(np.abs(measured).max()), float(np.abs(fitted).max()), float(np.abs(model).max()), 1e-9)
        scale = 0.45 * cell / longest
        self.shift_view.set_image(grid)
        self.shift_view.set_markers("measured", at + scale * measured, style="circle", color="#ffd23d", radius=0.9)
        self.shift_view.set_markers("fit", at + scale * fitted, style="cross", color="#00e5ff", radius=0.9)
        self.shift_view.set_markers("sliders", at + scale * model, style="dot", color="#ff4fd8", radius=0.5)
        self.shift_view.badge = f"longest shift {longest:.2g} scan px = {0.45:.2g} cell"

    def _views(self) -> list[Any]:
        return [*self.views.values(), self.shift_view, *self.reconstruct_panel.views()]
