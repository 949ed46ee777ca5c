"""Phase from 4D-STEM: fourd_widgets DPC/iDPC, parallax and SSB vs py4DSTEM 0.14.18 DPC and Parallax.

    python bench/bench_phase.py [--venvs /work/venvs] [--scan 64]
    python bench/bench_phase.py --tuner      # only the PhaseTuner budget (no py4DSTEM)
    python bench/bench_phase.py --dpc-only   # only DPC, float32 and uint16 copies of the cube
    python bench/bench_phase.py --dpc-profile  # where one DPC call of ours spends its time (no py4DSTEM)

Data, the same for both programs, from ``fw.datasets.phase.simulate_phase``:

* DPC: SrTiO3 [001] weak-phase object (0.3 rad), 20 mrad, 1 mrad/px, ``scan x scan`` x 96x96,
  0.244 Å steps, scan rotation 30°;
* parallax: an amorphous film (1 rad), 15 mrad, 0.5 mrad/px, 48x48 x 96x96, 0.8 Å steps,
  C10 = −300 Å, C12 = 60 Å at 25°, scan rotation 30°.

Both get the rotation (ours from the calibration, py4DSTEM forced). Reports compute time
(ours: median of 3 after one warm-up; py4DSTEM: one run, plots and progress bars off, in a
subprocess of its venv), peak resident memory (``ru_maxrss`` of a fresh process for each),
accuracy against the truth, and the SSB/tcBF preview times of the PhaseTuner budget
(64x64 x 96x96).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def median_time(fn, n=3, clock=time.perf_counter):
    fn()
    ts = []
    for _ in range(n):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return statistics.median(ts)


def rss_mib() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ours_child(kind: str, path: str, repeat: int = 3) -> None:
    """Run one of ours in this (fresh) process and print its time (median of ``repeat`` after a warm-up) and
    peak RSS."""
    from fourd_widgets.analysis.parallax import parallax
    from fourd_widgets.analysis.phase_dpc import dpc
    from fourd_widgets.core.calibration import Calibration
    from fourd_widgets.core.datacube import DataCube

    d = np.load(path)
    cal = Calibration(real_step=float(d["real_step_A"]), reciprocal_step=float(d["reciprocal_step_mrad"]),
                      reciprocal_units="mrad", energy_eV=float(d["energy_eV"]),
                      convergence_semiangle_mrad=float(d["convergence_mrad"]), origin=(48.0, 48.0),
                      rotation_deg=float(d["rotation_deg"]))
    cube = DataCube(d["data"], cal)
    rss0 = rss_mib()
    fn = (lambda: dpc(cube, progress=False)) if kind == "dpc" else (lambda: parallax(cube, bin=2, progress=False))
    t = median_time(fn, max(3, repeat))
    cpu = median_time(fn, max(3, repeat), clock=time.process_time)
    res = fn()
    extra = {}
    if kind == "parallax":
        extra = {"C10": res.aberrations.C10, "C12": res.aberrations.C12, "phi12": res.aberrations.phi12_deg,
                 "rotation": res.rotation_deg}
    else:
        np.save(path + ".ours.npy", res.phase)
    rss = rss_mib()
    print("FOURD_BENCH_RESULT " + json.dumps({"s": t, "cpu_s": cpu, "rss_mib": [rss0, rss], **extra}))


def child(args: list[str], py: str = sys.executable) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([py, *args], capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("FOURD_BENCH_RESULT ")][-1]
    return json.loads(line[len("FOURD_BENCH_RESULT "):])


def tuner_budget(n: int = 64, repeats: int = 20) -> list[str]:
    """PhaseTuner on ``n x n`` x 96x96: compute time of a defocus-slider update through the session.

    Each update recomputes the tcBF and SSB previews from the session's caches (the DPC
    preview does not depend on defocus and is kept); ``compute_times`` is the worker's
    time per update. The two parts are also timed alone on the same caches.
    """
    from fourd_widgets.datasets.phase import simulate_phase
    from fourd_widgets.tools.phase_tuner import PhaseTunerSession
    from fourd_widgets.tools.phase_tuner_compute import parallax_preview
    from fourd_widgets.analysis.ssb import ssb

    cube, _ = simulate_phase(scan_shape=(n, n), scan_step_A=3.905 / 16, C10=60.0)
    t0 = time.perf_counter()
    s = PhaseTunerSession(cube, bin=2).wait()
    first = time.perf_counter() - t0
    s.compute_times.clear()
    for i in range(repeats):
        s.set(C10=20.0 + 5.0 * i).wait()  # one slider step, shown before the next
    update = statistics.median(s.compute_times)
    rec = s.params.steps
    t_ssb = median_time(lambda: ssb(s.cache.ssb, rec[2].replace(C10=rec[2].C10 + 1.0)), 5)
    t_tcbf = median_time(lambda: parallax_preview(s.cache, rec[1].replace(C10=rec[1].C10 + 1.0)), 5)
    n_px, n_groups = len(s.cache.ssb.k), len(s.cache.bright_field.k)
    s.close()
    return [f"PhaseTuner through the session, {n}x{n} x 96x96 (20 mrad, {n_px} bright-field pixels, "
            f"{n_groups} 2x2 groups): a defocus-slider update (tcBF + SSB previews, DPC kept) "
            f"**{update:.2f} s** of compute (median of {repeats}, `session.compute_times`; target ≤ 1 s); "
            f"alone: SSB {t_ssb:.2f} s, tcBF {t_tcbf:.2f} s (median of 5). Opening the tuner (three passes, "
            f"the parallax fit and the first previews): {first:.1f} s."]


def dpc_rows(cube_d, truth_d, tmp: Path, py: Path, n: int, rot: float, repeat: int) -> list[str]:
    """DPC side by side on the same cube as float32 intensities and as uint16 counts (what a detector writes).

    The counts are Poisson draws at ``COUNTS_PER_PATTERN`` electrons per pattern of the same
    intensities. Both programs get each file; the times are medians of ``repeat`` runs after a warm-up
    run (ours: at least 3; py4DSTEM's first run is reported too).
    """
    from fourd_widgets.analysis.phase_common import phase_agreement

    data = np.asarray(cube_d.array)
    counts = np.random.default_rng(0).poisson(data * COUNTS_PER_PATTERN).astype(np.uint16)
    rows = []
    for label, arr in (("float32 intensities", data),
                       (f"uint16 counts ({COUNTS_PER_PATTERN:.0e} e⁻/pattern)", counts)):
        path = str(tmp / f"dpc_{arr.dtype}.npz")
        np.savez(path, data=arr, real_step_A=3.905 / 16, reciprocal_step_mrad=1.0, energy_eV=300e3,
                 convergence_mrad=20.0, rotation_deg=rot)
        ours = child([__file__, "--child", "dpc", path, "--repeat", str(repeat)])
        peer = child([str(HERE / "peers" / "phase_py4dstem.py"), "--dpc", path, "--out", path + ".p4",
                      "--repeat", str(repeat)], py=str(py))
        acc = phase_agreement(np.load(path + ".ours.npy"), truth_d.phase_on_scan, 3.905 / 16)
        rows.append(f"| DPC/iDPC, {label} | {n}x{n} x 96x96 | {ours['s'] * 1e3:.1f} ms | {peer['dpc_s']:.3f} s "
                    f"(first run {peer['dpc_first_s']:.3f} s) | **{peer['dpc_s'] / ours['s']:.1f}x** | "
                    f"{ours['cpu_s'] * 1e3:.1f} ms / {peer['dpc_cpu_s']:.3f} s: "
                    f"{peer['dpc_cpu_s'] / ours['cpu_s']:.1f}x | "
                    f"{ours['rss_mib'][1]:.0f} ({ours['rss_mib'][0]:.0f}) / {peer['dpc_rss_mib'][1]:.0f} "
                    f"({peer['dpc_rss_mib'][0]:.0f}) | ours vs truth {acc[0]:.3f} / {acc[1]:.3f} |")
    return ["| step | data | fourd_widgets | py4DSTEM | ratio | CPU time (all threads) ours / py4DSTEM: ratio | "
            "peak RSS ours / py4DSTEM (MiB) | note |", "|---|---|---|---|---|---|---|---|", *rows]


def dpc_profile(n: int = 64, repeats: int = 30) -> list[str]:
    """Where one DPC call of ours spends its time, in this process (the DPC cube as float32 and uint16).

    One-thread CPU times (``time.thread_time``) are steady under load; wall times are not.
    """
    from fourd_widgets.analysis import phase_common as pc
    from fourd_widgets.analysis.phase_dpc import DPCParams, dpc, dpc_from_com
    from fourd_widgets.core.datacube import DataCube
    from fourd_widgets.datasets.phase import simulate_phase
    from fourd_widgets.engine.job import ImageJob
    from fourd_widgets.engine.run import run_job
    from fourd_widgets.kernels import phase as kp

    class Empty(ImageJob):
        item_shape = (3,)

        def process(self, block, rx, ry):
            return np.zeros(block.shape[:2] + (3,))

    def med(fn, clock=time.perf_counter):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return f"{statistics.median(ts) * 1e3:.2f} (best {min(ts) * 1e3:.2f})"

    cube_d, _ = simulate_phase(scan_shape=(n, n), scan_step_A=3.905 / 16, scan_rotation_deg=30.0)
    data = np.asarray(cube_d.array)
    cal = cube_d.calibration.replace(origin=(48.0, 48.0), rotation_deg=30.0)
    lines = [f"| part (ms, median of {repeats}) | float32 | uint16 |", "|---|---|---|"]
    cols = []
    for arr in (data, np.random.default_rng(0).poisson(data * COUNTS_PER_PATTERN).astype(np.uint16)):
        cube = DataCube(arr, cal)
        Qx, Qy = cube.detector_shape
        lo, hi = np.zeros(Qx, np.int64), np.full(Qx, Qy, np.int64)
        out = np.empty(cube.scan_shape + (3,))
        work = kp.moments_workspace((Qx, Qy), arr.dtype)
        ones = np.ones((Qx, Qy))
        com = pc.center_of_mass(cube, ones, progress=False)
        p = DPCParams()
        row = cube.scan_shape[1] * cube.pattern_nbytes
        cols.append([
            med(lambda: kp.pattern_moments(arr, lo, hi, work, out), time.thread_time),
            med(lambda: pc.center_of_mass(cube, ones, progress=False)),
            med(lambda: run_job(cube, Empty(), chunk_bytes=max(1, n // 8) * row, progress=False)),
            med(lambda: dpc_from_com(com, cal, (Qx, Qy), p), time.thread_time),
            med(lambda: dpc(cube, progress=False)),
        ])
    names = ["moments kernel, one thread, CPU", "centre-of-mass pass through the engine, wall",
             "engine round trip of an empty job (8 blocks), wall",
             "rotation check + integration + result (dpc_from_com), CPU", "dpc(cube), wall"]
    return lines + [f"| {name} | {a} | {b} |" for name, a, b in zip(names, *cols)]


#: Dose of the uint16 copy of the DPC cube (about 80 counts per bright-field pixel: fits uint16).
COUNTS_PER_PATTERN = 1e5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venvs", default=os.environ.get("FOURD_BENCH_VENVS", "/work/venvs"))
    ap.add_argument("--scan", type=int, default=64)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--tuner", action="store_true", help="only the PhaseTuner budget")
    ap.add_argument("--dpc-only", action="store_true", help="only DPC against py4DSTEM (float32 and uint16)")
    ap.add_argument("--dpc-profile", action="store_true", help="where one DPC call of ours spends its time")
    ap.add_argument("--repeat", type=int, default=3, help="DPC runs of each program (median, after a warm-up; ours at least 3)")
    a = ap.parse_args()
    if a.child:
        return ours_child(*a.child, repeat=a.repeat)
    if a.tuner:
        print("\n".join(tuner_budget(a.scan)))
        return None
    if a.dpc_profile:
        print("\n".join(dpc_profile(a.scan)))
        return None

    from fourd_widgets.analysis.aberrations import Aberrations
    from fourd_widgets.analysis.parallax import parallax_prepare, tcbf
    from fourd_widgets.analysis.phase_common import phase_agreement
    from fourd_widgets.analysis.ssb import ssb, ssb_prepare
    from fourd_widgets.datasets.phase import amorphous_phase_object, simulate_phase

    tmp = Path(tempfile.mkdtemp(prefix="fourd_phase_"))
    rot = 30.0
    n = a.scan
    cube_d, truth_d = simulate_phase(scan_shape=(n, n), scan_step_A=3.905 / 16, scan_rotation_deg=rot)
    py = Path(a.venvs) / "py4dstem" / "bin" / "python"
    if a.dpc_only:
        print("\n".join(dpc_rows(cube_d, truth_d, tmp, py, n, rot, a.repeat)))
        return None
    obj, px = amorphous_phase_object(64.0, 0.2, 1.0, 1.0)
    cube_p, truth_p = simulate_phase(obj, px, scan_shape=(48, 48), scan_step_A=0.8, reciprocal_step_mrad=0.5,
                                     convergence_semiangle_mrad=15, C10=-300.0, C12=60.0, phi12_deg=25.0,
                                     scan_rotation_deg=rot)
    paths = {}
    for kind, cube, step, mrad, alpha in (("dpc", cube_d, 3.905 / 16, 1.0, 20.0),
                                          ("parallax", cube_p, 0.8, 0.5, 15.0)):
        paths[kind] = str(tmp / f"{kind}.npz")
        np.savez(paths[kind], data=np.asarray(cube.array), real_step_A=step, reciprocal_step_mrad=mrad,
                 energy_eV=300e3, convergence_mrad=alpha, rotation_deg=rot)
    ours = {k: child([__file__, "--child", k, paths[k]]) for k in paths}
    peer = child([str(HERE / "peers" / "phase_py4dstem.py"), "--dpc", paths["dpc"], "--parallax",
                  paths["parallax"], "--out", str(tmp / "p4")], py=str(py))
    p4_phase = np.load(tmp / "p4.npz")["dpc_phase"]
    our_phase = np.load(paths["dpc"] + ".ours.npy")
    step = 3.905 / 16
    acc_ours = phase_agreement(our_phase, truth_d.phase_on_scan, step)
    # py4DSTEM pads its object; take the central scan-sized region
    ox = (p4_phase.shape[0] - n) // 2
    oy = (p4_phase.shape[1] - n) // 2
    acc_p4 = phase_agreement(p4_phase[ox:ox + n, oy:oy + n], truth_d.phase_on_scan, step) \
        if p4_phase.shape[0] >= n else (float("nan"), float("nan"))

    # PhaseTuner budget: SSB and tcBF previews on 64x64 x 96x96
    cube_t, _ = simulate_phase(scan_shape=(64, 64), scan_step_A=3.905 / 16)
    data = ssb_prepare(cube_t, progress=False)
    t_ssb = median_time(lambda: ssb(data, C10=20.0))
    t_prep = median_time(lambda: ssb_prepare(cube_t, progress=False), 1)
    cube_tp, _ = simulate_phase(obj, px, scan_shape=(64, 64), scan_step_A=0.8, reciprocal_step_mrad=0.5,
                                convergence_semiangle_mrad=15, C10=-300.0)
    pdata = parallax_prepare(cube_tp, bin=2, progress=False)
    t_pprep = median_time(lambda: parallax_prepare(cube_tp, bin=2, progress=False), 1)
    t_tcbf = median_time(lambda: tcbf(pdata, Aberrations(C10=-280.0), 0.0))

    pr = ours["parallax"]
    lines = ["", "## Phase (issue 16)", "",
             f"`python bench/bench_phase.py --scan {n}` (2 shared cores, no GPU; py4DSTEM {peer['version']}). "
             "Ours: median of 3 after a warm-up, each in a fresh process; py4DSTEM: one run, plots off. "
             "Peak RSS = VmHWM of the process (data loaded before timing; in brackets: before the compute).", "",
             "| step | data | fourd_widgets s | py4DSTEM s | ratio | peak RSS ours / py4DSTEM (MiB) |",
             "|---|---|---|---|---|---|",
             f"| DPC/iDPC | {n}x{n} x 96x96 | {ours['dpc']['s']:.3f} | {peer['dpc_s']:.2f} | "
             f"**{peer['dpc_s'] / ours['dpc']['s']:.1f}x** | {ours['dpc']['rss_mib'][1]:.0f} "
             f"({ours['dpc']['rss_mib'][0]:.0f}) / {peer['dpc_rss_mib'][1]:.0f} ({peer['dpc_rss_mib'][0]:.0f}) |",
             f"| parallax (align + fit) | 48x48 x 96x96 | {pr['s']:.3f} | {peer['parallax_s']:.2f} | "
             f"**{peer['parallax_s'] / pr['s']:.0f}x** | {pr['rss_mib'][1]:.0f} ({pr['rss_mib'][0]:.0f}) / "
             f"{peer['parallax_rss_mib'][1]:.0f} ({peer['parallax_rss_mib'][0]:.0f}) |",
             "", f"DPC again, float32 and uint16 copies, py4DSTEM median of {a.repeat} after a warm-up:", "",
             *dpc_rows(cube_d, truth_d, tmp, py, n, rot, a.repeat),
             "", f"iDPC vs truth (Pearson, slope after σ = 0.3 Å): ours {acc_ours[0]:.3f}, {acc_ours[1]:.3f}; "
             f"py4DSTEM {acc_p4[0]:.3f}, {acc_p4[1]:.3f}.",
             f"Parallax fit, truth C10 −300 Å, C12 60 Å at 25°, rotation 30°: ours C10 {pr['C10']:.1f}, "
             f"C12 {pr['C12']:.1f} at {pr['phi12']:.1f}°, rotation {pr['rotation']:.2f}°; "
             f"py4DSTEM {json.dumps(peer.get('parallax_fit'))}.",
             "", f"PhaseTuner budget (64x64 x 96x96): SSB from cached G(k,Q) {t_ssb:.2f} s per aberration change "
             f"(one pass + FFT to cache: {t_prep:.2f} s); tcBF from cached bright-field images {t_tcbf:.2f} s per "
             f"aberration change (one pass to cache: {t_pprep:.2f} s).", "", *tuner_budget(64), ""]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
