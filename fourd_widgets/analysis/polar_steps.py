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

__all__ = ["AmorphousStrainParams", "strain_from_rings", "pdf_from_profile", "fem_step", "pdf_step",
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


def pdf_from_profile(data: Any, params: PDFParams | Mapping | None = None, *, k: Any = None,
                     **overrides: Any) -> PDFResult:
    """S(k), G(r) (and g(r), the RDF with a density) of a mean radial profile, in the one calling convention.

    Parameters
    ----------
    data : RadialStatistics, FEMResult or (n,) array
        Radial statistics (their mean profile), a FEM result (the mean profile of
        its region), or a profile with its ``k``.
    params : PDFParams, optional
    k : (n,) array, optional
        The profile's k axis in 1/Å (only with an array).
    **overrides
        Fields of :class:`PDFParams`.

    Examples
    --------
    >>> import numpy as np
    >>> from fourd_widgets.datasets.debye import si_nanocrystal, debye_intensity
    >>> k = np.arange(0.1, 2.5, 0.005)
    >>> res = pdf_from_profile(debye_intensity(si_nanocrystal(20.0), k), k=k, k_min=0.15, r_max=6.0)
    >>> bool(abs(res.peaks(2.0, 3.0)[0] - 2.352) < 0.05)
    True
    """
    p = resolve_params(PDFParams, params, overrides)
    if isinstance(data, FEMResult):
        v = data.variance
        if v.units != "1/Å":
            raise ParameterError("pair_distribution needs the profile in 1/Å: set the cube's calibration "
                                 "reciprocal_step with reciprocal_units='1/Å'", field="k")
        return pair_distribution(v.mean_profile, p, k=v.k)
    if isinstance(data, RadialStatistics):
        return pair_distribution(data, params=p)
    return pair_distribution(data, p, k=k)


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
    return pdf_from_profile(src, params)


def amorphous_strain_step(cube: Any, params: AmorphousStrainParams, context: RunContext) -> AmorphousStrain:
    """Recipe adapter: strain maps of the latest ring fits, with the cube's ellipse undone."""
    fits = latest(context, (RingFitMaps,), "amorphous_strain", "the ring fits (a ring_fit step)")
    return strain_from_rings(fits, params, ellipse=cube.calibration.ellipse)
