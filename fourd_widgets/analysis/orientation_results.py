"""The orientation map: per scan position and per match, orientation, phase, correlation, zone axis, angle.

Orientations are rotation matrices ``U`` with ``lab = U @ crystal`` in the scan frame (lab x = scan x,
lab z = beam). :meth:`OrientationMap.orientations` and :meth:`OrientationMap.to_crystal_map` give them
as orix objects (``Orientation.from_matrix(U.T)``: orix maps sample vectors to crystal vectors).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..core.errors import ParameterError
from .crystal import Crystal

__all__ = ["OrientationMap", "misorientation_deg"]

_ARRAYS = ("matrix", "phase", "correlation", "zone_axis", "in_plane_deg", "reliability", "num_peaks",
           "phase_correlation")


def misorientation_deg(U1: np.ndarray, U2: np.ndarray, symmetry: np.ndarray) -> np.ndarray:
    """Smallest rotation angle (degrees) between orientations under a crystal's proper symmetry rotations.

    Parameters
    ----------
    U1, U2 : (..., 3, 3) arrays
        Orientations, ``lab = U @ crystal``.
    symmetry : (K, 3, 3) array
        Proper rotations of the crystal (e.g. orix ``laue_group.proper_subgroup.to_matrix()``).

    Returns
    -------
    array of the broadcast leading shape

    Examples
    --------
    >>> Rz = lambda t: np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    >>> sym = np.stack([Rz(k * np.pi / 2) for k in range(4)])
    >>> round(float(misorientation_deg(Rz(0.0), Rz(np.radians(95)), sym)), 6)
    5.0
    """
    d = np.swapaxes(U1, -1, -2) @ U2  # crystal -> crystal
    tr = np.einsum("...ij,kji->...k", d, symmetry)  # trace(d @ S) for every S
    c = np.clip((np.max(tr, axis=-1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(c))


class OrientationMap:
    """Orientation matching result over a scan.

    Parameters
    ----------
    matrix : (*scan, K, 3, 3) float array
        Orientation of each of the K best matches (``lab = U @ crystal``, scan frame); NaN where none.
    phase : (*scan, K) int array
        Index into ``crystals`` (-1: no match).
    correlation : (*scan, K) float array
        Normalised correlation of each match (0..1).
    zone_axis : (*scan, K, 3) float array
        Crystal direction [uvw] along the beam (largest component 1).
    in_plane_deg : (*scan, K) float array
        In-plane angle of the match about the beam.
    reliability : (*scan,) float array
        ``1 - c2 / c1``: how much better the best match is than the best one at least
        ``min_angle_deg`` away (0: ambiguous, 1: unique).
    num_peaks : (*scan,) int array
        Peaks used.
    phase_correlation : (*scan, P) float array
        Best correlation of each phase (phase weights: normalise over P).
    crystals : list of Crystal
    weight : (*scan, K) float array, optional
        Fraction of the pattern's fitted spot intensity each match holds, where patterns were
        decomposed into two orientations (``decompose=True`` of the raw route: the two grains under
        the probe, then 0); NaN where they were not.
    """

    def __init__(self, matrix: Any, phase: Any, correlation: Any, zone_axis: Any, in_plane_deg: Any,
                 reliability: Any, num_peaks: Any, phase_correlation: Any, crystals: list[Crystal],
                 weight: Any = None) -> None:
        self.matrix = np.asarray(matrix, float)
        self.phase = np.asarray(phase, np.int64)
        self.correlation = np.asarray(correlation, float)
        self.zone_axis = np.asarray(zone_axis, float)
        self.in_plane_deg = np.asarray(in_plane_deg, float)
        self.reliability = np.asarray(reliability, float)
        self.num_peaks = np.asarray(num_peaks, np.int64)
        self.phase_correlation = np.asarray(phase_correlation, float)
        self.crystals = list(crystals)
        self.weight = (np.full(self.phase.shape, np.nan) if weight is None else np.asarray(weight, float))
        if self.matrix.shape[-2:] != (3, 3) or self.phase.shape != self.matrix.shape[:-2]:
            raise ParameterError("an orientation map needs (*scan, K, 3, 3) matrices and (*scan, K) phases")

    @property
    def scan_shape(self) -> tuple[int, ...]:
        return tuple(self.reliability.shape)

    @property
    def num_matches(self) -> int:
        return int(self.phase.shape[-1])

    @property
    def phase_weights(self) -> np.ndarray:
        """(*scan, P) best correlation of each phase, normalised to sum 1."""
        c = np.clip(np.nan_to_num(self.phase_correlation), 0, None)
        s = c.sum(-1, keepdims=True)
        return np.divide(c, s, out=np.zeros_like(c), where=s > 0)

    def orientations(self, match: int = 0, phase: int = 0) -> Any:
        """The orix ``Orientation`` of match ``match`` at every position (with the phase's point group)."""
        from orix.quaternion import Orientation

        U = self.matrix[..., match, :, :].reshape(-1, 3, 3)
        ok = np.isfinite(U).all(axis=(1, 2))
        M = np.where(ok[:, None, None], np.swapaxes(U, -1, -2), np.eye(3))
        o = Orientation.from_matrix(M, symmetry=self.crystals[phase].point_group)
        return o.reshape(*self.scan_shape)

    def misorientation_to(self, U: np.ndarray, match: int = 0) -> np.ndarray:
        """Misorientation (deg) of match ``match`` to a given orientation, under each position's phase symmetry."""
        out = np.full(self.scan_shape, np.nan)
        ph = self.phase[..., match]
        for i, c in enumerate(self.crystals):
            sym = np.asarray(c.laue_group.proper_subgroup.to_matrix()).reshape(-1, 3, 3)
            sel = ph == i
            out[sel] = misorientation_deg(self.matrix[..., match, :, :][sel], np.asarray(U, float), sym)
        return out

    def to_crystal_map(self, match: int = 0) -> Any:
        """An orix ``CrystalMap`` of match ``match`` (phase ids, orientations, correlation and reliability)."""
        from orix.crystal_map import CrystalMap, PhaseList
        from orix.quaternion import Rotation

        U = self.matrix[..., match, :, :].reshape(-1, 3, 3)
        ok = np.isfinite(U).all(axis=(1, 2))
        rot = Rotation.from_matrix(np.where(ok[:, None, None], np.swapaxes(U, -1, -2), np.eye(3)))
        ny = self.scan_shape[1] if len(self.scan_shape) == 2 else 1
        idx = np.arange(int(np.prod(self.scan_shape)))
        phases = PhaseList(names=[c.name for c in self.crystals], space_groups=[c.space_group for c in self.crystals])
        return CrystalMap(rotations=rot, phase_id=np.where(ok, self.phase[..., match].ravel(), -1),
                          x=(idx // ny).astype(float), y=(idx % ny).astype(float), phase_list=phases,
                          prop={"correlation": np.nan_to_num(self.correlation[..., match].ravel()),
                                "reliability": np.nan_to_num(self.reliability.ravel())})

    def to_h5(self, group: Any) -> None:
        """Write the map into an HDF5 group (results files)."""
        group.attrs["crystals"] = json.dumps([c.to_dict() for c in self.crystals])
        for name in _ARRAYS + ("weight",):
            group.create_dataset(name, data=getattr(self, name))

    @classmethod
    def from_h5(cls, group: Any) -> "OrientationMap":
        """Read a map written by :meth:`to_h5`."""
        crystals = [Crystal.from_dict(d) for d in json.loads(group.attrs["crystals"])]
        weight = group["weight"][()] if "weight" in group else None  # maps written before weights
        return cls(*(group[n][()] for n in _ARRAYS), crystals=crystals, weight=weight)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrientationMap):
            return NotImplemented
        return ([c.to_dict() for c in self.crystals] == [c.to_dict() for c in other.crystals]
                and all(np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True)
                        for n in _ARRAYS + ("weight",)))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        good = int(np.isfinite(self.correlation[..., 0]).sum())
        return (f"OrientationMap(scan_shape={self.scan_shape}, matches={self.num_matches}, "
                f"phases={[c.name for c in self.crystals]}, matched={good}/{int(np.prod(self.scan_shape))})")
