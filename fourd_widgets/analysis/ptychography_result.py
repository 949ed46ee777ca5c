"""The result of a ptychographic reconstruction: object, probe modes, positions, error curve, record."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..core.params import Params

__all__ = ["PtychographyResult"]


@dataclass(frozen=True, eq=False)
class PtychographyResult:
    """A ptychographic reconstruction.

    Attributes
    ----------
    object : (M1, M2) or (S, M1, M2) array
        The object: complex transmission (``object_type='complex'``) or its
        phase in rad (``'potential'``: ``O = exp(i φ)``, which never wraps);
        one slice per leading index for a multislice object (beam entrance first).
    probe : (K, N1, N2) complex64 array
        The probe modes in real space, centred on the window, strongest first;
        ``Σ_k Σ|P_k|²`` is the mean pattern intensity.
    positions_px : (Rx, Ry, 2) float64 array
        Probe centres on the object, object pixels (x = axis 0).
    pixel_A : (2,) float64 array
        Object pixel, Å: ``1 / (Q dk)`` of the detector.
    errors : (n,) float64 array
        Normalised Fourier-amplitude error of each iteration done,
        ``Σ(|Ψ| − √I)² / Σ I`` over the scan, with the object and probe the
        iteration started from.
    params : PtychographyParams
        The record that made it (with the engine options that change bits in
        the recipe's engine block, not here).
    """

    object: np.ndarray
    probe: np.ndarray
    positions_px: np.ndarray
    pixel_A: np.ndarray
    errors: np.ndarray
    params: Params

    @property
    def iterations(self) -> int:
        """Number of iterations done."""
        return int(len(self.errors))

    @property
    def phase(self) -> np.ndarray:
        """Object phase, rad ``([S,] M1, M2)``: the potential object itself, or the (wrapped) angle of a complex one."""
        if np.iscomplexobj(self.object):
            return np.angle(self.object)
        return np.asarray(self.object, dtype=np.float64)

    def phase_on_scan(self, order: int = 3, slice: int | None = None) -> np.ndarray:
        """The object phase interpolated at the probe positions ``(Rx, Ry)`` (rad), as truth maps are given.

        For a multislice object: one slice (``slice``), or the sum over the slices (None).
        """
        p = self.positions_px
        phase = self.phase.astype(np.float64)
        if phase.ndim == 3:
            phase = phase.sum(axis=0) if slice is None else phase[slice]
        return ndimage.map_coordinates(phase, [p[..., 0], p[..., 1]], order=order, mode="nearest")

    def to_h5(self, group: Any) -> None:
        """Write the reconstruction into an HDF5 group (results files)."""
        for name in ("object", "probe", "positions_px", "pixel_A", "errors"):
            group.create_dataset(name, data=getattr(self, name))
        group.attrs["params"] = json.dumps(self.params.to_dict(), sort_keys=True)

    @classmethod
    def from_h5(cls, group: Any) -> "PtychographyResult":
        """Read a reconstruction written by :meth:`to_h5`."""
        params = Params.from_dict(json.loads(str(group.attrs["params"])))
        return cls(**{n: group[n][()] for n in ("object", "probe", "positions_px", "pixel_A", "errors")},
                   params=params)

    def save_hdf5(self, path: str | os.PathLike, recipe: Any = None) -> str:
        """Write this reconstruction to an HDF5 results file (atomically), with the recipe if given."""
        from ..core.recipe import Recipe
        from ..io.results import Results

        return Results({"ptychography": self}, recipe or Recipe((self.params,))).save(path)

    def __repr__(self) -> str:
        err = f"{self.errors[-1]:.4g}" if len(self.errors) else "none"
        return (f"PtychographyResult(object={self.object.shape} {self.object.dtype}, probe_modes={self.probe.shape[0]}, "
                f"window={self.probe.shape[1:]}, iterations={self.iterations}, error={err})")
