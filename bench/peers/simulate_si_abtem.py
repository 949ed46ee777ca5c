"""Re-simulate Si [001] nanobeam patterns the way the shared abTEM files record they were made.

Runs in the ``abtem`` bench venv (``bash bench/setup_peers.sh abtem``: abTEM 1.0.11, ase 3.29.0),
started by ``bench/bench_strain_resimulated.py``. The settings are the files' own root attributes:
a crystal cut to a periodic 64 Å box, 512 grid points (0.125 Å), ten 2.7155 Å slices, Lobato
potentials with infinite projection, a 300 kV probe of 2.5 mrad (abTEM's soft aperture, no defocus,
no Cs), frozen phonons with σ = 0.075 Å and seed 1. The detector is the central 128 x 128 pixels of
the far field (1/64 Å⁻¹ per pixel). Atom counts agree with the files' ``num_atoms`` for the single
crystals (5525 unstrained, 5565 rotated).

Input: a JSON list of jobs; each is ``{"kind": "crystal" | "bicrystal", "rot_deg", "exx", "fp",
"positions": [[x, y], ...]}`` (positions in Å). Output: one ``.npy`` of shape (jobs' positions, 128,
128), float32, in the order given, and a line ``FOURD_BENCH_RESULT {json}`` with the atom counts.
"""

from __future__ import annotations

import argparse
import json
import sys

import abtem
import ase.build
import numpy as np

BOX = 64.0
A_SI = 5.431
CELLS_Z = 5
FP_SIGMA = 0.075


def crystal(rot_deg: float = 0.0, exx: float = 0.0) -> "ase.Atoms":
    """Si [001] filling the periodic box: rotated about, and stretched along x from, the box centre."""
    n = int(np.ceil(BOX * 1.6 / A_SI)) + 2
    atoms = ase.build.bulk("Si", "diamond", a=A_SI, cubic=True) * (n, n, CELLS_Z)
    xy = atoms.positions[:, :2] - n * A_SI / 2
    t = np.deg2rad(rot_deg)
    xy = xy @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]).T
    xy[:, 0] *= 1.0 + exx
    xy += BOX / 2
    inside = np.all((xy >= 0) & (xy < BOX), axis=1)
    atoms = atoms[inside]
    atoms.positions[:, :2] = xy[inside]
    atoms.cell = [BOX, BOX, CELLS_Z * A_SI]
    atoms.pbc = True
    return atoms


def bicrystal() -> "ase.Atoms":
    """Grain A (x < 32 Å) unrotated, grain B (x >= 32 Å) rotated by +10°, in one periodic box.

    Of two atoms closer than 1.5 Å across a boundary, grain B's goes (this gives the file's 5470 atoms).
    """
    a, b = crystal(), crystal(rot_deg=10.0)
    a, b = a[a.positions[:, 0] < BOX / 2], b[b.positions[:, 0] >= BOX / 2]
    size = np.array([BOX, BOX, CELLS_Z * A_SI])
    gap = b.positions[:, None, :] - a.positions[None, :, :]
    gap -= size * np.round(gap / size)   # periodic: the box edge is a boundary too
    b = b[~np.any(np.einsum("ijk,ijk->ij", gap, gap) < 1.5 ** 2, axis=1)]
    atoms = a + b
    atoms.cell = list(size)
    atoms.pbc = True
    return atoms


def patterns(atoms: "ase.Atoms", positions: np.ndarray, fp: int) -> np.ndarray:
    """(P, 128, 128) far-field intensities, the mean over ``fp`` frozen-phonon configurations."""
    source = abtem.FrozenPhonons(atoms, num_configs=fp, sigmas=FP_SIGMA, seed=1) if fp else atoms
    potential = abtem.Potential(source, gpts=512, slice_thickness=CELLS_Z * A_SI / 10,
                                parametrization="lobato", projection="infinite")
    probe = abtem.Probe(energy=300e3, semiangle_cutoff=2.5, defocus=0.0, Cs=0.0)
    probe.grid.match(potential)
    found = probe.multislice(potential, scan=abtem.CustomScan(positions),
                             detectors=abtem.PixelatedDetector(max_angle=None))
    arr = np.asarray(found.compute(progress_bar=False).array)
    if fp and arr.ndim == 4:   # an ensemble axis first, where abTEM has not already averaged it
        arr = arr.mean(axis=0)
    centre = arr.shape[-1] // 2   # abTEM puts the zero frequency there
    keep = centre + np.arange(128) - 64
    return arr[..., keep[:, None], keep[None, :]].reshape(-1, 128, 128).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", required=True, help="JSON file with the list of jobs")
    p.add_argument("--out", required=True, help="where to save the patterns (.npy)")
    args = p.parse_args()
    with open(args.jobs) as f:
        jobs = json.load(f)
    out, counts = [], []
    for job in jobs:
        atoms = bicrystal() if job["kind"] == "bicrystal" else crystal(job.get("rot_deg", 0.0),
                                                                          job.get("exx", 0.0))
        counts.append(len(atoms))
        out.append(patterns(atoms, np.asarray(job["positions"], float), int(job["fp"])))
        print(f"job {len(out)}/{len(jobs)}: {len(job['positions'])} positions", file=sys.stderr, flush=True)
    np.save(args.out, np.concatenate(out))
    print("FOURD_BENCH_RESULT " + json.dumps({"num_atoms": counts, "abtem": abtem.__version__}), flush=True)


if __name__ == "__main__":
    main()
