"""py4DSTEM 0.14.18 SingleslicePtychography on a cube written by bench/bench_ptycho.py.

Run with the py4DSTEM venv's python. Input: ``--data`` .npz with ``data`` (Rx, Ry, Qx, Qy)
float32, ``real_step_A``, ``reciprocal_step_mrad``, ``energy_eV``, ``convergence_mrad``.
Reconstructs a potential object with gradient descent, ``--batch`` positions per update, every
regulariser and constraint off (no Gaussian/Butterworth/TV filters, no positivity, no baseline,
no probe constraints), rotation forced to 0 (as ours is read from the calibration), and saves
the object, the centred probe and the positions (Å) to ``--out``. Prints
``FOURD_BENCH_RESULT {json}`` with the preprocess and reconstruct times and the peak RSS.
"""

import argparse
import json
import resource
import time
import warnings

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--out", required=True)
p.add_argument("--iterations", type=int, default=4)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--step", type=float, default=1.0)
a = p.parse_args()

import matplotlib

matplotlib.use("Agg")

import py4DSTEM
from py4DSTEM.process.phase import SingleslicePtychography

warnings.simplefilter("ignore")


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


d = np.load(a.data)
dc = py4DSTEM.DataCube(data=d["data"])
dc.calibration.set_R_pixel_size(float(d["real_step_A"]))
dc.calibration.set_R_pixel_units("A")
dc.calibration.set_Q_pixel_size(float(d["reciprocal_step_mrad"]))
dc.calibration.set_Q_pixel_units("mrad")
rss0 = rss_mib()
t0 = time.perf_counter()
pty = SingleslicePtychography(energy=float(d["energy_eV"]), datacube=dc,
                              semiangle_cutoff=float(d["convergence_mrad"]), object_type="potential",
                              device="cpu", verbose=False)
pty.preprocess(plot_center_of_mass=False, plot_rotation=False, plot_probe_overlaps=False,
               force_com_rotation=0.0, force_com_transpose=False, fit_function="constant")
t1, c1 = time.perf_counter(), time.process_time()
pty.reconstruct(num_iter=a.iterations, max_batch_size=a.batch, step_size=a.step, seed_random=0,
                reset=True, progress_bar=False, gaussian_filter=False, butterworth_filter=False, tv_denoise=False,
                object_positivity=False, fix_potential_baseline=False, fix_probe_com=True)
t2, c2 = time.perf_counter(), time.process_time()
obj = np.asarray(pty.object)
probe = np.asarray(pty.probe_centered)
positions = np.asarray(pty.positions)  # Å, in the object's frame
np.savez(a.out, object=obj, probe=probe, positions_A=positions,
         sampling_A=np.asarray(pty.sampling, float), error=np.asarray(getattr(pty, "error_iterations", [])))
print("FOURD_BENCH_RESULT " + json.dumps({
    "version": py4DSTEM.__version__, "preprocess_s": t1 - t0, "reconstruct_s": t2 - t1,
    "per_iteration_s": (t2 - t1) / a.iterations,
    "per_iteration_cpu_s": (c2 - c1) / a.iterations, "rss_mib": [rss0, rss_mib()]}))
