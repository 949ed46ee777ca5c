"""What :class:`~fourd_widgets.tools.phase_tuner.PhaseTunerSession` caches and how a preview is made from it.

Three passes over the cube, run once (again only when the parallax ``bin`` changes):

* the centre of mass over the whole detector (DPC's :func:`~fourd_widgets.analysis.phase_common.center_of_mass`);
* the bright-field image of every ``bin x bin`` detector group (:func:`~fourd_widgets.analysis.parallax.parallax_prepare`);
* every bright-field pixel, Fourier transformed over the scan (:func:`~fourd_widgets.analysis.ssb.ssb_prepare`).

A slider then costs no pass: DPC and iDPC are a rotation and an FFT of the kept
centre of mass (:func:`~fourd_widgets.analysis.phase_dpc.dpc_from_com`), tcBF is a
splat of the kept images (:func:`~fourd_widgets.analysis.parallax.tcbf`), SSB is
arithmetic over (frequencies x bright-field pixels). The parallax fit (image
cross-correlations) is kept per scan rotation and flip: the defocus sliders
only move the tcBF alignment. Each preview is the same function the recipe step
runs, so ``fw.run(session.params, cube)`` gives the arrays shown, to the bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.aberrations import Aberrations
from ..analysis.parallax import ParallaxData, ParallaxParams, ParallaxResult, parallax, parallax_prepare, tcbf
from ..analysis.phase_common import center_of_mass
from ..analysis.phase_dpc import DPCParams, DPCResult, dpc_from_com
from ..analysis.ssb import SSBData, SSBParams, SSBResult, ssb, ssb_prepare
from ..core.datacube import DataCube

__all__ = ["PhaseCache", "PhasePreview", "prepare", "preview", "parallax_preview", "default_records", "CONTROLS",
           "PARTS"]

#: The sliders' fields and the records they set: scan rotation and flip (all three), the probe's
#: aberrations (SSB, and the tcBF alignment of parallax), the DPC filters.
CONTROLS = {
    "rotation_deg": ("dpc", "parallax", "ssb"),
    "flip": ("dpc", "parallax", "ssb"),
    "C10": ("parallax", "ssb"),
    "C12": ("parallax", "ssb"),
    "phi12_deg": ("parallax", "ssb"),
    "q_highpass": ("dpc",),
    "q_lowpass": ("dpc",),
}
#: The previews, in the order they are shown.
PARTS = ("dpc", "idpc", "tcbf", "ssb")


@dataclass
class PhaseCache:
    """The data a preview needs, from the passes over the cube (None where that pass failed).

    Attributes
    ----------
    com : (Rx, Ry, 2) array or None
        Centre of mass from the origin, detector px.
    bright_field : ParallaxData or None
    ssb : SSBData or None
    errors : dict of str -> BaseException
        ``'dpc' | 'parallax' | 'ssb'`` -> why that pass failed (a missing calibration...).
    fits : dict
        Parallax fits by (rotation_deg, flip, fit fields): the cross-correlations run once per rotation.
    last : dict
        ``part -> (record, result)`` of the last preview: a part whose record did not change is not redone
        (a defocus slider leaves DPC alone).
    """

    com: np.ndarray | None = None
    bright_field: ParallaxData | None = None
    ssb: SSBData | None = None
    errors: dict[str, BaseException] = field(default_factory=dict)
    fits: dict[Any, ParallaxResult] = field(default_factory=dict)
    last: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass
class PhasePreview:
    """One update of the previews (None where a part failed; its error in ``errors``)."""

    dpc: DPCResult | None = None
    parallax: ParallaxResult | None = None
    ssb: SSBResult | None = None
    errors: dict[str, BaseException] = field(default_factory=dict)

    def images(self) -> dict[str, np.ndarray]:
        """``'dpc'`` (scan-frame centre of mass along x, 1/Å), ``'idpc'`` and ``'ssb'`` (rad), ``'tcbf'``."""
        out: dict[str, np.ndarray] = {}
        if self.dpc is not None:
            out["dpc"] = np.asarray(self.dpc.com[..., 0])
            out["idpc"] = self.dpc.phase
        if self.parallax is not None:
            out["tcbf"] = self.parallax.tcbf
        if self.ssb is not None:
            out["ssb"] = self.ssb.phase
        return out


def prepare(cube: DataCube, bin: int, edge_margin: float, engine: dict[str, Any]) -> PhaseCache:
    """Run the three passes (each one's failure is kept, the others go on)."""
    cache = PhaseCache()
    Qx, Qy = cube.detector_shape
    try:
        cube.calibration.real_step_in("Å")
        cube.calibration.reciprocal_step_in("1/Å")
        cache.com = center_of_mass(cube, np.ones((Qx, Qy)), **engine)
    except Exception as exc:  # noqa: BLE001 - shown beside the DPC previews
        cache.errors["dpc"] = exc
    try:
        cache.bright_field = parallax_prepare(cube, bin, edge_margin, **engine)
    except Exception as exc:  # noqa: BLE001
        cache.errors["parallax"] = exc
    try:
        cache.ssb = ssb_prepare(cube, **engine)
    except Exception as exc:  # noqa: BLE001
        cache.errors["ssb"] = exc
    return cache


def _fit_key(p: ParallaxParams) -> tuple:
    """The fields the parallax fit depends on (the 'manual' aberrations only move the tcBF image)."""
    d = p.to_dict()
    for name in ("C10", "C12", "phi12_deg", "upsample", "kernel_px", "ctf_correction"):
        d.pop(name)
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


def parallax_preview(cache: PhaseCache, p: ParallaxParams) -> ParallaxResult:
    """``parallax(cache.bright_field, p)`` with the fit kept per rotation: the same arrays, to the bit."""
    assert cache.bright_field is not None
    key = _fit_key(p)
    fit = cache.fits.get(key)
    if fit is None:
        fit = parallax(cache.bright_field, p.replace(shifts="fit", upsample=1, ctf_correction=False))
        cache.fits = {key: fit}  # one rotation at a time: a rotation slider must not hoard fits
    if p.shifts != "manual" or p.rotation != "manual":
        return parallax(cache.bright_field, p)
    image = tcbf(cache.bright_field, Aberrations(p.C10, p.C12, p.phi12_deg), p.rotation_deg, p.flip,
                 upsample=p.upsample, kernel_px=p.kernel_px, ctf_correction=p.ctf_correction)
    image.setflags(write=False)
    return dataclasses.replace(fit, tcbf=image, tcbf_step_A=fit.tcbf_step_A / p.upsample, params=p)


def _memo(cache: PhaseCache, part: str, record: Any, make: Any) -> Any:
    """``make()``, or the kept result when ``record`` equals the last one of ``part``."""
    kept = cache.last.get(part)
    if kept is not None and kept[0] == record:
        return kept[1]
    result = make()
    cache.last[part] = (record, result)
    return result


def preview(cache: PhaseCache, cube: DataCube, records: dict[str, Any], workers: int | None = None) -> PhasePreview:
    """The three results for ``records`` (``{'dpc': DPCParams, 'parallax': ParallaxParams, 'ssb': SSBParams}``);
    a part whose record is unchanged since the last preview is taken from :attr:`PhaseCache.last`."""
    out = PhasePreview(errors=dict(cache.errors))
    cal, shape = cube.calibration, cube.detector_shape
    parts = (("dpc", cache.com, lambda: dpc_from_com(cache.com, cal, shape, records["dpc"], workers=workers)),
             ("parallax", cache.bright_field, lambda: parallax_preview(cache, records["parallax"])),
             ("ssb", cache.ssb, lambda: ssb(cache.ssb, records["ssb"], workers=workers)))
    for part, source, make in parts:
        if source is None:
            continue
        try:
            setattr(out, part, _memo(cache, part, records[part], make))
        except Exception as exc:  # noqa: BLE001 - shown beside that part's previews
            out.errors[part] = exc
    return out


def default_records(cube: DataCube, bin: int) -> dict[str, Any]:
    """The tuner's starting records: the calibration's scan rotation and flip, set by hand (sliders own it)."""
    cal = cube.calibration
    rot = {"rotation": "manual", "rotation_deg": float(cal.rotation_deg), "flip": bool(cal.flip)}
    return {"dpc": DPCParams(**rot), "parallax": ParallaxParams(bin=bin, shifts="manual", **rot),
            "ssb": SSBParams(**rot)}
