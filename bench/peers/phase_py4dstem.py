"""py4DSTEM 0.14.18 DPC and Parallax on cubes written by bench/bench_phase.py.

Run with the py4DSTEM venv's python. Input: ``--dpc`` and ``--parallax`` .npz files with
``data`` (Rx, Ry, Qx, Qy) float32 or uint16, ``real_step_A``, ``reciprocal_step_mrad``, ``energy_eV``,
``convergence_mrad``, ``rotation_deg``. Saves the DPC phase and the parallax fit to
``<out>.npz`` and prints ``FOURD_BENCH_RESULT {json}`` with compute times and peak RSS
(plots and progress bars switched off; the rotation is forced to the known one, as ours is
taken from the calibration).
"""

import argparse
import json
import resource
import time
import warnings

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--dpc", required=True)
p.add_argument("--parallax", default=None, help="also run Parallax on this cube")
p.add_argument("--repeat", type=int, default=1, help="DPC: median of this many runs after a warm-up run")
p.add_argument("--out", required=True)
a = p.parse_args()

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import py4DSTEM
from py4DSTEM.process.phase import DPC, Parallax

warnings.simplefilter("ignore")


def rss_mib():
    # VmHWM: this process's own peak (ru_maxrss would include the parent's peak across exec)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cube(path):
    d = np.load(path)
    dc = py4DSTEM.DataCube(data=d["data"])
    dc.calibration.set_R_pixel_size(float(d["real_step_A"]))
    dc.calibration.set_R_pixel_units("A")
    dc.calibration.set_Q_pixel_size(float(d["reciprocal_step_mrad"]))
    dc.calibration.set_Q_pixel_units("mrad")
    return dc, d


out = {"version": py4DSTEM.__version__}
dc, d = cube(a.dpc)
rss0 = rss_mib()


def run_dpc():
    t0, c0 = time.perf_counter(), time.process_time()
    dpc = DPC(datacube=dc, energy=float(d["energy_eV"]), verbose=False)
    dpc.preprocess(force_com_rotation=-float(d["rotation_deg"]), force_com_transpose=False,
                   plot_center_of_mass=False, plot_rotation=False)
    dpc.reconstruct(max_iter=64, progress_bar=False)
    return time.perf_counter() - t0, time.process_time() - c0, dpc


times, cpu = [], []
dpc = None
for _ in range(a.repeat + (a.repeat > 1)):
    dpc = None  # the previous run's object does not count towards this run's memory
    t, c, dpc = run_dpc()
    times.append(t)
    cpu.append(c)
out["dpc_first_s"] = times[0]
out["dpc_s"] = float(np.median(times[1:] if a.repeat > 1 else times))
out["dpc_cpu_s"] = float(np.median(cpu[1:] if a.repeat > 1 else cpu))
out["dpc_rss_mib"] = [rss0, rss_mib()]
phase = np.asarray(dpc.object_phase)
plt.close("all")

if a.parallax is None:
    np.savez(a.out + ".npz", dpc_phase=phase)
    print("FOURD_BENCH_RESULT " + json.dumps(out))
    raise SystemExit(0)
dc, d = cube(a.parallax)
rss0 = rss_mib()
t0 = time.perf_counter()
par = Parallax(energy=float(d["energy_eV"]), datacube=dc, verbose=False)
par.preprocess(plot_average_bf=False, force_rotation_angle_deg=-float(d["rotation_deg"]))
par.reconstruct(plot_aligned_bf=False, plot_convergence=False, progress_bar=False)
t_align = time.perf_counter() - t0
par.aberration_fit(plot_CTF_comparison=False, plot_BF_shifts_comparison=False)
out["parallax_s"] = time.perf_counter() - t0
out["parallax_align_s"] = t_align
out["parallax_rss_mib"] = [rss0, rss_mib()]
plt.close("all")
fit = {}
for name in ("aberrations_C1", "aberrations_C12a", "aberrations_C12b", "rotation_Q_to_R_rads", "transpose"):
    if hasattr(par, name):
        v = getattr(par, name)
        fit[name] = float(v) if np.isscalar(v) else str(v)
for name in ("aberrations_dict_polar", "aberrations_dict_cartesian"):
    try:
        fit[name] = {str(k): float(v) for k, v in getattr(par, name).items() if np.isscalar(v)}
    except Exception as exc:  # the container differs between versions
        fit[name] = repr(exc)
out["parallax_fit"] = fit
np.savez(a.out + ".npz", dpc_phase=phase)
print("FOURD_BENCH_RESULT " + json.dumps(out))
