"""py4DSTEM 0.14.18 SingleslicePtychography's peak memory on (a crop of) a uint16 HDF5 file, under a cap.

Run with the py4DSTEM venv's python (bench/bench_ptycho.py --peer-memory starts it)::

    python ptycho_py4dstem_memory.py --h5 big.h5 --crop 64 --iterations 2 --batch 256 --cap-gib 20 [--lean]

Reads ``data[:crop, :crop]`` of the file written by bench_ptycho.py (py4DSTEM holds the cube in
memory; it cannot stream it), caps the process's address space at ``--cap-gib`` GiB
(``RLIMIT_AS``, so that a run the machine cannot hold fails with a MemoryError instead of
pushing other processes out), and runs the settings of ptycho_py4dstem.py (potential object,
gradient descent, regularisers off, rotation forced to 0), with py4DSTEM's defaults or, with ``--lean``,
its memory-saving options (preprocess in batches, COM pattern by pattern, in place). After each stage it prints
``FOURD_STAGE {json}`` with the peak RSS so far (VmHWM), flushed, so the parent sees how far a run
got even when it dies; at the end ``FOURD_BENCH_RESULT {json}`` with ``ok`` and, on failure, the
exception and the innermost py4DSTEM frame it came from.
"""

import argparse
import json
import resource
import sys
import time
import traceback
import warnings

p = argparse.ArgumentParser()
p.add_argument("--h5", required=True)
p.add_argument("--crop", type=int, required=True)
p.add_argument("--iterations", type=int, default=2)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--cap-gib", type=float, default=20.0)
p.add_argument("--lean", action="store_true",
               help="py4DSTEM's memory-saving options: preprocess in batches of --batch, COM pattern by pattern, "
                    "the datacube modified in place (store_initial_arrays=False would save more, but "
                    "reconstruct(reset=True) then fails for want of _object_initial)")
a = p.parse_args()

cap = int(a.cap_gib * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


T0 = time.perf_counter()
stages = []


def stage(name: str) -> None:
    s = {"stage": name, "peak_rss_mib": status("VmHWM"), "rss_mib": status("VmRSS"),
         "vm_mib": status("VmSize"), "t_s": time.perf_counter() - T0}
    stages.append(s)
    print("FOURD_STAGE " + json.dumps(s), flush=True)


out = {"crop": a.crop, "cap_gib": a.cap_gib, "iterations": a.iterations, "batch": a.batch, "lean": a.lean}
lean = dict(max_batch_size=a.batch, vectorized_com_calculation=False,
            in_place_datacube_modification=True) if a.lean else {}
try:
    import h5py
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import py4DSTEM
    from py4DSTEM.process.phase import SingleslicePtychography

    warnings.simplefilter("ignore")
    out["version"] = py4DSTEM.__version__
    stage("imported")
    with h5py.File(a.h5, "r") as f:
        data = f["data"][: a.crop, : a.crop]
        real_step = float(f.attrs["real_step_A"])
        q_step = float(f.attrs["reciprocal_step_mrad"])
    out["data_mib"] = data.nbytes / 2**20
    dc = py4DSTEM.DataCube(data=data)
    dc.calibration.set_R_pixel_size(real_step)
    dc.calibration.set_R_pixel_units("A")
    dc.calibration.set_Q_pixel_size(q_step)
    dc.calibration.set_Q_pixel_units("mrad")
    stage("data loaded")
    pty = SingleslicePtychography(energy=300e3, datacube=dc, semiangle_cutoff=20.0, object_type="potential",
                                  device="cpu", verbose=False)
    pty.preprocess(plot_center_of_mass=False, plot_rotation=False, plot_probe_overlaps=False,
                   force_com_rotation=0.0, force_com_transpose=False, fit_function="constant", **lean)
    stage("preprocessed")
    for i in range(a.iterations):
        pty.reconstruct(num_iter=1, max_batch_size=a.batch, step_size=1.0, seed_random=0, reset=i == 0,
                        progress_bar=False, gaussian_filter=False, butterworth_filter=False, tv_denoise=False,
                        object_positivity=False, fix_potential_baseline=False, fix_probe_com=True)
        stage(f"iteration {i + 1}")
    out["ok"] = True
except BaseException as e:  # MemoryError under the cap, or whatever py4DSTEM raises when numpy cannot allocate
    tb = traceback.extract_tb(e.__traceback__)
    inner = [fr for fr in tb if "py4DSTEM" in fr.filename] or tb
    fr = inner[-1]
    out.update(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}",
               where=f"{fr.filename.split('site-packages/')[-1]}:{fr.lineno} in {fr.name}: {fr.line}",
               stack=[f"{x.filename.split('site-packages/')[-1]}:{x.lineno} {x.name}" for x in tb[-6:]])
    stage("failed")
out["stages"] = stages
out["peak_rss_mib"] = status("VmHWM")
print("FOURD_BENCH_RESULT " + json.dumps(out), flush=True)
sys.exit(0)
