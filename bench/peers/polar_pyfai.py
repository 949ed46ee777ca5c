"""pyFAI ``integrate2d`` (full pixel splitting, CSR) on a cube written by bench/bench_polar.py.

Run with the pyFAI venv's python (``python -m venv /work/venvs/pyfai && /work/venvs/pyfai/bin/pip
install pyFAI``). Geometry: 1 px = 0.1 mm at 1 m, radius unit ``r_mm`` (the radius on the
detector, no angle), no solid-angle correction, so bins match ours: radius 0..qmax px in ``qstep``,
``n-annular`` azimuthal bins. Every pattern of the cube is integrated once after one warm-up; prints
``FOURD_BENCH_RESULT {json}`` and saves the 1-D profile of pattern (0, 0) to ``--out``.
"""

import argparse
import json
import time

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--npy", required=True)
p.add_argument("--origin", nargs=2, type=float, required=True)
p.add_argument("--qmax", type=float, required=True)
p.add_argument("--qstep", type=float, default=1.0)
p.add_argument("--n-annular", type=int, default=180)
p.add_argument("--out", required=True)
a = p.parse_args()

import pyFAI
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

data = np.load(a.npy, mmap_mode="r")
px = 1e-4
det = Detector(pixel1=px, pixel2=px, max_shape=data.shape[2:])
# pyFAI's PONI is measured from the detector's corner: pixel i's centre is at (i + 0.5) px
ai = AzimuthalIntegrator(dist=1.0, poni1=(a.origin[0] + 0.5) * px, poni2=(a.origin[1] + 0.5) * px, detector=det)
npt = int(round(a.qmax / a.qstep))
kw = dict(unit="r_mm", radial_range=(0, a.qmax * px * 1e3), correctSolidAngle=False, method=("full", "csr", "cython"))
flat = data.reshape(-1, *data.shape[2:])
ai.integrate2d(np.array(flat[0], np.float32), npt, a.n_annular, **kw)  # builds the CSR table
t0 = time.perf_counter()
for img in flat:
    ai.integrate2d(np.array(img, np.float32), npt, a.n_annular, **kw)
dt = time.perf_counter() - t0
r1 = ai.integrate1d(np.array(flat[0], np.float32), npt, **kw)
np.savez(a.out, radius_px=r1.radial / (px * 1e3), intensity=r1.intensity)
print("FOURD_BENCH_RESULT " + json.dumps({"version": pyFAI.version, "integrate2d_s": dt, "patterns": len(flat)}))
