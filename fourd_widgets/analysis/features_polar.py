"""Crystallinity features from the polar transform: local FEM per radial bin, as a feature record.

A nanocrystal under the probe puts Bragg spots on the rings of the amorphous
pattern; amorphous speckle is spread evenly round them. The angular variance of
a ring over its angular mean squared, ``Var_θ I / <I>_θ²`` (the local FEM of
:func:`fourd_widgets.analysis.fem.local_fem_map`), is therefore large where a
crystal is and small elsewhere. :class:`PolarFeatureParams` turns it into a
feature vector per scan position, for the classification and decomposition
steps and the Segmenter:

* ``'fem_profile'``: the ratio in every radial bin (optionally only the bins
  inside ``k_ranges``) -- a whole curve, so PCA and a two-class Gaussian mixture
  weigh every reflection the crystals show, not only the bands one chose;
* ``'fem_bands'``: one value per k band (the local FEM map of each band);
* ``'radial_fem'``: the radial profile followed by the ratio profile.

One engine pass (:func:`~fourd_widgets.analysis.fem.radial_statistics`) over the
cube, streamed; ``counted=True`` removes the shot-noise variance of counted data.

The record is a :class:`~fourd_widgets.analysis.features.FeatureParams` (its
``q_step``, ``q_max``, ``mask``, ``scaling`` and ``log_offset`` apply; the
pattern, virtual and Bragg fields are unused), so it goes wherever a feature
record goes: ``ClassifyParams(features=PolarFeatureParams(...))``.

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import Calibration, DataCube
>>> x, y = np.meshgrid(np.arange(32) - 16.0, np.arange(32) - 16.0, indexing="ij")
>>> ring = np.exp(-0.5 * ((np.hypot(x, y) - 10) / 1.5) ** 2)
>>> spots = ring * (1 + np.cos(6 * np.arctan2(y, x)))
>>> a = np.stack([np.stack([1 + ring, 1 + spots])] * 2)       # column 1: Bragg spots on the ring
>>> f = polar_features(DataCube(a, Calibration(origin=(16, 16))), PolarFeatureParams(k_ranges=((8, 12),)))
>>> f.values.shape, bool(f.values[0, 1].mean() > 10 * f.values[0, 0].mean())
((2, 2, 4), True)
"""

from __future__ import annotations

import typing
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.errors import ParameterError
from ..core.params import param
from .features import FeatureParams, Features, compute_features, scale_values
from .fem import k_band, radial_statistics
from .peaks import PeakTable
from .polar import PolarParams
from .steps import own_record, split_engine

__all__ = ["PolarFeatureParams", "polar_features", "features_of", "with_changes", "FEATURE_KINDS"]

#: Every feature kind a user can pick, pattern kinds first (the Segmenter's list).
FEATURE_KINDS = ("patterns", "radial", "fem_profile", "fem_bands", "radial_fem")


@dataclass(frozen=True, eq=False)
class PolarFeatureParams(FeatureParams):
    """Record of crystallinity features: local FEM (angular variance over mean squared) per radial bin."""

    step = "polar_features"
    kind: Literal["fem_profile", "fem_bands", "radial_fem"] = param(  # type: ignore[assignment]
        "fem_profile", doc="fem_profile: Var/mean² per radial bin; fem_bands: one value per k band; "
                           "radial_fem: radial profile then Var/mean² profile")
    q_step: float = param(1.0, units="px", gt=0, doc="radial bin width")
    scaling: Literal["none", "log", "sqrt"] = param(
        "log", doc="applied to every value: log (default: tames the few very bright crystal rings), sqrt, none")
    k_ranges: tuple[tuple[float, float], ...] = param(
        (), doc="k bands (lo, hi) in 1/Å (px without a reciprocal calibration); fem_profile, radial_fem: "
                "only bins inside a band are kept (none: every bin); fem_bands: one value per band")
    n_theta: int = param(90, ge=4, le=3600, doc="angular bins over 360 degrees")
    counted: bool = param(False, doc="the data are counts: remove the shot-noise part of the angular variance")

    def validate(self) -> None:
        super().validate()
        for lo, hi in self.k_ranges:
            if not hi > lo:
                raise ParameterError(f"polar_features.k_ranges: band ({lo:g}, {hi:g}) must have hi > lo",
                                     field="k_ranges")
        if self.kind == "fem_bands" and not self.k_ranges:
            raise ParameterError("polar_features: kind 'fem_bands' needs k_ranges, e.g. the {111} and {220} "
                                 "bands ((0.29, 0.35), (0.49, 0.55)) in 1/Å", field="k_ranges")


