"""Crystals for orientation and phase mapping: structure, kinematic reflections, simulated spot patterns.

A :class:`Crystal` is a lattice, the atoms of its cell (element, fractional position,
occupancy, Debye-Waller B) and its space group. It is built from lattice parameters,
space group and asymmetric-unit basis (:meth:`Crystal.from_parameters`), from a CIF file
(:meth:`Crystal.from_cif`, through diffpy.structure, occupancies included) or from ASE
``Atoms`` (:meth:`Crystal.from_ase`, when ASE is installed).

Symmetry (point group, Laue group, fundamental sector) comes from orix
(:attr:`Crystal.phase`); nothing here re-implements quaternions or symmetry operations.

Conventions
-----------
* Crystal Cartesian frame: ``a`` along x, ``b`` in the xy plane (rows of :attr:`Crystal.direct_matrix`).
* An orientation is the rotation matrix ``U`` with ``lab = U @ crystal``. Lab z is the beam
  direction, lab x and y the scan (or detector) axes. The orix :class:`~orix.quaternion.Orientation`
  of ``U`` is ``Orientation.from_matrix(U.T)`` (orix maps sample vectors to crystal vectors).
* Reciprocal vectors carry no 2 pi: ``|g| = 1/d``.

Physics
-------
* Kinematic structure factor ``F_g = sum_j occ_j f_j(|g|) exp(-B_j |g|^2 / 4) exp(2 pi i g.r_j)`` with the
  Lobato & Van Dyck (2014) electron scattering factors (:mod:`.electron_scattering`).
* Excitation error of ``g`` (lab frame) for a beam along +z with wave number ``k = 1/lambda``:
  ``s_g = -(2 k g_z + |g|^2) / (2 k)`` (the distance of g from the Ewald sphere along z).
* Shape function: a Gaussian ``exp(-s^2 / (2 sigma^2))`` (``sigma_excitation_error``), or for a slab of
  thickness t the kinematic ``sinc^2(pi t s)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..core.calibration import electron_wavelength_A
from ..core.errors import FileFormatError, ParameterError
from .electron_scattering import ELEMENTS, atomic_number, electron_scattering_factor

__all__ = ["direct_cell_matrix",
           "Crystal", "Reflections", "SpotPattern", "zone_axis_matrix", "excitation_error", "shape_function",
           "simulate_spots"]

_M0C2_EV = 510998.95  # electron rest energy, eV


def _lattice6(lattice: Any) -> tuple[float, ...]:
    try:
        lat = tuple(float(v) for v in np.atleast_1d(np.asarray(lattice, dtype=np.float64)))
    except (TypeError, ValueError):
        raise ParameterError(f"lattice must be (a, b, c, alpha, beta, gamma), got {lattice!r}",
                             field="lattice") from None
    if len(lat) == 1:
        lat = (lat[0],) * 3 + (90.0,) * 3
    if len(lat) != 6 or min(lat[:3]) <= 0 or not all(0 < v < 180 for v in lat[3:]):
        raise ParameterError(f"lattice must be a (cubic) or (a, b, c, alpha, beta, gamma) with lengths > 0 Å and "
                             f"angles in (0, 180) degrees, got {lattice!r}", field="lattice")
    return lat



def direct_cell_matrix(lattice: Sequence[float]) -> np.ndarray:
    """(3, 3): rows are the lattice vectors a, b, c (Å) in the crystal Cartesian frame.

    ``a`` along x, ``b`` in the xy plane; ``lattice`` is (a, b, c, α, β, γ) in Å and degrees.

    Examples
    --------
    >>> direct_cell_matrix((2.0, 3.0, 4.0, 90, 90, 90)).diagonal().tolist()
    [2.0, 3.0, 4.0]
    """
    a, b, c, al, be, ga = (float(v) for v in lattice)
    al, be, ga = np.radians([al, be, ga])
    cx = math.cos(be)
    cy = (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    cz = math.sqrt(max(1.0 - cx * cx - cy * cy, 0.0))
    m = np.array([[a, 0.0, 0.0], [b * math.cos(ga), b * math.sin(ga), 0.0], [c * cx, c * cy, c * cz]])
    m[np.abs(m) < 1e-12] = 0.0
    return m

@dataclass(frozen=True)
class Reflections:
    """Reflections of a crystal: Miller indices, reciprocal vectors and structure factors.

    Attributes
    ----------
    hkl : (n, 3) int array
    g : (n, 3) float array
        Reciprocal vectors in the crystal Cartesian frame, 1/Å.
    F : (n,) complex array
        Structure factors, Å.
    """

    hkl: np.ndarray
    g: np.ndarray
    F: np.ndarray

    @property
    def F2(self) -> np.ndarray:
        """``|F|^2`` (Å^2), shape (n,)."""
        return np.abs(self.F) ** 2

    @property
    def g_norm(self) -> np.ndarray:
        """``|g|`` (1/Å), shape (n,)."""
        return np.linalg.norm(self.g, axis=1)

    def __len__(self) -> int:
        return len(self.hkl)


@dataclass(frozen=True)
class SpotPattern:
    """A simulated spot pattern: the reflections near the Ewald sphere at one orientation.

    Attributes
    ----------
    hkl : (n, 3) int array
    g : (n, 2) float array
        Spot positions in the lab (scan) frame, 1/Å, relative to the direct beam.
    intensity : (n,) float array
        ``|F|^2`` times the shape function.
    excitation_error : (n,) float array
        ``s_g`` in 1/Å.
    """

    hkl: np.ndarray
    g: np.ndarray
    intensity: np.ndarray
    excitation_error: np.ndarray

    def __len__(self) -> int:
        return len(self.hkl)


class Crystal:
    """A crystal structure: lattice, atoms of the cell and space group.

    Parameters
    ----------
    lattice : (6,) sequence of float
        ``(a, b, c, alpha, beta, gamma)`` in Å and degrees (one number: cubic).
    numbers : (n,) int array
        Atomic number of each atom of the cell.
    positions : (n, 3) float array
        Fractional coordinates of each atom of the full cell.
    occupancies : (n,) float array, optional
        Site occupancies (default 1).
    debye_waller_A2 : float or (n,) float array
        Isotropic Debye-Waller B factors, Å^2 (``B = 8 pi^2 <u^2>``).
    space_group : int
        International Tables number 1..230 (symmetry for orix; the atoms are not expanded by it here).
    name : str

    Examples
    --------
    >>> si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)], name="Si")
    >>> len(si.numbers), si.point_group.name, si.laue_group.name
    (8, 'm-3m', 'm-3m')
    >>> r = si.reflections(0.62)
    >>> sorted({tuple(sorted(abs(v) for v in h)) for h in r.hkl.tolist()})
    [(0, 2, 2), (1, 1, 1), (1, 1, 3)]
    """

    def __init__(self, lattice: Sequence[float], numbers: Any, positions: Any, occupancies: Any = None,
                 debye_waller_A2: Any = 0.5, space_group: int = 1, name: str = "crystal") -> None:
        self.lattice = _lattice6(lattice)
        self.numbers = np.array([atomic_number(z) for z in np.atleast_1d(numbers)], dtype=np.int64)
        n = len(self.numbers)
        self.positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        if n == 0 or self.positions.shape != (n, 3):
            raise ParameterError(f"a crystal needs one (x, y, z) position per atom: {n} atoms, positions of shape "
                                 f"{np.shape(positions)}", field="positions")
        self.occupancies = (np.ones(n) if occupancies is None
                            else np.broadcast_to(np.asarray(occupancies, float), (n,)).copy())
        self.debye_waller_A2 = np.broadcast_to(np.asarray(debye_waller_A2, float), (n,)).copy()
        if np.any(self.occupancies < 0) or np.any(self.occupancies > 1) or np.any(self.debye_waller_A2 < 0):
            raise ParameterError("occupancies must be in [0, 1] and Debye-Waller factors >= 0", field="occupancies")
        sg = int(space_group)
        if not 1 <= sg <= 230:
            raise ParameterError(f"space_group must be an International Tables number 1..230, got {space_group!r}",
                                 field="space_group")
        self.space_group = sg
        self.name = str(name)

    # --- constructors --------------------------------------------------------
    @classmethod
    def from_parameters(cls, lattice: Any, space_group: int, basis: Sequence[Sequence[Any]], *,
                        debye_waller_A2: float = 0.5, name: str = "crystal") -> "Crystal":
        """A crystal from lattice parameters, space group and the asymmetric unit.

        Parameters
        ----------
        lattice : float or (6,) sequence
            Cubic ``a`` or ``(a, b, c, alpha, beta, gamma)``.
        space_group : int
            International Tables number (standard setting, origin choice of diffpy.structure).
        basis : sequence of (element, x, y, z) or (element, x, y, z, occupancy)
            Atoms of the asymmetric unit; each is expanded by the space group's operations.
        debye_waller_A2 : float
        name : str
        """
        from diffpy.structure.spacegroups import GetSpaceGroup

        try:
            sg = GetSpaceGroup(int(space_group))
        except (ValueError, KeyError, TypeError):
            raise ParameterError(f"unknown space group {space_group!r}; give its number 1..230",
                                 field="space_group") from None
        numbers, positions, occ = [], [], []
        for site in basis:
            if len(site) not in (4, 5):
                raise ParameterError(f"each basis site is (element, x, y, z[, occupancy]), got {site!r}",
                                     field="basis")
            z = atomic_number(site[0])
            xyz = np.asarray(site[1:4], dtype=np.float64)
            o = float(site[4]) if len(site) == 5 else 1.0
            found: list[np.ndarray] = []
            for op in sg.iter_symops():
                p = np.mod(op(xyz), 1.0)
                if not any(np.all(np.abs(((p - q) + 0.5) % 1.0 - 0.5) < 1e-4) for q in found):
                    found.append(p)
            numbers += [z] * len(found)
            positions += found
            occ += [o] * len(found)
        return cls(lattice, numbers, np.array(positions), occ, debye_waller_A2, int(space_group), name)

    @classmethod
    def from_cif(cls, path: str | os.PathLike, *, debye_waller_A2: float | None = None,
                 name: str | None = None) -> "Crystal":
        """A crystal from a CIF file (diffpy.structure's parser; occupancies and U_iso read).

        ``debye_waller_A2`` overrides the file's displacement parameters (B = 8 pi^2 U_iso;
        0.5 Å^2 where the file gives none).

        Raises
        ------
        FileFormatError
            The file does not parse as a CIF or holds no atoms.
        """
        from diffpy.structure.parsers import getParser

        parser = getParser("cif")
        try:
            structure = parser.parseFile(os.fspath(path))
        except Exception as err:  # the parser raises its own StructureFormatError, IOError...
            raise FileFormatError(path, f"could not be read as a CIF file ({err})",
                                  "check that it is a crystallographic CIF with a cell and atom sites, "
                                  "or build the crystal with Crystal.from_parameters") from None
        if len(structure) == 0:
            raise FileFormatError(path, "the CIF holds no atom sites", "add _atom_site_ loops to the file")
        sg = getattr(getattr(parser, "spacegroup", None), "number", 1)
        lat = structure.lattice
        numbers = [atomic_number(a.element) for a in structure]
        positions = np.array([a.xyz for a in structure], dtype=np.float64) % 1.0
        occ = np.array([a.occupancy for a in structure], dtype=np.float64)
        if debye_waller_A2 is None:
            u = np.array([a.Uisoequiv for a in structure], dtype=np.float64)
            B = np.where(u > 0, 8.0 * math.pi ** 2 * u, 0.5)
        else:
            B = np.full(len(numbers), float(debye_waller_A2))
        label = name or (getattr(structure, "title", "") or os.path.splitext(os.path.basename(path))[0])
        return cls((lat.a, lat.b, lat.c, lat.alpha, lat.beta, lat.gamma), numbers, positions, occ, B, sg, label)

    @classmethod
    def from_ase(cls, atoms: Any, *, space_group: int | None = None, debye_waller_A2: float = 0.5,
                 name: str | None = None) -> "Crystal":
        """A crystal from an ASE ``Atoms`` (cell and scaled positions; needs ASE).

        The space group is ``space_group``, else ``atoms.info['spacegroup']`` (set by
        ``ase.spacegroup.crystal``), else 1 (P1: no symmetry is assumed).
        """
        if space_group is None:
            sg = atoms.info.get("spacegroup") if hasattr(atoms, "info") else None
            space_group = int(getattr(sg, "no", sg) or 1)
        cellpar = atoms.cell.cellpar()
        numbers = atoms.get_atomic_numbers()
        occ = np.ones(len(numbers))
        label = name or atoms.get_chemical_formula()
        return cls(tuple(cellpar), numbers, atoms.get_scaled_positions(wrap=True) % 1.0, occ, debye_waller_A2,
                   space_group, label)

    # --- geometry ------------------------------------------------------------
    @property
    def direct_matrix(self) -> np.ndarray:
        """(3, 3): rows are the lattice vectors a, b, c in the crystal Cartesian frame (Å)."""
        return direct_cell_matrix(self.lattice)

    @property
    def reciprocal_matrix(self) -> np.ndarray:
        """(3, 3): rows are a*, b*, c* (1/Å, no 2 pi), so ``g = hkl @ reciprocal_matrix``."""
        return np.linalg.inv(self.direct_matrix).T

    @property
    def volume_A3(self) -> float:
        """Unit-cell volume in Å^3."""
        return float(abs(np.linalg.det(self.direct_matrix)))

    def direction(self, uvw: Sequence[float]) -> np.ndarray:
        """Unit vector of the direct-lattice direction ``[uvw]`` in the crystal Cartesian frame."""
        v = np.asarray(uvw, dtype=np.float64) @ self.direct_matrix
        return v / np.linalg.norm(v)

    # --- symmetry (orix) -----------------------------------------------------
    @property
    def phase(self) -> Any:
        """The orix :class:`~orix.crystal_map.Phase` (space group, point group, structure)."""
        from orix.crystal_map import Phase

        cached = self.__dict__.get("_phase")
        if cached is None:  # built once: orix derives the point group from the space group each time
            cached = self.__dict__["_phase"] = Phase(name=self.name, space_group=self.space_group)
        return cached

    @property
    def point_group(self) -> Any:
        """The orix point group (:class:`~orix.quaternion.Symmetry`)."""
        return self.phase.point_group

    @property
    def laue_group(self) -> Any:
        """The orix Laue group (point group plus inversion): what a zero-order pattern can tell apart."""
        return self.point_group.laue

    # --- diffraction ---------------------------------------------------------
    def structure_factor(self, hkl: Any) -> np.ndarray:
        """Kinematic electron structure factors ``F_hkl`` (Å) of an (n, 3) array of Miller indices."""
        hkl = np.atleast_2d(np.asarray(hkl, dtype=np.float64))
        g = np.linalg.norm(hkl @ self.reciprocal_matrix, axis=1)
        F = np.zeros(len(hkl), complex)
        phase = np.exp(2j * np.pi * (hkl @ self.positions.T))  # (n, atoms)
        for z in np.unique(self.numbers):
            sel = self.numbers == z
            fe = electron_scattering_factor(int(z), g)  # (n,)
            dw = np.exp(-np.outer(g * g, self.debye_waller_A2[sel]) / 4.0)
            F += fe * np.sum(self.occupancies[sel] * dw * phase[:, sel], axis=1)
        return F

    def reflections(self, g_max: float, *, relative_cutoff: float = 1e-6) -> Reflections:
        """All reflections with ``0 < |g| <= g_max`` (1/Å) whose ``|F|^2`` exceeds ``relative_cutoff`` of the largest.

        Kinematically forbidden reflections (``|F|^2`` at round-off level) are dropped.

        Raises
        ------
        ParameterError
            No reflection within ``g_max`` (the detector is smaller than the first ring).
        """
        if not g_max > 0:
            raise ParameterError(f"g_max must be positive (1/Å), got {g_max!r}", field="g_max")
        n = np.ceil(g_max * np.linalg.norm(self.direct_matrix, axis=1)).astype(int)
        rng = [np.arange(-k, k + 1) for k in n]
        hkl = np.stack(np.meshgrid(*rng, indexing="ij"), -1).reshape(-1, 3)
        g = hkl @ self.reciprocal_matrix
        q = np.linalg.norm(g, axis=1)
        keep = (q <= g_max) & (q > 0)
        hkl, g = hkl[keep], g[keep]
        F = self.structure_factor(hkl)
        F2 = np.abs(F) ** 2
        ok = F2 > relative_cutoff * (F2.max() if len(F2) else 0.0)
        if not ok.any():
            raise ParameterError(f"{self.name} has no allowed reflection with |g| <= {g_max:.3g} 1/Å (its smallest "
                                 f"is at {np.min(q[q > 0]) if q.size else float('nan'):.3g} 1/Å); the detector "
                                 "does not reach the first reflection: check the calibration or raise g_max",
                                 field="g_max")
        order = np.argsort(np.linalg.norm(g[ok], axis=1), kind="stable")
        return Reflections(hkl[ok][order].astype(np.int64), g[ok][order], F[ok][order])

    def spots(self, orientation: Any, *, energy_eV: float = 300e3, g_max: float = 1.0,
              sigma_excitation_error: float = 0.02, thickness_A: float | None = None,
              min_intensity: float = 1e-4) -> SpotPattern:
        """The simulated spot pattern at one orientation (see :func:`simulate_spots`)."""
        return simulate_spots(self, orientation, energy_eV=energy_eV, g_max=g_max,
                              sigma_excitation_error=sigma_excitation_error, thickness_A=thickness_A,
                              min_intensity=min_intensity)

    def __repr__(self) -> str:
        a, b, c, al, be, ga = self.lattice
        return (f"Crystal({self.name!r}, a={a:.4g}, b={b:.4g}, c={c:.4g} Å, angles=({al:.4g}, {be:.4g}, {ga:.4g}), "
                f"space_group={self.space_group}, atoms={len(self.numbers)})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description (for results files and records)."""
        return {"name": self.name, "lattice": list(self.lattice), "space_group": self.space_group,
                "elements": [ELEMENTS[z - 1] for z in self.numbers.tolist()],
                "positions": self.positions.tolist(), "occupancies": self.occupancies.tolist(),
                "debye_waller_A2": self.debye_waller_A2.tolist()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Crystal):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Crystal":
        """Inverse of :meth:`to_dict`."""
        return cls(d["lattice"], d["elements"], d["positions"], d["occupancies"], d["debye_waller_A2"],
                   d["space_group"], d["name"])


