"""``sample(name)``: ready-made simulated scenes with ground truth.

=====================  ==========================================================  ===========
name                   scene                                                       dose (e/probe)
=====================  ==========================================================  ===========
strained_crystal       Si [001]; e_xx rising 0 -> 1 % along Rx, a local bump in     noise-free
                       e_yy / e_xy / rotation, a little linear descan
bicrystal              Si [001], grain 0 at 0 deg for rx < Rx/2, grain 1 at +10   noise-free
polycrystal            six Si grains ([001], [011], [111], [112], rotated) on a     5e5
                       Voronoi map, thin amorphous layer on the boundaries
amorphous_film         amorphous film with four 4 nm Si nanocrystals                2e5
gold_nanoparticles     Au particles on amorphous carbon; beam stop, elliptic        1e6
                       distortion and descan (a calibration scene)
vacuum_probe           no specimen: the bare probe with descan                      noise-free
=====================  ==========================================================  ===========

Every scene is 64 x 64 x 128 x 128 by default (``small=True`` gives a 16 x 16
scan); keyword overrides go to :func:`~fourd_widgets.datasets.simulate`
(``dose=None`` for expected values). A given seed gives the same data.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..core.datacube import DataCube
from ..core.errors import ParameterError
from .crystal import Grain
from .simulate import _shape2, _voronoi, simulate
from .truth import GroundTruth

__all__ = ["sample", "sample_names"]

Scene = Callable[[tuple[int, int], np.random.Generator], dict[str, Any]]


def _grid(scan_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Scan coordinates scaled to [0, 1]."""
    rx, ry = np.meshgrid(np.linspace(0, 1, scan_shape[0]), np.linspace(0, 1, scan_shape[1]), indexing="ij")
    return rx, ry


def _bump(scan_shape: tuple[int, int], cx: float, cy: float, width: float) -> np.ndarray:
    rx, ry = _grid(scan_shape)
    return np.exp(-((rx - cx) ** 2 + (ry - cy) ** 2) / (2 * width**2))


def _linear_descan(scan_shape: tuple[int, int], total_x: float, total_y: float) -> np.ndarray:
    """(2, 3) descan moving the origin by (total_x, total_y) px over the scan diagonal."""
    sx, sy = max(scan_shape[0] - 1, 1), max(scan_shape[1] - 1, 1)
    return np.array([[0.7 * total_x / sx, 0.3 * total_x / sy, 0.0], [-0.2 * total_y / sx, 1.2 * total_y / sy, 0.0]])


