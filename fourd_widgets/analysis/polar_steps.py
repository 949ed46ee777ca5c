"""Recipe adapters of the polar family: FEM, PDF and amorphous strain read earlier results of a recipe.

``radial_statistics``, ``polar`` and ``ring_fit`` run on the cube itself. The
steps here read what an earlier step of the recipe made (``fw.run`` passes the
results so far in ``context.results``):

* ``fem`` reads the latest :class:`~fourd_widgets.analysis.fem.RadialStatistics`;
* ``pdf`` reads the mean profile of the latest ``fem`` result (the profile of its
  region) or, failing that, of the latest radial statistics;
* ``amorphous_strain`` reads the latest
  :class:`~fourd_widgets.analysis.ring_fit.RingFitMaps` and undoes the
  calibration's ellipse.

"Latest" is the last earlier result of that type, so a recipe ``radial_statistics,
fem, pdf`` needs no labels.

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import Calibration, DataCube
>>> from fourd_widgets.analysis.fem import RadialStatisticsParams
>>> from fourd_widgets.analysis.fem_maps import FEMParams
>>> from fourd_widgets.analysis.steps import RunContext
>>> cube = DataCube(np.random.default_rng(0).random((3, 3, 24, 24)), Calibration(origin=(11.5, 11.5)))
>>> ctx = RunContext(engine={"progress": False})
>>> ctx.results["radial_statistics"] = radial_statistics(cube, RadialStatisticsParams(), progress=False)
>>> fem_step(cube, FEMParams(k_ranges=((3, 6),)), ctx).band_map.shape
(3, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..core.errors import ParameterError
from ..core.params import Params, param
from .fem import RadialStatistics, RadialStatisticsParams, radial_statistics  # noqa: F401 (doctest)
from .fem_maps import FEMParams, FEMResult, fem
from .pdf import PDFParams, PDFResult, pair_distribution
from .polar import resolve_params
from .ring_fit import AmorphousStrain, RingFitMaps, amorphous_strain
from .steps import RunContext

__all__ = ["AmorphousStrainParams", "strain_from_rings", "fem_step", "pdf_step",
           "amorphous_strain_step", "latest"]


@dataclass(frozen=True, eq=False)
class AmorphousStrainParams(Params):
    """Record of the amorphous strain maps made from per-pattern ring fits."""

    step = "amorphous_strain"
    use_ellipse: bool = param(True, doc="undo the calibration's ellipse (the detector's distortion) first")


def strain_from_rings(fits: RingFitMaps, params: AmorphousStrainParams | Mapping | None = None, *,
                      ellipse: Any = None, **overrides: Any) -> AmorphousStrain:
    """Amorphous strain maps (exx, eyy, exy) from per-pattern ring fits.

    Parameters
    ----------
    fits : RingFitMaps
        From :func:`fourd_widgets.analysis.ring_fit.fit_rings`; its record says
        which positions are the unstrained reference.
    params : AmorphousStrainParams, optional
    ellipse : (a, b, θ_deg), optional
        The detector's ellipse (``Calibration.ellipse``), undone when ``use_ellipse``.
    **overrides
        Fields of :class:`AmorphousStrainParams`.
    """
    p = resolve_params(AmorphousStrainParams, params, overrides)
    if not isinstance(fits, RingFitMaps):
        raise ParameterError(f"amorphous strain needs ring fits (fw.polar.fit_rings), got {type(fits).__name__}",
                             field="fits")
    return amorphous_strain(fits, ellipse if p.use_ellipse else None)


def latest(context: RunContext, kinds: tuple[type, ...], step: str, hint: str) -> Any:
    """The last earlier result of the recipe that is one of ``kinds``; a ParameterError saying what to add."""
    for value in reversed(list(context.results.values())):
        if isinstance(value, kinds):
            return value
    have = ", ".join(f"{k} ({type(v).__name__})" for k, v in context.results.items()) or "none"
    raise ParameterError(f"the {step} step reads {hint} of an earlier step of the recipe; earlier results: {have}. "
                         f"Add that step before it", field="step")


def fem_step(cube: Any, params: FEMParams, context: RunContext) -> FEMResult:
    """Recipe adapter: V(k) and band maps of the latest radial statistics."""
    stats = latest(context, (RadialStatistics,), "fem", "the radial statistics (a radial_statistics step)")
    return fem(stats, params)


def pdf_step(cube: Any, params: PDFParams, context: RunContext) -> PDFResult:
    """Recipe adapter: the PDF of the latest fem result's mean profile (its region), else the radial statistics'."""
    src = latest(context, (FEMResult, RadialStatistics), "pdf",
                 "a mean radial profile (a radial_statistics or fem step)")
    if isinstance(src, FEMResult):
        v = src.variance
        if v.units != "1/Å":
            raise ParameterError("pair_distribution needs the profile in 1/Å: set the cube's calibration "
                                 "reciprocal_step with reciprocal_units='1/Å'", field="k")
        return pair_distribution(v.mean_profile, v.k, params)
    return pair_distribution(src, params=params)


def amorphous_strain_step(cube: Any, params: AmorphousStrainParams, context: RunContext) -> AmorphousStrain:
    """Recipe adapter: strain maps of the latest ring fits, with the cube's ellipse undone."""
    fits = latest(context, (RingFitMaps,), "amorphous_strain", "the ring fits (a ring_fit step)")
    return strain_from_rings(fits, params, ellipse=cube.calibration.ellipse)