def zone_axis_matrix(crystal: Crystal, zone_axis: Sequence[float], rotation_deg: float = 0.0,
                     x_direction: Sequence[float] | None = None) -> np.ndarray:
    """Orientation ``U`` (``lab = U @ crystal``) with the direction ``[uvw]`` along the beam.

    Lab x is ``x_direction`` (default: ``a``, or ``b`` when ``a`` is along the beam, projected
    on the image plane) turned by ``rotation_deg`` counter-clockwise about the beam; the
    convention of the built-in simulator (:func:`fourd_widgets.datasets.crystal.orientation_matrix`).

    Examples
    --------
    >>> si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)])
    >>> np.round(zone_axis_matrix(si, (0, 1, 1))[1], 4).tolist()
    [0.0, 0.7071, -0.7071]
    """
    A = crystal.direct_matrix
    z = crystal.direction(zone_axis)
    if x_direction is not None:
        x = np.asarray(x_direction, float) @ A
        if abs(x @ z) > 1e-6 * np.linalg.norm(x):
            raise ParameterError(f"x_direction {tuple(x_direction)} is not perpendicular to zone axis "
                                 f"{tuple(zone_axis)}", field="x_direction")
    else:
        x = A[0] - (A[0] @ z) * z
        if np.linalg.norm(x) < 1e-6 * np.linalg.norm(A[0]):
            x = A[1] - (A[1] @ z) * z
    x = x / np.linalg.norm(x)
    R0 = np.stack([x, np.cross(z, x), z])
    t = math.radians(rotation_deg)
    Rz = np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return Rz @ R0