def polar_features(cube: Any, params: PolarFeatureParams | None = None, **options: Any) -> Features:
    """Local-FEM feature vectors of every scan position, from one engine pass.

    Parameters
    ----------
    cube : DataCube
        Calibrated with ``origin`` (or ``origin_map``).
    params : PolarFeatureParams, optional
    **options
        Engine options (``progress``, ``cancel``, ``workers``, ``scheduler``) and
        :class:`PolarFeatureParams` field overrides.

    Returns
    -------
    Features
        ``(Rx, Ry, n)`` values; ``axis`` holds the k (or radius) of each value
        (band centres for ``fem_bands``; the ratio part for ``radial_fem``).
    """
    engine, changes = split_engine(options)
    p = own_record(params, PolarFeatureParams, changes, "polar_features")
    engine = {k: v for k, v in engine.items() if k in ("progress", "cancel", "workers", "scheduler")}
    pp = PolarParams(q_step=p.q_step, q_max=p.q_max, n_theta=p.n_theta, mask=p.mask)
    st = radial_statistics(cube, polar=pp, counted=p.counted, **{"progress": False, **engine})
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = st.annular_var / st.annular_mean ** 2
    if p.kind == "fem_bands":
        bands = [k_band(st, r) for r in p.k_ranges]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a band hidden at one position stays NaN there
            v = np.stack([np.nanmean(ratio[..., b], axis=-1) for b in bands], axis=-1)
        axis = np.array([0.5 * (lo + hi) for lo, hi in p.k_ranges])
    else:
        keep = np.ones(st.q.size, bool) if not p.k_ranges else np.any([k_band(st, r) for r in p.k_ranges], axis=0)
        # rings the mask hides at every position carry nothing; drop them rather than give NaN rows
        keep &= np.isfinite(ratio).any(axis=(0, 1))
        v = ratio[..., keep]
        axis = st.axis[keep]
        if p.kind == "radial_fem":
            v = np.concatenate([st.annular_mean[..., keep], v], axis=-1)
    v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)  # a ring masked at one position: no fluctuation seen
    return Features(scale_values(v, p.scaling, p.log_offset).astype(np.float32), None, np.asarray(axis, float))


def features_of(cube: Any, params: FeatureParams | None = None, *, peaks: PeakTable | None = None,
                **options: Any) -> Features:
    """Features of any feature record: :func:`polar_features` for a :class:`PolarFeatureParams`,
    else :func:`~fourd_widgets.analysis.features.compute_features`."""
    if isinstance(params, PolarFeatureParams):
        return polar_features(cube, params, **options)
    return compute_features(cube, params, peaks=peaks, **options)


def with_changes(current: FeatureParams, **changes: Any) -> FeatureParams:
    """``current`` with ``changes``; a change of ``kind`` between pattern and polar kinds changes the record
    type, keeping the mask and the outer radius (the other fields take the new type's defaults).

    >>> r = with_changes(FeatureParams(bin=2), kind="fem_profile")
    >>> type(r).__name__, r.q_step, type(with_changes(r, kind="patterns")).__name__
    ('PolarFeatureParams', 1.0, 'FeatureParams')
    """
    kind = changes.get("kind", current.kind)
    polar = kind in typing.get_args(typing.get_type_hints(PolarFeatureParams)["kind"])
    cls = PolarFeatureParams if polar else FeatureParams
    if type(current) is cls:
        return current.replace(**changes)
    return cls(**{"mask": current.mask, "q_max": current.q_max, **changes})
