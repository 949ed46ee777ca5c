"""py4DSTEM 0.14.18 ``PolarDatacube.calculate_radial_statistics`` on a cube written by bench/bench_polar.py.

Run with the py4DSTEM venv's python. Input: a float32 ``.npy`` cube (Rx, Ry, Qx, Qy) and the
origin; bins as given (``--qmax --qstep --n-annular``). Saves ``radial_mean, radial_var,
radial_var_norm, qq`` to ``--out`` and prints one line ``FOURD_BENCH_RESULT {json}`` with the
time of ``calculate_radial_statistics`` (one run, progress bar and plots off).
"""

import argparse
import json
import time
import warnings

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--npy", required=True)
p.add_argument("--origin", nargs=2, type=float, required=True)
p.add_argument("--qmax", type=float, required=True)
p.add_argument("--qstep", type=float, default=1.0)
p.add_argument("--n-annular", type=int, default=180)
p.add_argument("--out", required=True)
a = p.parse_args()

import matplotlib

matplotlib.use("Agg")
import py4DSTEM

warnings.simplefilter("ignore")
data = np.load(a.npy, mmap_mode="r")
dc = py4DSTEM.DataCube(np.ascontiguousarray(data))
dc.calibration.set_origin((a.origin[0], a.origin[1]))
pdc = py4DSTEM.PolarDatacube(dc, qmin=0.0, qmax=a.qmax, qstep=a.qstep, n_annular=a.n_annular, ellipse=False)
t0, c0 = time.perf_counter(), time.process_time()
mean, var, var_norm = pdc.calculate_radial_statistics(returnval=True, progress_bar=False)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
np.savez(a.out, radial_mean=mean, radial_var=var, radial_var_norm=var_norm, qq=np.asarray(pdc.qq))
print("FOURD_BENCH_RESULT " + json.dumps({"version": py4DSTEM.__version__, "radial_statistics_s": dt, "cpu_s": cpu,
                                          "patterns": int(data.shape[0] * data.shape[1])}))