def excitation_error(g_lab: np.ndarray, wavelength_A: float) -> np.ndarray:
    """Excitation error ``s_g`` (1/Å) of lab-frame reciprocal vectors ``g_lab`` (n, 3), beam along +z.

    >>> round(float(excitation_error(np.array([[0.5, 0.0, 0.0]]), 0.02)[0]), 6)
    -0.0025
    """
    k = 1.0 / wavelength_A
    g = np.asarray(g_lab, dtype=np.float64)
    return -(2.0 * k * g[..., 2] + np.sum(g * g, axis=-1)) / (2.0 * k)


def shape_function(s: np.ndarray, sigma_excitation_error: float = 0.02, thickness_A: float | None = None, *,
                   g_radial: np.ndarray | None = None, precession_angle_deg: float = 0.0) -> np.ndarray:
    """Relative intensity of a reflection at excitation error ``s``: Gaussian of width sigma, or ``sinc^2(pi t s)``.

    With precession (``precession_angle_deg`` > 0 and the in-plane ``g_radial`` of each reflection,
    1/Å), the beam turns on a cone of that half-angle: to first order the excitation error runs
    over ``s + |g_xy| sin(angle) cos(phi)``, and the shape function is averaged over the turn
    (36 steps of phi).

    >>> float(shape_function(np.array([0.0]))[0])
    1.0
    >>> s = np.array([-0.04]); r = np.array([2.0])
    >>> bool(shape_function(s, g_radial=r, precession_angle_deg=1.0)[0] > 2 * shape_function(s)[0])
    True
    """
    s = np.asarray(s, dtype=np.float64)
    if precession_angle_deg and g_radial is not None:
        phi = np.linspace(0.0, 2 * np.pi, 36, endpoint=False)
        amp = np.asarray(g_radial, np.float64) * np.sin(np.radians(precession_angle_deg))
        turned = s[..., None] + amp[..., None] * np.cos(phi)
        return shape_function(turned, sigma_excitation_error, thickness_A).mean(axis=-1)
    if thickness_A is not None:
        return np.sinc(float(thickness_A) * s) ** 2
    return np.exp(-0.5 * (s / float(sigma_excitation_error)) ** 2)