def _strained_crystal(scan_shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    rx, _ = _grid(scan_shape)
    bump = _bump(scan_shape, 0.6, 0.4, 0.12)
    return {
        "grains": [Grain.preset("Si", thickness_A=50.0)],
        "strain": {"exx": 0.01 * rx, "eyy": 0.005 * bump, "exy": 0.002 * bump, "rotation_deg": 0.3 * bump},
        "descan": _linear_descan(scan_shape, 1.5, 1.0),
    }


def _bicrystal(scan_shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    gmap = np.zeros(scan_shape, dtype=np.int32)
    gmap[scan_shape[0] // 2:] = 1
    return {
        "grains": [Grain.preset("Si"), Grain.preset("Si", rotation_deg=10.0)],
        "grain_map": gmap,
    }


def _polycrystal(scan_shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    zones = [((0, 0, 1), 0.0), ((0, 1, 1), 15.0), ((1, 1, 1), 40.0), ((0, 0, 1), 30.0),
             ((1, 1, 2), -20.0), ((0, 1, 1), -35.0)]
    grains = [Grain.preset("Si", zone_axis=z, rotation_deg=r) for z, r in zones]
    gmap = _voronoi(scan_shape, len(grains), rng)
    edge = np.zeros(scan_shape, dtype=bool)
    edge[1:] |= gmap[1:] != gmap[:-1]
    edge[:-1] |= gmap[1:] != gmap[:-1]
    edge[:, 1:] |= gmap[:, 1:] != gmap[:, :-1]
    edge[:, :-1] |= gmap[:, 1:] != gmap[:, :-1]
    return {"grains": grains, "grain_map": gmap, "amorphous": 0.3 * edge, "background": 0.03, "dose": 5e5}


def _particles(scan_shape: tuple[int, int], rng: np.random.Generator, n: int, radius: float,
               grains: list[Grain]) -> np.ndarray:
    """Grain map with n disks of the given radius (fraction of the scan) at random non-overlapping places."""
    rx, ry = _grid(scan_shape)
    gmap = np.full(scan_shape, -1, dtype=np.int32)
    centres: list[tuple[float, float]] = []
    tries = 0
    while len(centres) < n:
        a, b = rng.uniform(radius, 1 - radius, 2)
        tries += 1
        if tries > 1000 or all((a - x) ** 2 + (b - y) ** 2 > (2.2 * radius) ** 2 for x, y in centres):
            centres.append((float(a), float(b)))
    for i, (a, b) in enumerate(centres):
        gmap[(rx - a) ** 2 + (ry - b) ** 2 <= radius**2] = i % len(grains)
    return gmap


def _amorphous_film(scan_shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    zones = [((0, 1, 1), 0.0), ((0, 0, 1), 20.0), ((1, 1, 1), 0.0), ((1, 1, 2), 50.0)]
    grains = [Grain.preset("Si", zone_axis=z, rotation_deg=r, thickness_A=40.0) for z, r in zones]
    return {"grains": grains, "grain_map": _particles(scan_shape, rng, 4, 0.1, grains), "amorphous": 1.0,
            "amorphous_strength": 0.25, "background": 0.03, "dose": 2e5}


def _gold_nanoparticles(scan_shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    zones = [(0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2), (0, 1, 1)]
    grains = [Grain.preset("Au", zone_axis=z, rotation_deg=float(rng.uniform(-45, 45)), thickness_A=40.0)
              for z in zones]
    return {
        "grains": grains, "grain_map": _particles(scan_shape, rng, 5, 0.12, grains), "amorphous": 0.4,
        "amorphous_rings": ((0.47, 0.05, 1.0), (0.85, 0.07, 0.5)), "background": 0.04,
        "beam_stop": True, "ellipse": (1.02, 0.98, 30.0), "descan": _linear_descan(scan_shape, 2.0, -1.5),
        "dose": 1e6,
    }


def _vacuum_probe(scan_shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    return {"grains": [], "descan": _linear_descan(scan_shape, 2.5, 1.5)}


_SCENES: dict[str, Scene] = {
    "strained_crystal": _strained_crystal,
    "bicrystal": _bicrystal,
    "polycrystal": _polycrystal,
    "amorphous_film": _amorphous_film,
    "gold_nanoparticles": _gold_nanoparticles,
    "vacuum_probe": _vacuum_probe,
}


def sample_names() -> list[str]:
    """Names accepted by :func:`sample`.

    Examples
    --------
    >>> sample_names()[:2]
    ['strained_crystal', 'bicrystal']
    """
    return list(_SCENES)


def sample(name: str, *, small: bool = False, **overrides: Any) -> tuple[DataCube, GroundTruth]:
    """A ready-made simulated scene and its ground truth.

    Parameters
    ----------
    name : str
        One of :func:`sample_names`.
    small : bool
        A 16 x 16 scan instead of 64 x 64 (for tests and doctests).
    **overrides
        Any :func:`~fourd_widgets.datasets.simulate` argument, e.g.
        ``scan_shape=(32, 32)``, ``dose=None``, ``seed=3``. Scene maps (strain,
        grains) are laid out on the requested scan shape.

    Returns
    -------
    cube : DataCube
    truth : GroundTruth

    Examples
    --------
    >>> cube, truth = sample("vacuum_probe", scan_shape=(2, 3), detector_shape=(32, 32), reciprocal_step=0.05)
    >>> cube.shape, cube.metadata["sample"]
    ((2, 3, 32, 32), 'vacuum_probe')
    """
    if name not in _SCENES:
        raise ParameterError(f"unknown sample {name!r}; allowed: {', '.join(_SCENES)}", field="name")
    scan_shape = overrides.pop("scan_shape", (16, 16) if small else (64, 64))
    seed = overrides.get("seed", 0)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    shape = _shape2("scan_shape", scan_shape)
    kwargs = _SCENES[name](shape, np.random.default_rng([int(seed), 7]))
    kwargs.update(overrides)
    cube, truth = simulate(shape, **kwargs)
    cube.metadata["sample"] = name
    return cube, truth
