"""Orientation plans: kinematic template libraries over the zone-axis range, in polar form.

A plan holds, for each crystal (phase), the zone axes of the Laue group's fundamental sector
(or a fiber, or given axes) and, for each zone axis, the template of its simulated spots in
polar form: radial shells at the crystal's distinct ``|g|`` times in-plane angle bins, stored
as its FFT along the angle. Matching a pattern is then one complex multiply-add per shell and
an inverse FFT per zone axis (:mod:`.orientation`), as in py4DSTEM's ACOM (Ophus et al.,
*Microsc. Microanal.* 28 (2022) 390).

The zone-axis sampling and the fundamental sector come from orix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.calibration import Calibration, electron_wavelength_A
from ..core.errors import CalibrationError, ParameterError
from ..core.params import Params, param
from .crystal import Crystal, Reflections, excitation_error, shape_function

__all__ = ["CrystalParams", "OrientationPlanParams", "OrientationPlan", "PhasePlan", "build_plan",
           "frame_matrices", "in_plane_rotation", "polar_templates", "angular_kernel", "detector_g_max",
           "reciprocal_step_invA"]


@dataclass(frozen=True)
class CrystalParams(Params):
    """A crystal as a record (what a recipe stores): lattice, space group, atoms of the full cell."""

    step = "crystal_structure"

    name: str = param("Si", doc="phase name")
    lattice: tuple[float, float, float, float, float, float] = param(
        (5.431, 5.431, 5.431, 90.0, 90.0, 90.0), units="Å, deg", doc="a, b, c, alpha, beta, gamma")
    space_group: int = param(227, ge=1, le=230, doc="International Tables number")
    elements: tuple[str, ...] = param(("Si",) * 8, doc="element of each atom of the cell")
    positions: tuple[tuple[float, float, float], ...] = param(
        ((0, 0, 0), (0, .5, .5), (.5, 0, .5), (.5, .5, 0), (.25, .25, .25), (.25, .75, .75), (.75, .25, .75),
         (.75, .75, .25)), doc="fractional coordinates of each atom")
    occupancies: tuple[float, ...] | None = param(None, doc="site occupancies (None: 1)")
    debye_waller_A2: float = param(0.5, units="Å^2", ge=0, doc="isotropic Debye-Waller B")

    def validate(self) -> None:
        if len(self.elements) != len(self.positions) or not self.elements:
            raise ParameterError(f"{self.step}: one element per position is needed ({len(self.elements)} elements, "
                                 f"{len(self.positions)} positions)", field="elements")
        if self.occupancies is not None and len(self.occupancies) != len(self.elements):
            raise ParameterError(f"{self.step}: one occupancy per atom is needed", field="occupancies")

    @classmethod
    def from_crystal(cls, crystal: Crystal) -> "CrystalParams":
        """The record of a :class:`Crystal` (per-site B factors are replaced by their mean)."""
        from .electron_scattering import ELEMENTS

        occ = crystal.occupancies
        return cls(name=crystal.name, lattice=tuple(crystal.lattice), space_group=crystal.space_group,
                   elements=tuple(ELEMENTS[z - 1] for z in crystal.numbers.tolist()),
                   positions=tuple(tuple(float(v) for v in p) for p in crystal.positions),
                   occupancies=None if np.all(occ == 1) else tuple(float(v) for v in occ),
                   debye_waller_A2=float(np.mean(crystal.debye_waller_A2)))

    def crystal(self) -> Crystal:
        """The :class:`Crystal` of this record."""
        return Crystal(self.lattice, list(self.elements), np.asarray(self.positions, float), self.occupancies,
                       self.debye_waller_A2, self.space_group, self.name)


@dataclass(frozen=True)
class OrientationPlanParams(Params):
    """How the template library is built (py4DSTEM ``orientation_plan`` names in brackets)."""

    step = "orientation_plan"

    crystals: tuple[CrystalParams, ...] = param((CrystalParams(),), doc="the phases to match against")
    zone_axis_range: Literal["fundamental", "fiber", "given"] = param(
        "fundamental", doc="Laue group's fundamental sector, a fiber (cone about fiber_axis) or the given axes "
        "[zone_axis_range]")
    zone_axis_step_deg: float = param(1.0, units="deg", gt=0, le=20, doc="zone-axis sampling [angle_step_zone_axis]")
    in_plane_step_deg: float = param(1.0, units="deg", gt=0, le=10, doc="in-plane angle bins [angle_step_in_plane]")
    fiber_axis: tuple[float, float, float] = param((0.0, 0.0, 1.0), doc="crystal direction [uvw] of the fiber")
    fiber_angle_deg: float = param(10.0, units="deg", gt=0, le=180, doc="half-angle of the fiber cone")
    zone_axes: tuple[tuple[float, float, float], ...] = param((), doc="explicit zone axes [uvw] ('given' range)")
    g_max: float | None = param(None, units="1/Å", gt=0, doc="largest |g| (None: the detector's corner)")
    radial_power: float = param(1.0, ge=0, doc="weight |g|^power [radial_power]")
    intensity_power: float = param(0.25, ge=0, doc="weight I^power [intensity_power]")
    kernel_size: float = param(0.08, units="1/Å", gt=0, doc="correlation kernel size (Gaussian of sigma "
                               "kernel_size / 2, radially and along each shell) [corr_kernel_size]")
    sigma_excitation_error: float = param(0.02, units="1/Å", gt=0, doc="Gaussian shape function width "
                                          "[sigma_excitation_error]")
    min_spot_weight: float = param(1e-3, ge=0, lt=1, doc="spots weaker than this fraction of a template's "
                                   "strongest are left out")
    precession_angle_deg: float = param(0.0, units="deg", ge=0, le=5, doc="precession half-angle of the data "
                                        "(0: none) [precession_angle_degrees]")


def in_plane_rotation(theta: float) -> np.ndarray:
    """The (3, 3) rotation by ``theta`` (radians) about the beam axis z, counter-clockwise.

    >>> np.round(in_plane_rotation(np.pi / 2) @ [1.0, 0.0, 0.0], 12).tolist()
    [0.0, 1.0, 0.0]
    """
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def frame_matrices(directions: np.ndarray) -> np.ndarray:
    """Orientations ``U0`` (``lab = U0 @ crystal``) putting each unit direction along lab z.

    Lab x is crystal x (or y, near the x axis) projected on the image plane: a fixed,
    smooth choice, so that in-plane angles of neighbouring zone axes are comparable.

    Parameters
    ----------
    directions : (n, 3) array
        Unit vectors in the crystal Cartesian frame.

    Returns
    -------
    (n, 3, 3) array

    Examples
    --------
    >>> np.round(frame_matrices(np.array([[0.0, 0.0, 1.0]]))[0], 6).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    z = np.asarray(directions, float).reshape(-1, 3)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    ref = np.where((np.abs(z[:, 0]) > 0.9)[:, None], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    x = ref - np.sum(ref * z, axis=1, keepdims=True) * z
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def _zone_axes(crystal: Crystal, p: OrientationPlanParams) -> np.ndarray:
    """Unit beam directions (crystal Cartesian) sampled over the requested range."""
    from orix.sampling import sample_S2
    from orix.vector import Vector3d

    A = crystal.direct_matrix
    if p.zone_axis_range == "given":
        if not p.zone_axes:
            raise ParameterError("orientation_plan: zone_axis_range='given' needs zone_axes [[u, v, w], ...]",
                                 field="zone_axes")
        v = np.asarray(p.zone_axes, float) @ A
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    s2 = sample_S2(p.zone_axis_step_deg).data
    if p.zone_axis_range == "fiber":
        axis = crystal.direction(p.fiber_axis)
        return s2[s2 @ axis >= math.cos(math.radians(p.fiber_angle_deg)) - 1e-12]
    fs = crystal.laue_group.fundamental_sector
    inside = np.asarray(Vector3d(s2) < fs)
    corners = np.asarray(fs.vertices.data).reshape(-1, 3) if fs.vertices.size else np.zeros((0, 3))
    corners = corners / np.linalg.norm(corners, axis=1, keepdims=True)
    v = s2[inside]
    if len(corners):  # the sector's corners are exact; drop samples on top of them
        near = np.min(np.linalg.norm(v[:, None] - corners[None], axis=-1), axis=1) < 1e-6
        v = np.concatenate([corners, v[~near]])
    return v


def polar_templates(refl: Reflections, frames: np.ndarray, shells: np.ndarray, n_angles: int, *,
                    wavelength_A: float, p: OrientationPlanParams) -> tuple[np.ndarray, np.ndarray]:
    """FFTs along the in-plane angle of the polar templates of some orientations, and their norms.

    Parameters
    ----------
    refl : Reflections
    frames : (Z, 3, 3) array
        Orientations ``U0`` (in-plane angle 0).
    shells : (S,) array
        Radii of the radial shells, 1/Å.
    n_angles : int
        In-plane angle bins over 360 degrees.
    wavelength_A : float
    p : OrientationPlanParams

    Returns
    -------
    spectra : (Z, S, n_angles // 2 + 1) complex64 array
        rfft of each template's (S, n_angles) polar image, smoothed by the kernel.
    norms : (Z,) float array
        L2 norm of each smoothed polar image.
    """
    g_lab = np.einsum("zij,nj->zni", frames, refl.g)  # (Z, n, 3)
    s = excitation_error(g_lab, wavelength_A)
    w = (refl.F2[None] * shape_function(s, p.sigma_excitation_error, g_radial=np.hypot(g_lab[..., 0], g_lab[..., 1]),
                                        precession_angle_deg=p.precession_angle_deg)) ** p.intensity_power
    r = np.linalg.norm(refl.g, axis=1)
    w = w * r[None] ** p.radial_power
    w[w < p.min_spot_weight * w.max(axis=1, keepdims=True)] = 0.0
    shell = np.argmin(np.abs(r[:, None] - shells[None]), axis=1)  # (n,)
    phi = np.mod(np.arctan2(g_lab[..., 1], g_lab[..., 0]) / (2 * math.pi) * n_angles, n_angles)
    i0 = np.floor(phi).astype(np.int64)
    f = phi - i0
    Z, S = len(frames), len(shells)
    base = (np.arange(Z)[:, None] * S + shell[None]) * n_angles  # (Z, n): flat index of each spot's row
    idx = np.concatenate([(base + i0 % n_angles).ravel(), (base + (i0 + 1) % n_angles).ravel()])
    img = np.bincount(idx, np.concatenate([(w * (1 - f)).ravel(), (w * f).ravel()]),
                      minlength=Z * S * n_angles).reshape(Z, S, n_angles)
    spectra = np.fft.rfft(img, axis=-1)
    spectra *= angular_kernel(shells, n_angles, p.kernel_size)[None]
    # Parseval: the norm of each smoothed polar image without transforming it back
    power = np.abs(spectra) ** 2
    power[..., 1:(n_angles + 1) // 2] *= 2.0  # the negative frequencies rfft leaves out
    norms = np.sqrt(power.sum(axis=(1, 2)) / n_angles)
    return spectra.astype(np.complex64), norms


def angular_kernel(shells: np.ndarray, n_angles: int, kernel_size: float) -> np.ndarray:
    """(S, n_angles // 2 + 1) FT of a wrapped Gaussian of width kernel_size / |g| (radians), peak 1."""
    m = np.arange(n_angles // 2 + 1)
    sigma_bins = 0.5 * kernel_size / shells * n_angles / (2 * math.pi)  # (S,): sigma = kernel_size / 2
    # Fourier series of a unit-height Gaussian sampled on the bins: sqrt(2 pi) sigma exp(-(2 pi m sigma / N)^2 / 2)
    return math.sqrt(2 * math.pi) * sigma_bins[:, None] * np.exp(
        -0.5 * (2 * math.pi * m[None] * sigma_bins[:, None] / n_angles) ** 2)


@dataclass
class PhasePlan:
    """The template library of one crystal.

    Attributes
    ----------
    crystal : Crystal
    reflections : Reflections
        Up to the plan's g_max.
    shells : (S,) array
        Radial shells (1/Å).
    directions : (Z, 3) array
        Beam directions (crystal Cartesian unit vectors).
    frames : (Z, 3, 3) array
        In-plane-angle-0 orientation of each zone axis.
    spectra : (Z, S, M) complex64 array
        rfft of each polar template.
    norms : (Z,) array
        Template norms.
    symmetry : (K, 3, 3) array
        Proper rotations of the crystal's Laue group (from orix), crystal frame.
    """

    crystal: Crystal
    reflections: Reflections
    shells: np.ndarray
    directions: np.ndarray
    frames: np.ndarray
    spectra: np.ndarray
    norms: np.ndarray
    symmetry: np.ndarray


@dataclass
class OrientationPlan:
    """A built plan: its record, the beam and detector it was built for, one :class:`PhasePlan` per crystal."""

    params: OrientationPlanParams
    energy_eV: float
    g_max: float
    phases: list[PhasePlan]

    @property
    def n_angles(self) -> int:
        """In-plane angle bins over 360 degrees."""
        return int(round(360.0 / self.params.in_plane_step_deg))

    @property
    def wavelength_A(self) -> float:
        return electron_wavelength_A(self.energy_eV)

    def check(self, calibration: Calibration, g_max: float | None = None) -> None:
        """Refuse a calibration the plan was not built for (another beam energy)."""
        e = calibration.energy_eV
        if e is not None and abs(e - self.energy_eV) > 1e-6 * self.energy_eV:
            raise CalibrationError(f"the orientation plan was built for {self.energy_eV / 1e3:g} kV, the data are at "
                                   f"{e / 1e3:g} kV: rebuild the plan with this cube's calibration (build_plan)")
        if g_max is not None and g_max > self.g_max * 1.2:
            raise CalibrationError(f"the orientation plan reaches |g| = {self.g_max:.3g} 1/Å but the peaks reach "
                                   f"{g_max:.3g} 1/Å: it was built for another detector calibration; rebuild it")

    def to_h5(self, group: Any) -> None:
        """Write the plan (record and cached arrays) into an HDF5 group."""
        import json

        group.attrs["params"] = json.dumps(self.params.to_dict())
        group.attrs["energy_eV"] = self.energy_eV
        group.attrs["g_max"] = self.g_max
        for i, ph in enumerate(self.phases):
            g = group.create_group(f"phase{i}")
            for name in ("shells", "directions", "frames", "spectra", "norms", "symmetry"):
                g.create_dataset(name, data=getattr(ph, name))

    @classmethod
    def from_h5(cls, group: Any) -> "OrientationPlan":
        """Read a plan written by :meth:`to_h5` (templates are not recomputed)."""
        import json

        p = OrientationPlanParams.from_dict(json.loads(group.attrs["params"]))
        energy, g_max = float(group.attrs["energy_eV"]), float(group.attrs["g_max"])
        phases = []
        for i, cp in enumerate(p.crystals):
            g = group[f"phase{i}"]
            crystal = cp.crystal()
            phases.append(PhasePlan(crystal, crystal.reflections(g_max), *(g[n][()] for n in (
                "shells", "directions", "frames", "spectra", "norms", "symmetry"))))
        return cls(p, energy, g_max, phases)


def detector_g_max(calibration: Calibration, detector_shape: tuple[int, int]) -> float:
    """Largest |g| (1/Å) seen in every direction: the origin's distance to the nearest detector edge.

    Spots beyond it fall off the detector in some directions, so templates stop there; with a
    convergence semi-angle, one disk radius less (disks cut by the edge are not detected).
    """
    step = reciprocal_step_invA(calibration)
    o = np.asarray(calibration.require("origin", "building an orientation plan"), float)
    edge = min(o[0], o[1], detector_shape[0] - 1 - o[0], detector_shape[1] - 1 - o[1]) * step
    if calibration.convergence_semiangle_mrad is not None and calibration.energy_eV is not None:
        edge -= calibration.convergence_semiangle_mrad * 1e-3 / calibration.wavelength_A
    if edge <= 0:
        raise CalibrationError(f"the origin {tuple(o)} is not inside the detector {detector_shape} (by more than "
                               "one disk radius): check the calibration's origin")
    return float(edge)


def reciprocal_step_invA(calibration: Calibration) -> float:
    step = calibration.require("reciprocal_step", "orientation matching")
    units = calibration.reciprocal_units
    if units == "1/Å":
        return float(step)
    if units == "1/nm":
        return float(step) / 10.0
    return float(step) * 1e-3 / calibration.wavelength_A  # mrad


def build_plan(params: OrientationPlanParams | None = None, calibration: Calibration | None = None, *,
               detector_shape: tuple[int, int] | None = None, energy_eV: float | None = None,
               **changes: Any) -> OrientationPlan:
    """Build the template library of every crystal of ``params`` (py4DSTEM ``orientation_plan``).

    Parameters
    ----------
    params : OrientationPlanParams, optional
    calibration : Calibration, optional
        Beam energy, and (with ``detector_shape``) the detector's reach when ``params.g_max`` is None.
    detector_shape : (Qx, Qy), optional
    energy_eV : float, optional
        Beam energy when there is no calibration.
    **changes
        Field overrides of ``params``.

    Returns
    -------
    OrientationPlan

    Examples
    --------
    >>> plan = build_plan(OrientationPlanParams(zone_axis_step_deg=5.0, g_max=0.8), energy_eV=300e3)
    >>> ph = plan.phases[0]
    >>> ph.spectra.shape[1:], len(ph.symmetry)
    ((4, 181), 24)
    """
    p = params or OrientationPlanParams()
    if changes:
        p = p.replace(**changes)
    if not p.crystals:
        raise ParameterError("orientation_plan needs at least one crystal", field="crystals")
    energy = energy_eV if energy_eV is not None else (calibration.energy_eV if calibration is not None else None)
    if energy is None:
        raise CalibrationError("building an orientation plan needs the beam energy: set it in the calibration "
                               "(cube.calibration.replace(energy_eV=300e3)) or pass energy_eV=")
    g_max = p.g_max
    if g_max is None:
        if calibration is None or detector_shape is None:
            raise ParameterError("orientation_plan: give g_max or a calibration and detector shape to take it from",
                                 field="g_max")
        g_max = detector_g_max(calibration, detector_shape)
    lam = electron_wavelength_A(energy)
    n_angles = int(round(360.0 / p.in_plane_step_deg))
    phases = []
    for cp in p.crystals:
        crystal = cp.crystal()
        refl = crystal.reflections(g_max)
        r = refl.g_norm
        shells = np.unique(np.round(r, 5))
        directions = _zone_axes(crystal, p)
        frames = frame_matrices(directions)
        spectra, norms = polar_templates(refl, frames, shells, n_angles, wavelength_A=lam, p=p)
        sym = crystal.laue_group.proper_subgroup.to_matrix().reshape(-1, 3, 3)
        phases.append(PhasePlan(crystal, refl, shells, directions, frames, spectra, norms, np.asarray(sym, float)))
    return OrientationPlan(p, float(energy), float(g_max), phases)