def simulate_spots(crystal: Crystal, orientation: Any, *, energy_eV: float = 300e3, g_max: float = 1.0,
                   sigma_excitation_error: float = 0.02, thickness_A: float | None = None,
                   min_intensity: float = 1e-4, reflections: Reflections | None = None,
                   precession_angle_deg: float = 0.0) -> SpotPattern:
    """Kinematic spot pattern of ``crystal`` at ``orientation``.

    Parameters
    ----------
    crystal : Crystal
    orientation : (3, 3) array or orix Orientation
        ``U`` with ``lab = U @ crystal``, or an orix orientation (``U = o.to_matrix().T``).
    energy_eV : float
        Beam energy.
    g_max : float
        Largest in-plane ``|g|`` kept (1/Å): the detector edge.
    sigma_excitation_error, thickness_A : float
        Shape function (see :func:`shape_function`).
    precession_angle_deg : float
        Precession half-angle (0: none).
    min_intensity : float
        Spots weaker than this fraction of the strongest are dropped.
    reflections : Reflections, optional
        Precomputed ``crystal.reflections(...)`` (reused across orientations).

    Returns
    -------
    SpotPattern
        Spot positions in the lab frame (x, y), 1/Å, strongest first.

    Examples
    --------
    >>> si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)])
    >>> p = simulate_spots(si, zone_axis_matrix(si, (0, 0, 1)), g_max=0.6)
    >>> sorted({tuple(abs(v) for v in h) for h in p.hkl.tolist()})
    [(2, 2, 0)]
    """
    U = _as_matrix(orientation)
    lam = electron_wavelength_A(energy_eV)
    refl = reflections if reflections is not None else crystal.reflections(g_max * 1.05)
    g_lab = refl.g @ U.T
    s = excitation_error(g_lab, lam)
    r = np.hypot(g_lab[:, 0], g_lab[:, 1])
    inten = refl.F2 * shape_function(s, sigma_excitation_error, thickness_A, g_radial=r,
                                     precession_angle_deg=precession_angle_deg)
    keep = (r <= g_max) & (inten > min_intensity * (inten.max() if len(inten) else 0.0))
    order = np.argsort(-inten[keep], kind="stable")
    idx = np.flatnonzero(keep)[order]
    return SpotPattern(refl.hkl[idx], g_lab[idx, :2].copy(), inten[idx], s[idx])


def _as_matrix(orientation: Any) -> np.ndarray:
    if hasattr(orientation, "to_matrix"):  # orix: sample -> crystal
        m = np.asarray(orientation.to_matrix()).reshape(-1, 3, 3)
        if len(m) != 1:
            raise ParameterError("give one orientation", field="orientation")
        return m[0].T
    U = np.asarray(orientation, dtype=np.float64)
    if U.shape != (3, 3) or not np.allclose(U @ U.T, np.eye(3), atol=1e-6):
        raise ParameterError("an orientation is a (3, 3) rotation matrix (lab = U @ crystal) or an orix Orientation",
                             field="orientation")
    return U
