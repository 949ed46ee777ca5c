"""Single-slice ptychography: fourd_widgets vs py4DSTEM 0.14.18 SingleslicePtychography, and FFT libraries.

    python bench/bench_ptycho.py [--venvs /work/venvs] [--iterations 4] [--batch 256]

Data, the same for both programs: ``../shared/data/sto_001_ptycho_20mrad.h5`` (abTEM SrTiO3,
32x32 x 96x96, 20 mrad, 0.244 Å steps), written to a temporary .npz that both read whole.
Both reconstruct a potential object by gradient descent with the same batch size and step,
every regulariser and constraint off, 2 threads each (``workers=2``; py4DSTEM under
OMP/OPENBLAS/MKL_NUM_THREADS=2), each in a fresh process. Reported per iteration: wall time
and the process's CPU time (the machine is shared, so wall time carries other jobs' load; the
CPU-time ratio is the steadier figure), peak RSS, and one error function applied to both
outputs: the normalised Fourier-amplitude error ``Σ(s|Ψ| − √I)² / Σ I`` of each program's
object, probe and positions over every pattern, with ``s`` the least-squares intensity scale
(py4DSTEM normalises the patterns its own way). Also: accuracy against the truth (Pearson r
and slope after a 0.3 Å Gaussian low-pass, as in the tests) and the FFT measurement behind
the choice of ``scipy.fft``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "sto_001_ptycho_20mrad.h5"
THREADS = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cube_of(path: str):
    from fourd_widgets.core.calibration import Calibration
    from fourd_widgets.core.datacube import DataCube

    d = np.load(path)
    cal = Calibration(real_step=float(d["real_step_A"]), reciprocal_step=float(d["reciprocal_step_mrad"]),
                      reciprocal_units="mrad", energy_eV=float(d["energy_eV"]),
                      convergence_semiangle_mrad=float(d["convergence_mrad"]), origin=(48.0, 48.0))
    return DataCube(d["data"], cal)


def ours_child(path: str, out: str, iterations: int, batch: int, step: float) -> None:
    from fourd_widgets.analysis.ptychography import reconstruct_ptychography

    cube = cube_of(path)
    rss0 = rss_mib()
    reconstruct_ptychography(cube, iterations=1, batch_size=batch, workers=2, progress=False)  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    res = reconstruct_ptychography(cube, iterations=iterations, batch_size=batch, step_size=step, workers=2,
                                   progress=False)
    w1, c1 = time.perf_counter(), time.process_time()
    np.savez(out, object=res.object, probe=res.probe[0], positions_px=res.positions_px, pixel_A=res.pixel_A)
    print("FOURD_BENCH_RESULT " + json.dumps({"per_iteration_s": (w1 - w0) / iterations,
                                              "per_iteration_cpu_s": (c1 - c0) / iterations,
                                              "rss_mib": [rss0, rss_mib()]}))


def big_child(path: str, iterations: int, batch: int, crop: int = 0) -> None:
    """Reconstruct from a uint16 HDF5 file read lazily (never loaded whole) and report the peak RSS."""
    import h5py

    from fourd_widgets.analysis.ptychography import reconstruct_ptychography
    from fourd_widgets.core.calibration import Calibration
    from fourd_widgets.core.datacube import DataCube

    f = h5py.File(path, "r")
    d = f["data"]
    cal = Calibration(real_step=float(f.attrs["real_step_A"]), reciprocal_step=float(f.attrs["reciprocal_step_mrad"]),
                      reciprocal_units="mrad", energy_eV=300e3, convergence_semiangle_mrad=20.0,
                      origin=(d.shape[2] // 2, d.shape[3] // 2))
    cube = DataCube(d, cal)
    if crop:
        cube = cube.crop(rx=(0, crop), ry=(0, crop))
    rss0 = rss_mib()
    w0, c0 = time.perf_counter(), time.process_time()
    res = reconstruct_ptychography(cube, iterations=iterations, batch_size=batch, workers=2, progress=False)
    w1, c1 = time.perf_counter(), time.process_time()
    print("FOURD_BENCH_RESULT " + json.dumps({"wall_s": w1 - w0, "cpu_s": c1 - c0, "rss_mib": [rss0, rss_mib()],
                                              "file_mib": os.path.getsize(path) / 2**20,
                                              "errors": [float(e) for e in res.errors]}))


def write_big(path: str, scan: int, det: int) -> None:
    """A scan x scan x det x det uint16 HDF5 file: a simulated 16x16 tile of SrTiO3 at 1e4 e-, repeated."""
    import h5py

    from fourd_widgets.datasets.phase import simulate_phase

    cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(det, det),
                                 reciprocal_step_mrad=96.0 / det, dose=1e4, workers=2)
    tile = np.minimum(cube.array, 65535).astype(np.uint16)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", (scan, scan, det, det), np.uint16, chunks=(1, 16, det, det))
        for i in range(scan):
            ds[i] = np.tile(tile[i % 16], (scan // 16, 1, 1))
        f.attrs["real_step_A"] = 0.3
        f.attrs["reciprocal_step_mrad"] = 96.0 / det


def peer_memory(a: argparse.Namespace) -> None:
    """py4DSTEM on crops of the --big file under an address-space cap: its peak RSS, or where it fails."""
    import shutil

    py = str(Path(a.venvs) / "py4dstem" / "bin" / "python")
    with tempfile.TemporaryDirectory(dir=a.big_dir) as tmp:
        free = shutil.disk_usage(tmp).free / 2**30
        need = a.peer_memory ** 2 * 256 * 256 * 2 / 2**30
        if free < need + 4:
            raise SystemExit(f"{free:.1f} GiB free in {tmp}, the file needs {need:.1f} GiB (+4 to spare)")
        path = os.path.join(tmp, "big.h5")
        write_big(path, a.peer_memory, 256)
        rows = []
        for crop in [int(c) for c in a.crops.split(",")]:
            ours = child([str(HERE / "bench_ptycho.py"), "--big-child", path, "2", str(a.batch), str(crop)])
            cap = min(a.cap_gib, _available_gib() - 2.0)
            env = {**os.environ, **THREADS}
            w0 = time.perf_counter()
            res = subprocess.run([py, str(HERE / "peers" / "ptycho_py4dstem_memory.py"), "--h5", path, "--crop",
                                  str(crop), "--iterations", "2", "--batch", str(a.batch), "--cap-gib", f"{cap:.1f}"]
                                 + (["--lean"] if a.lean else []),
                                 capture_output=True, text=True, env=env)
            lines = res.stdout.splitlines()
            stages = [json.loads(ln[12:]) for ln in lines if ln.startswith("FOURD_STAGE ")]
            done = [json.loads(ln[19:]) for ln in lines if ln.startswith("FOURD_BENCH_RESULT ")]
            peer = done[-1] if done else {"ok": False, "error": f"exit code {res.returncode}: {res.stderr[-500:]}",
                                          "stages": stages}
            peer["wall_s"] = time.perf_counter() - w0
            peer["cap_gib"] = cap
            rows.append((crop, ours, peer))
            print(f"crop {crop}: ours {json.dumps(ours)}", flush=True)
            print(f"crop {crop}: py4DSTEM {json.dumps(peer)}", flush=True)
    print(f"\n`python bench/bench_ptycho.py --peer-memory {a.peer_memory} --crops {a.crops} --cap-gib {a.cap_gib}"
          f"{' --lean' if a.lean else ''}` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}), two iterations, batch {a.batch}:\n")
    print("| scan (of the same file) | raw uint16 MiB | ours peak RSS MiB | py4DSTEM peak RSS MiB | py4DSTEM outcome |")
    print("|---|---|---|---|---|")
    for crop, ours, peer in rows:
        st = " -> ".join(f"{s['stage']} {s['peak_rss_mib']:.0f}" for s in peer.get("stages", []))
        outcome = "2 iterations done" if peer.get("ok") else f"{peer.get('error')} at {peer.get('where')}"
        print(f"| {crop}x{crop} | {crop * crop * 256 * 256 * 2 / 2**20:.0f} | {ours['rss_mib'][1]:.0f} | "
              f"{peer.get('peak_rss_mib', float('nan')):.0f} (cap {peer['cap_gib']:.1f} GiB of address space) | "
              f"{outcome}; peak RSS by stage (MiB): {st}; {peer['wall_s']:.0f} s |")


def _available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def child(args: list[str], py: str = sys.executable) -> dict:
    env = {**os.environ, **THREADS}
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([py, *args], capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("FOURD_BENCH_RESULT ")][-1]
    return json.loads(line[len("FOURD_BENCH_RESULT "):])


def fourier_error(data: np.ndarray, phase: np.ndarray, probe: np.ndarray, centers_px: np.ndarray) -> float:
    """``Σ(s|Ψ| − √I)² / Σ I`` of a potential object, a centred probe and probe centres (object px)."""
    import scipy.fft as sfft

    from fourd_widgets.kernels import ptychography as kp

    q = probe.shape
    obj = np.exp(1j * phase).astype(np.complex64)
    amps, models = [], []
    flat = data.reshape(-1, *q)
    c = centers_px.reshape(-1, 2)
    for s in range(0, len(flat), 128):
        corners, frac = kp.window_corners(c[s:s + 128], q)
        probes = kp.shift_probes(probe[None].astype(np.complex64), frac, np, sfft, 2)
        far = sfft.fft2(kp.object_patches(obj, corners, q)[:, None] * probes, norm="ortho", workers=2)
        models.append(np.abs(far[:, 0]))
        amps.append(np.roll(np.sqrt(np.maximum(flat[s:s + 128], 0)), (-(q[0] // 2), -(q[1] // 2)), axis=(1, 2)))
    m, a = np.concatenate(models).astype(float), np.concatenate(amps).astype(float)
    scale = float((m * a).sum() / (m * m).sum())
    return float(((scale * m - a) ** 2).sum() / (a * a).sum())


def agreement(phase: np.ndarray, pixel_A: float, centers_px: np.ndarray, truth_on_scan: np.ndarray) -> tuple:
    from scipy import ndimage

    from fourd_widgets.analysis.phase_common import phase_agreement

    smooth = ndimage.gaussian_filter(np.asarray(phase, float), 0.3 / pixel_A)
    on = ndimage.map_coordinates(smooth, [centers_px[..., 0], centers_px[..., 1]], order=3)
    return phase_agreement(on, truth_on_scan, 0.244, sigma_A=0.0)


def fft_table() -> list[str]:
    import scipy.fft as sfft

    rows = []
    for n, b in ((96, 64), (256, 16)):
        x = (np.random.default_rng(0).normal(size=(b, n, n)) + 1j).astype(np.complex64)

        def t(f, reps=10):
            f()
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            return (time.perf_counter() - t0) / reps * 1e3

        a, s1, s2 = t(lambda: np.fft.fft2(x)), t(lambda: sfft.fft2(x, workers=1)), t(lambda: sfft.fft2(x, workers=2))
        rows.append(f"| {b} x {n}x{n} complex64 | {a:.1f} | {s1:.1f} | {s2:.1f} | {a / s1:.1f}x |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venvs", default=os.environ.get("FOURD_BENCH_VENVS", "/work/venvs"))
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--step", type=float, default=1.0)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--big-child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--big", type=int, default=0, metavar="SCAN",
                    help="instead: two iterations from a SCAN x SCAN x 256x256 uint16 HDF5 file on disk (peak RSS)")
    ap.add_argument("--big-peer", type=int, default=0, metavar="N",
                    help="with --big: also py4DSTEM for N iterations on the same data (its peak RSS)")
    ap.add_argument("--big-dir", default=None, help="where to write the --big file (default: a temporary folder)")
    ap.add_argument("--peer-memory", type=int, default=0, metavar="SCAN",
                    help="instead: py4DSTEM's peak RSS for two iterations on crops of a SCAN x SCAN x 256x256 file")
    ap.add_argument("--crops", default="32,64,128", help="with --peer-memory: the scan crops, comma-separated")
    ap.add_argument("--cap-gib", type=float, default=20.0,
                    help="with --peer-memory: py4DSTEM's address-space cap (lowered to leave 2 GiB of the "
                         "machine's available memory to others)")
    ap.add_argument("--lean", action="store_true",
                    help="with --peer-memory: py4DSTEM with its memory-saving preprocess options")
    a = ap.parse_args()
    if a.peer_memory:
        return peer_memory(a)
    if a.big_child:
        return big_child(a.big_child[0], int(a.big_child[1]), int(a.big_child[2]),
                         int(a.big_child[3]) if len(a.big_child) > 3 else 0)
    if a.big:
        with tempfile.TemporaryDirectory(dir=a.big_dir) as tmp:
            path = os.path.join(tmp, "big.h5")
            write_big(path, a.big, 256)
            out = child([str(HERE / "bench_ptycho.py"), "--big-child", path, "2", str(a.batch)])
            peer = None
            if a.big_peer:  # py4DSTEM reads the whole cube into memory: give it the same data as an .npz
                import h5py

                npz = os.path.join(tmp, "big.npz")
                with h5py.File(path, "r") as f:
                    np.savez(npz, data=f["data"][()], real_step_A=float(f.attrs["real_step_A"]),
                             reciprocal_step_mrad=float(f.attrs["reciprocal_step_mrad"]), energy_eV=300e3,
                             convergence_mrad=20.0)
                os.remove(path)
                peer = child([str(HERE / "peers" / "ptycho_py4dstem.py"), "--data", npz, "--out",
                              os.path.join(tmp, "p4.npz"), "--iterations", str(a.big_peer), "--batch", str(a.batch)],
                             py=str(Path(a.venvs) / "py4dstem" / "bin" / "python"))
        print(f"`python bench/bench_ptycho.py --big {a.big} --batch {a.batch}` "
              f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): {a.big}x{a.big} x 256x256 uint16 "
              f"HDF5 file of {out['file_mib']:.0f} MiB, 2 iterations, workers=2: wall {out['wall_s']:.0f} s, "
              f"CPU {out['cpu_s']:.0f} s, peak RSS {out['rss_mib'][1]:.0f} MiB (before the reconstruction "
              f"{out['rss_mib'][0]:.0f} MiB); errors {out['errors']}")
        if peer:
            print(f"py4DSTEM {peer['version']}, same data, {a.big_peer} iteration(s): peak RSS {peer['rss_mib'][1]:.0f} MiB "
                  f"(data loaded {peer['rss_mib'][0]:.0f} MiB), preprocess {peer['preprocess_s']:.0f} s, "
                  f"{peer['per_iteration_s']:.0f} s / iteration (CPU {peer['per_iteration_cpu_s']:.0f} s)")
        return None
    if a.child:
        path, out, it, batch, step = a.child
        return ours_child(path, out, int(it), int(batch), float(step))
    import h5py
    from scipy import ndimage

    with h5py.File(SHARED, "r") as f:
        data = f["data"][()]
        step_mrad = float(f.attrs["angular_sampling_mrad"][0])
        ps = f["ground_truth"].attrs["projected_potential_sampling_A"]
        pos = f["scan_positions_A"][()]
        truth = ndimage.gaussian_filter(f["ground_truth/phase_rad"][()].astype(float), 0.3 / ps[0], mode="wrap")
    truth_on_scan = ndimage.map_coordinates(truth, [pos[..., 0] / ps[0], pos[..., 1] / ps[1]], order=3,
                                            mode="grid-wrap")
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "sto.npz")
        np.savez(npz, data=data, real_step_A=0.2440625, reciprocal_step_mrad=step_mrad, energy_eV=300e3,
                 convergence_mrad=20.0)
        common = [str(a.iterations), str(a.batch), str(a.step)]
        ours = child([str(HERE / "bench_ptycho.py"), "--child", npz, os.path.join(tmp, "ours.npz"), *common])
        peer = child([str(HERE / "peers" / "ptycho_py4dstem.py"), "--data", npz, "--out", os.path.join(tmp, "p4.npz"),
                      "--iterations", str(a.iterations), "--batch", str(a.batch), "--step", str(a.step)],
                     py=str(Path(a.venvs) / "py4dstem" / "bin" / "python"))
        o = np.load(os.path.join(tmp, "ours.npz"))
        p = np.load(os.path.join(tmp, "p4.npz"))
        err_ours = fourier_error(data, o["object"], o["probe"], o["positions_px"])
        p_px = p["positions_A"] / p["sampling_A"]
        err_p4 = fourier_error(data, p["object"], p["probe"], p_px.reshape(32, 32, 2))
        acc_ours = agreement(o["object"], float(o["pixel_A"][0]), o["positions_px"], truth_on_scan)
        acc_p4 = agreement(p["object"], float(p["sampling_A"][0]), p_px.reshape(32, 32, 2), truth_on_scan)
    p4_cpu = peer.get("per_iteration_cpu_s")
    lines = [
        f"`python bench/bench_ptycho.py --iterations {a.iterations} --batch {a.batch} --step {a.step}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2 shared cores, py4DSTEM {peer['version']}); "
        "SrTiO3 32x32 x 96x96, potential object, gradient descent, regularisers off, 2 threads each.",
        "",
        "| | fourd_widgets | py4DSTEM | ratio |",
        "|---|---|---|---|",
        f"| wall s / iteration | {ours['per_iteration_s']:.2f} | {peer['per_iteration_s']:.2f} | "
        f"{peer['per_iteration_s'] / ours['per_iteration_s']:.1f}x |",
    ]
    if p4_cpu:
        lines.append(f"| CPU s / iteration | {ours['per_iteration_cpu_s']:.2f} | {p4_cpu:.2f} | "
                     f"{p4_cpu / ours['per_iteration_cpu_s']:.1f}x |")
    lines += [
        f"| peak RSS MiB (start / end) | {ours['rss_mib'][0]:.0f} / {ours['rss_mib'][1]:.0f} | "
        f"{peer['rss_mib'][0]:.0f} / {peer['rss_mib'][1]:.0f} | |",
        f"| Fourier-amplitude error after {a.iterations} it. (one function) | {err_ours:.4g} | {err_p4:.4g} | |",
        f"| r, slope vs truth (0.3 Å low-pass) | {acc_ours[0]:.3f}, {acc_ours[1]:.3f} | "
        f"{acc_p4[0]:.3f}, {acc_p4[1]:.3f} | |",
        "",
        "FFT of a batch (ms): why scipy.fft",
        "",
        "| batch | numpy.fft | scipy.fft workers=1 | workers=2 | scipy vs numpy |",
        "|---|---|---|---|---|",
        *fft_table(),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
