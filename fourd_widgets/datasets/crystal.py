"""Crystal grains and their kinematic zone-axis reflections.

A :class:`Grain` is a crystal (lattice, atoms) in one orientation (zone axis
along the beam, in-plane rotation) with a thickness. :func:`reflections` lists
its zero-order Laue zone reflections with kinematic intensities.

Physics
-------
* Electron scattering factors: screened-Coulomb (Wentzel) atom through the
  Mott-Bethe formula, ``f_e(q) = 2 Z a^2 / (a0 (1 + (2 pi q a)^2))`` Å with the
  Thomas-Fermi radius ``a = 0.885 a0 Z^(-1/3)``, times the relativistic mass
  ratio and a Debye-Waller factor ``exp(-B s^2)``, ``s = q / 2``. It is an
  approximation (low at small q for light atoms) good for relative intensities.
* Kinematic beam intensity for thickness t: ``I_g = (lambda |F_g| t / V)^2
  sinc^2(pi t s_g)`` with excitation error ``s_g = -lambda |g|^2 / 2`` for a
  zero-order Laue zone reflection at exact zone axis.

References
----------
Kirkland, E. J. *Advanced Computing in Electron Microscopy*, 2nd ed., Springer (2010), ch. 5 and app. C.
Wentzel, G. Z. Phys. 40, 590 (1927); Lenz, F. Z. Naturforsch. 9a, 185 (1954).
Hirsch, Howie, Nicholson, Pashley, Whelan. *Electron Microscopy of Thin Crystals* (1965), ch. 4.
Williams, D. B. & Carter, C. B. *Transmission Electron Microscopy*, 2nd ed. (2009), ch. 13 and 17.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..analysis.crystal import direct_cell_matrix
from ..core.errors import ParameterError

__all__ = ["Grain", "PRESETS", "reflections", "kinematic_intensity", "orientation_matrix", "lattice_basis"]

_A0 = 0.529177210903  # Bohr radius, Å
_M0C2_EV = 510998.95  # electron rest energy, eV

_DIAMOND = ((0, 0, 0), (0, .5, .5), (.5, 0, .5), (.5, .5, 0),
            (.25, .25, .25), (.25, .75, .75), (.75, .25, .75), (.75, .75, .25))
_FCC = _DIAMOND[:4]
_BCC = ((0, 0, 0), (.5, .5, .5))
_ROCKSALT_B = ((.5, .5, .5), (.5, 0, 0), (0, .5, 0), (0, 0, .5))

#: Built-in crystals: name -> (cubic lattice parameter Å, ((Z, x, y, z), ...)).
PRESETS: dict[str, tuple[float, tuple[tuple[float, float, float, float], ...]]] = {
    "Si": (5.431, tuple((14, *p) for p in _DIAMOND)),
    "Ge": (5.658, tuple((32, *p) for p in _DIAMOND)),
    "C": (3.567, tuple((6, *p) for p in _DIAMOND)),
    "GaAs": (5.653, tuple((31, *p) for p in _FCC) + tuple((33, *p) for p in _DIAMOND[4:])),
    "Au": (4.078, tuple((79, *p) for p in _FCC)),
    "Al": (4.050, tuple((13, *p) for p in _FCC)),
    "Cu": (3.615, tuple((29, *p) for p in _FCC)),
    "Fe": (2.8665, tuple((26, *p) for p in _BCC)),
    "MgO": (4.212, tuple((12, *p) for p in _FCC) + tuple((8, *p) for p in _ROCKSALT_B)),
    "SrTiO3": (3.905, ((38, 0, 0, 0), (22, .5, .5, .5), (8, .5, .5, 0), (8, .5, 0, .5), (8, 0, .5, .5))),
}


@dataclass(frozen=True)
class Grain:
    """A crystal grain: lattice, atoms, orientation and thickness.

    Parameters
    ----------
    lattice : (6,) tuple of float
        ``(a, b, c, alpha, beta, gamma)`` in Å and degrees.
    atoms : tuple of (Z, x, y, z)
        Atomic number and fractional coordinates of each atom in the cell.
    zone_axis : (3,) tuple of int
        Direct-lattice direction ``[uvw]`` along the beam (+z of the lab).
    rotation_deg : float
        In-plane rotation, counter-clockwise from +x (Rx, kx) towards +y.
    x_direction : (3,) tuple of int, optional
        Direct-lattice direction that points along lab +x before the in-plane
        rotation (must be perpendicular to the zone axis). Default: ``a`` (or
        ``b`` if ``a`` is along the zone axis) projected onto the image plane.
    thickness_A : float
        Crystal thickness along the beam.
    debye_waller_A2 : float
        Isotropic Debye-Waller B factor.
    name : str
        Label for reports.

    Examples
    --------
    >>> g = Grain.preset("Si", zone_axis=(0, 1, 1), rotation_deg=10)
    >>> g.name, g.lattice[0]
    ('Si', 5.431)
    """

    lattice: tuple[float, float, float, float, float, float] = (5.431, 5.431, 5.431, 90.0, 90.0, 90.0)
    atoms: tuple[tuple[float, float, float, float], ...] = PRESETS["Si"][1]
    zone_axis: tuple[int, int, int] = (0, 0, 1)
    rotation_deg: float = 0.0
    x_direction: tuple[int, int, int] | None = None
    thickness_A: float = 50.0
    debye_waller_A2: float = 0.5
    name: str = "Si"

    def __post_init__(self) -> None:
        s = object.__setattr__
        lat = tuple(float(v) for v in self.lattice)
        if len(lat) != 6 or min(lat[:3]) <= 0 or not all(0 < v < 180 for v in lat[3:]):
            raise ParameterError(
                f"lattice must be (a, b, c, alpha, beta, gamma) with a, b, c > 0 Å and angles in (0, 180) deg, "
                f"got {self.lattice!r}", field="lattice")
        s(self, "lattice", lat)
        atoms = tuple(tuple(float(v) for v in at) for at in self.atoms)
        if not atoms or any(len(at) != 4 or at[0] < 1 for at in atoms):
            raise ParameterError("atoms must be a non-empty sequence of (Z, x, y, z) with Z >= 1", field="atoms")
        s(self, "atoms", atoms)
        for fname in ("zone_axis", "x_direction"):
            v = getattr(self, fname)
            if v is None:
                continue
            v = tuple(int(round(x)) for x in v)
            if len(v) != 3 or v == (0, 0, 0):
                raise ParameterError(f"{fname} must be three integers [u v w], not all zero, got {v!r}", field=fname)
            s(self, fname, v)
        for fname in ("thickness_A", "debye_waller_A2"):
            v = float(getattr(self, fname))
            if not (v >= 0 and math.isfinite(v)) or (fname == "thickness_A" and v == 0):
                raise ParameterError(f"{fname} must be a positive number, got {v!r}", field=fname)
            s(self, fname, v)
        s(self, "rotation_deg", float(self.rotation_deg))

    @classmethod
    def preset(cls, name: str, **changes: object) -> "Grain":
        """A grain of a built-in cubic crystal (see :data:`PRESETS`), with field overrides."""
        if name not in PRESETS:
            raise ParameterError(f"unknown crystal preset {name!r}; allowed: {', '.join(PRESETS)}", field="name")
        a, atoms = PRESETS[name]
        changes.setdefault("name", name)
        return cls(lattice=(a, a, a, 90.0, 90.0, 90.0), atoms=atoms, **changes)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> "Grain":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def direct_matrix(self) -> np.ndarray:
        """(3, 3) rows are the lattice vectors a, b, c in Cartesian crystal coordinates (Å)."""
        return direct_cell_matrix(self.lattice)

    @property
    def volume_A3(self) -> float:
        """Unit-cell volume."""
        return float(abs(np.linalg.det(self.direct_matrix)))


def orientation_matrix(grain: Grain) -> np.ndarray:
    """Rotation R with ``lab = R @ crystal``; rows are lab x, y, z in crystal coordinates.

    Lab z is the zone axis (beam), lab x the ``x_direction`` (rotated by
    ``rotation_deg`` counter-clockwise about z), lab y = z × x.

    Returns
    -------
    (3, 3) float array

    Examples
    --------
    >>> R = orientation_matrix(Grain.preset("Si", zone_axis=(0, 1, 1)))
    >>> np.round(R[1], 4).tolist()
    [0.0, 0.7071, -0.7071]
    """
    A = grain.direct_matrix
    z = np.asarray(grain.zone_axis, float) @ A
    z /= np.linalg.norm(z)
    if grain.x_direction is not None:
        x = np.asarray(grain.x_direction, float) @ A
        if abs(x @ z) > 1e-6 * np.linalg.norm(x):
            raise ParameterError(
                f"x_direction {grain.x_direction} is not perpendicular to zone_axis {grain.zone_axis}",
                field="x_direction")
    else:
        x = A[0] - (A[0] @ z) * z
        if np.linalg.norm(x) < 1e-6 * np.linalg.norm(A[0]):
            x = A[1] - (A[1] @ z) * z
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R0 = np.stack([x, y, z])
    t = math.radians(grain.rotation_deg)
    Rz = np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return Rz @ R0


def _scattering_factor(Z: float, q: np.ndarray, energy_eV: float, B: float) -> np.ndarray:
    """Electron scattering amplitude in Å at spatial frequency q = |g| (1/Å)."""
    a = 0.885 * _A0 * Z ** (-1.0 / 3.0)
    gamma = 1.0 + energy_eV / _M0C2_EV
    return gamma * 2.0 * Z * a * a / (_A0 * (1.0 + (2.0 * math.pi * q * a) ** 2)) * np.exp(-B * (q / 2.0) ** 2)


def reflections(
    grain: Grain,
    g_max: float,
    energy_eV: float,
    wavelength_A: float,
    *,
    relative_cutoff: float = 1e-8,
) -> dict[str, np.ndarray]:
    """Zero-order Laue zone reflections of a grain with kinematic intensities.

    Parameters
    ----------
    grain : Grain
    g_max : float
        Largest |g| kept, in 1/Å.
    energy_eV, wavelength_A : float
        Beam energy and electron wavelength.
    relative_cutoff : float
        Reflections with ``|F|^2`` below this fraction of the largest are
        dropped (kinematically forbidden ones have ``|F|^2 ~ 1e-30``).

    Returns
    -------
    dict
        ``hkl`` (n, 3) int, ``g`` (n, 2) lab-frame in-plane vectors in 1/Å,
        ``F2`` (n,) ``|F_g|^2`` in Å^2, ``volume`` cell volume in Å^3.

    Examples
    --------
    >>> r = reflections(Grain.preset("Si"), 1.2, 300e3, 0.0197)
    >>> [1, 0, 0] in np.abs(r["hkl"]).tolist() or [2, 0, 0] in np.abs(r["hkl"]).tolist()
    False
    >>> [2, 2, 0] in r["hkl"].tolist()
    True
    """
    A = grain.direct_matrix
    Bm = np.linalg.inv(A).T  # rows: reciprocal vectors (no 2 pi)
    n = int(math.ceil(g_max * float(np.max(np.linalg.norm(A, axis=1))))) + 1
    rng = np.arange(-n, n + 1)
    hkl = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[(hkl @ np.asarray(grain.zone_axis) == 0) & np.any(hkl != 0, axis=1)]
    g_cryst = hkl @ Bm
    q = np.linalg.norm(g_cryst, axis=1)
    keep = q <= g_max
    hkl, g_cryst, q = hkl[keep], g_cryst[keep], q[keep]
    F = np.zeros(len(hkl), complex)
    for Z, x, y, z in grain.atoms:
        F += _scattering_factor(Z, q, energy_eV, grain.debye_waller_A2) * np.exp(
            2j * np.pi * (hkl @ np.array([x, y, z])))
    F2 = np.abs(F) ** 2
    keep = F2 > relative_cutoff * (F2.max() if len(F2) else 0.0)
    g_lab = g_cryst[keep] @ orientation_matrix(grain).T
    return {"hkl": hkl[keep].astype(np.int64), "g": g_lab[:, :2].copy(), "F2": F2[keep], "volume": grain.volume_A3}


def kinematic_intensity(F2: np.ndarray, g: np.ndarray, grain: Grain, wavelength_A: float, volume: float) -> np.ndarray:
    """``(lambda |F| t / V)^2 sinc^2(pi t s)`` with ``s = -lambda |g|^2 / 2``; g (..., 2) in 1/Å."""
    t = grain.thickness_A
    s = -0.5 * wavelength_A * np.sum(g * g, axis=-1)
    return (wavelength_A * t / volume) ** 2 * F2 * np.sinc(t * s) ** 2  # np.sinc(x) = sin(pi x)/(pi x)


def lattice_basis(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two reciprocal basis vectors g1, g2 of the allowed reflections.

    g1 is the shortest allowed g (ties: smallest angle in [0, 360) from +x);
    g2 the shortest one not collinear with g1 (ties: smallest clockwise angle
    from g1). For Si [001] this gives g1 = (220), g2 = (2-20).

    Parameters
    ----------
    g : (n, 2) array
        Allowed reflections in 1/Å.

    Returns
    -------
    g1, g2 : (2,) arrays
    """
    if len(g) < 2:
        raise ParameterError("the grain has fewer than two allowed reflections in its zone; widen g_max")
    q = np.linalg.norm(g, axis=1)
    tol = 1e-6 * q.max()
    ang = np.mod(np.degrees(np.arctan2(g[:, 1], g[:, 0])) + 1e-9, 360.0)
    shortest = np.flatnonzero(q < q.min() + tol)
    i1 = shortest[np.argmin(ang[shortest])]
    g1 = g[i1]
    cross = g1[0] * g[:, 1] - g1[1] * g[:, 0]
    ok = np.abs(cross) > 1e-6 * q * q[i1]
    q2 = np.where(ok, q, np.inf)
    cand = np.flatnonzero(q2 < q2.min() + tol)
    cw = np.mod(ang[i1] - ang[cand], 360.0)
    g2 = g[cand[np.argmin(cw)]]
    return g1.copy(), g2.copy()
