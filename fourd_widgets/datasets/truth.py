"""GroundTruth: everything the simulator knows about the scene it rendered."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels.render import add_disk, disk_profile_integral
from .crystal import Grain

__all__ = ["GroundTruth"]


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground truth of a simulated 4D-STEM scene (arrays are read-only).

    Conventions are those of the shared test data: detector pixel (i, j) sits at
    ``k = ((i - origin[0]) dk, (j - origin[1]) dk)``; atom x ↔ Rx ↔ kx;
    rotations counter-clockwise from +x to +y; ``r' = F r``, ``g' = F^-T g``.
    "Detector px" positions include descan and the elliptic distortion ``D``;
    "1/Å" vectors are physical (undistorted).

    Attributes
    ----------
    scan_shape, detector_shape : tuple of int
    reciprocal_step : float
        Detector pixel size, 1/Å.
    real_step : float
        Scan step, Å.
    energy_eV, wavelength_A, convergence_semiangle_mrad : float
    origin : (2,) tuple of float
        Mean pattern origin (qx, qy) in px.
    origin_map : (Rx, Ry, 2) array
        Pattern origin (position of the undiffracted beam's centre) at each position, px.
    disk_radius_px : float
        Disk radius in undistorted px, ``alpha / (1000 lambda dk)``.
    disk_edge_px : float
        Gaussian width of the disk edge, px.
    ellipse : (a, b, theta_deg) or None
        Detector distortion: a circle of radius r appears as an ellipse with
        semi-axis ``a r`` along ``theta`` and ``b r`` across it.
    distortion : (2, 2) array
        ``D = R(theta) diag(a, b) R(theta)^T`` (identity without ellipse).
    grains : tuple of Grain
    grain_map : (Rx, Ry) int array
        Index into ``grains``; -1 where there is no crystal.
    orientation_matrices : (G, 3, 3) array
        ``lab = R @ crystal`` for each grain.
    grain_rotation_deg : (G,) array
        In-plane rotation of each grain.
    g1_ref_invA, g2_ref_invA : (G, 2) arrays
        Unstrained reciprocal basis of each grain, 1/Å.
    deformation : (Rx, Ry, 2, 2) array
        Deformation gradient F at each position (identity where unstrained).
    strain_exx, strain_eyy, strain_exy, rotation_deg : (Rx, Ry) arrays
        ``F = R(rotation) (I + E)``, ``E = [[exx, exy], [exy, eyy]]``, scan frame.
    g1_invA, g2_invA : (Rx, Ry, 2) arrays
        Local basis ``F^-T g_ref`` (NaN where there is no crystal).
    g1_px, g2_px : (Rx, Ry, 2) arrays
        The same as detector offsets from the origin, ``D g / dk``, px.
    peak_offsets : (Rx*Ry + 1,) int array
        Disks of position (rx, ry) are rows ``peak_offsets[p]:peak_offsets[p+1]``
        of the peak columns, ``p = rx * Ry + ry``.
    peak_qx, peak_qy : (N,) arrays
        Disk centres in detector px (row 0 of each position is the central beam).
    peak_intensity : (N,) array
        Integrated disk intensity, fraction of the incident probe.
    peak_hkl : (N, 3) int array
    peak_grain : (N,) int array
        Grain index, -1 for the central beam.
    amorphous : (Rx, Ry) array
        Amorphous fraction.
    amorphous_intensity, background_intensity : (Rx, Ry) arrays
        Fraction of the probe scattered into the amorphous rings / diffuse background.
    beam_stop_mask : (Qx, Qy) bool array or None
        True where the beam stop blocks the detector.
    dose : float or None
        Electrons per probe position (Poisson noise) or None (expected values).
    seed : int
    """

    scan_shape: tuple[int, int]
    detector_shape: tuple[int, int]
    reciprocal_step: float
    real_step: float
    energy_eV: float
    wavelength_A: float
    convergence_semiangle_mrad: float
    origin: tuple[float, float]
    origin_map: np.ndarray
    disk_radius_px: float
    disk_edge_px: float
    ellipse: tuple[float, float, float] | None
    distortion: np.ndarray
    grains: tuple[Grain, ...]
    grain_map: np.ndarray
    orientation_matrices: np.ndarray
    grain_rotation_deg: np.ndarray
    g1_ref_invA: np.ndarray
    g2_ref_invA: np.ndarray
    deformation: np.ndarray
    strain_exx: np.ndarray
    strain_eyy: np.ndarray
    strain_exy: np.ndarray
    rotation_deg: np.ndarray
    g1_invA: np.ndarray
    g2_invA: np.ndarray
    g1_px: np.ndarray
    g2_px: np.ndarray
    peak_offsets: np.ndarray
    peak_qx: np.ndarray
    peak_qy: np.ndarray
    peak_intensity: np.ndarray
    peak_hkl: np.ndarray
    peak_grain: np.ndarray
    amorphous: np.ndarray
    amorphous_intensity: np.ndarray
    background_intensity: np.ndarray
    beam_stop_mask: np.ndarray | None
    dose: float | None
    seed: int

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v.setflags(write=False)

    def peaks_at(self, rx: int, ry: int) -> dict[str, np.ndarray]:
        """The disks at one scan position: ``qx``, ``qy``, ``intensity``, ``hkl``, ``grain``."""
        p = int(rx) * self.scan_shape[1] + int(ry)
        s = slice(int(self.peak_offsets[p]), int(self.peak_offsets[p + 1]))
        return {"qx": self.peak_qx[s], "qy": self.peak_qy[s], "intensity": self.peak_intensity[s],
                "hkl": self.peak_hkl[s], "grain": self.peak_grain[s]}

    def vacuum_probe(self, centre: tuple[float, float] | None = None) -> np.ndarray:
        """The bare probe as this detector records it (disk, edge, distortion; no beam stop, no noise).

        Parameters
        ----------
        centre : (2,) floats, optional
            Disk centre in px; default the mean origin.

        Returns
        -------
        probe : (Qx, Qy) float64 array
            Sums to 1 when the disk lies on the detector (a template for disk detection).
        """
        cx, cy = self.origin if centre is None else (float(centre[0]), float(centre[1]))
        out = np.zeros(self.detector_shape)
        R, s = self.disk_radius_px, self.disk_edge_px
        D = np.asarray(self.distortion)
        extent = (R + 6 * s + 1) * float(np.linalg.svd(D, compute_uv=False).max())
        value = 1.0 / (float(np.linalg.det(D)) * disk_profile_integral(R, s))
        add_disk(out, cx, cy, R, s, value, np.linalg.inv(D), extent)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (arrays as numpy, grains as dicts)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "grains":
                v = [dataclasses.asdict(g) for g in v]
            out[f.name] = v
        return out

    def __repr__(self) -> str:
        return (f"GroundTruth(scan_shape={self.scan_shape}, detector_shape={self.detector_shape}, "
                f"grains={len(self.grains)}, peaks={len(self.peak_qx)}, dose={self.dose})")
