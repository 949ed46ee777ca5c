#!/usr/bin/env python
"""Virtual-image speed benchmark: fourd_widgets against one BLAS pass, py4DSTEM and LiberTEM.

One command, one run (run by hand, never in CI):

    bash bench/setup_peers.sh && python bench/bench_virtual_image.py

What it does, in order:

1. Creates the test cube once (float32, default (128, 128, 128, 128) = 1 GiB, seeded) as .npy
   in the cache folder (default /tmp/fourd_bench) so that every process loads the same bytes.
2. In this process: the BLAS reference (the flattened cube (Npos, Qx*Qy) @ mask vector, float32,
   one sgemv pass), and ``fw.virtual_image`` for 1 annulus and for 8 annuli in one call.
3. The peers, each with its own venv's python (bench/peers/*.py): py4DSTEM 0.14.18
   ``DataCube.get_virtual_image(mode='annulus')`` and LiberTEM's ring analysis.
   Import, data load and setup are timed apart from the computation.
4. Checks that every implementation gives the same image, naming the annulus edge convention
   (``ri <= r <= ro`` etc.) each one matches and the relative difference between them.
5. Prints a table of times and every ratio against the issue's targets.
6. File streaming (in a child process, so the 1 GiB in-memory cube is not counted): writes an
   uncompressed HDF5 file and a raw .npy file larger than the memory budget, evicts them from the
   page cache, and compares a plain sequential read of the file with
   ``fw.virtual_image(fw.load(path), det)``.

Timing: the first call of every implementation is reported apart (JIT, caches); the figure used
in ratios is the median of ``--repeats`` further calls, each started after a 0.25 s pause (so
OpenBLAS threads still spinning after the previous call do not slow the next one). Every process
gets the same thread count (``--threads``, default: all cores) through
OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
CORETYPE_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
GENERATOR_VERSION = 1  # bump when the synthetic data change, so cached files are rebuilt
MiB = 2**20

# The edge conventions an annular detector can use on integer pixel centres.
CONVENTIONS = {
    "ri<=r<=ro": (lambda r, a: r >= a, lambda r, b: r <= b),
    "ri<=r<ro": (lambda r, a: r >= a, lambda r, b: r < b),
    "ri<r<=ro": (lambda r, a: r > a, lambda r, b: r <= b),
    "ri<r<ro": (lambda r, a: r > a, lambda r, b: r < b),
}


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace("x", ",").split(",") if v)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", default="/tmp/fourd_bench", help="test data, peer outputs, logs")
    p.add_argument("--venvs", default=os.environ.get("FOURD_BENCH_VENVS", "/work/venvs"),
                   help="folder holding the peer venvs made by bench/setup_peers.sh")
    p.add_argument("--shape", type=_int_tuple, default=(128, 128, 128, 128),
                   help="in-memory cube shape Rx,Ry,Qx,Qy (default 1 GiB of float32)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="thread count for every process (default: all cores)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls after the first one")
    p.add_argument("--peers", default="py4dstem,libertem", help="comma list, or 'none'")
    p.add_argument("--libertem-executors", default="threads,inline",
                   help="LiberTEM executors to measure; the first is the headline (add 'dask' "
                        "for the local dask cluster)")
    p.add_argument("--skip-memory", action="store_true", help="skip parts 1-5 (in-memory cube)")
    p.add_argument("--skip-streaming", action="store_true", help="skip part 6 (file streaming)")
    p.add_argument("--budget-mib", type=int, default=256, help="memory budget for streaming")
    p.add_argument("--stream-shape", type=_int_tuple, default=(256, 128, 128, 128),
                   help="shape of the streamed files (default 2 GiB, > budget)")
    p.add_argument("--stream-repeats", type=int, default=3, help="cold runs per file and method")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each timed part, wait up to this long until other processes use "
                        "< 10%% of the CPUs (other work on the machine skews the figures)")
    p.add_argument("--json", default=None,
                   help="write every figure to this JSON file (default: CACHE_DIR/results_latest.json)")
    p.add_argument("--streaming-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("shape", "stream_shape"):
        if len(getattr(args, name)) != 4:
            p.error(f"--{name.replace('_', '-')} needs 4 integers, got {getattr(args, name)}")
    return args


ARGS = parse_args()
# Thread counts must be in the environment before numpy (and BLAS) load, here and in children.
for _var in THREAD_VARS:
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, str(PEERS))
import _common  # noqa: E402  (timing, thread report and result marker shared with the peers)

RESULT_PREFIX = _common.RESULT_PREFIX


# ----------------------------------------------------------------------------- small helpers

#: Pause before each timed call. OpenBLAS's worker threads keep spinning on the cores for
#: up to ~0.1 s after a call returns; without a pause that spin is billed to whatever runs next.
SETTLE_S = 0.25


def interleaved(fns: dict, repeats: int) -> dict:
    """Time several callables in alternating rounds, so that load from other processes on a
    shared machine hits all of them alike. First calls are timed apart; keeps the last results.
    Every call starts after a pause of ``SETTLE_S`` (see there)."""
    out = {}
    for name, fn in fns.items():
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        res = fn()
        out[name] = {"result": res, "first_s": time.perf_counter() - t0, "times_s": []}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            out[name]["result"] = fn()
            out[name]["times_s"].append(time.perf_counter() - t0)
    for rec in out.values():
        rec["median_s"] = statistics.median(rec["times_s"])
        rec["min_s"] = min(rec["times_s"])
    return out


def cpu_busy(window: float = 2.0) -> float:
    """Fraction of all CPUs busy over ``window`` seconds, from /proc/stat (we sleep meanwhile,
    so this is what other processes use)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return sum(v[:8]), idle
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_idle(limit_s: float, threshold: float = 0.10) -> dict:
    """Wait up to ``limit_s`` for other processes to leave the CPUs (< ``threshold`` busy)."""
    t0 = time.perf_counter()
    busy = cpu_busy()
    while busy >= threshold and time.perf_counter() - t0 < limit_s:
        busy = cpu_busy(5.0)
    if busy >= threshold:
        say(f"  WARNING: other processes keep {busy:.0%} of the CPUs busy: figures are noisy "
            f"(ours and BLAS are timed in interleaved rounds, so their ratio suffers least)")
    return {"other_cpu_busy": busy, "loadavg": os.getloadavg(), "waited_s": time.perf_counter() - t0}


def say(msg: str = "") -> None:
    print(msg, flush=True)


def fmt_s(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def fmt_ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}×"


def verdict(ratio, limit: float, strict: bool = False) -> str:
    if ratio is None:
        return "not measured"
    ok = ratio < limit if strict else ratio <= limit
    return f"{'PASS' if ok else 'FAIL'} (target {'<' if strict else '≤'} {limit}×)"


# ----------------------------------------------------------------------------- test data

def scan_weights(rx: int, ry: int) -> np.ndarray:
    """Smooth structure over the scan so the virtual image is not flat noise."""
    i, j = np.meshgrid(np.arange(rx), np.arange(ry), indexing="ij")
    return (1.0 + 0.5 * np.sin(2 * np.pi * i / 32) * np.cos(2 * np.pi * j / 24)).astype(np.float32)


def pattern_profile(qx: int, qy: int) -> np.ndarray:
    """A bright disk, a ring and a weak background, like a diffraction pattern."""
    i, j = np.meshgrid(np.arange(qx), np.arange(qy), indexing="ij")
    r = np.hypot(i - qx // 2, j - qy // 2)
    prof = 0.05 + np.exp(-(r / 10.0) ** 4) + 0.3 * np.exp(-(((r - 35.0) / 4.0) ** 2))
    return prof.astype(np.float32)


def iter_blocks(shape: tuple[int, ...], seed: int):
    """Rows of the synthetic cube, one (Ry, Qx, Qy) block at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    prof = pattern_profile(shape[2], shape[3])
    w = scan_weights(shape[0], shape[1])
    for rx in range(shape[0]):
        block = rng.random(shape[1:], dtype=np.float32)
        block *= prof
        block *= w[rx][:, None, None]
        yield rx, block


def cube_path(cache: Path, shape, seed: int, ext: str) -> Path:
    return cache / f"cube_{'x'.join(map(str, shape))}_f32_seed{seed}_v{GENERATOR_VERSION}.{ext}"


def ensure_npy(path: Path, shape, seed: int) -> Path:
    if path.exists():
        try:
            m = np.load(path, mmap_mode="r")
            if m.shape == tuple(shape) and m.dtype == np.float32:
                return path
        except ValueError:
            pass
    say(f"  writing {path} ({np.prod(shape) * 4 / 2**30:.2f} GiB) ...")
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=tuple(shape))
    for rx, block in iter_blocks(shape, seed):
        out[rx] = block
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def ensure_h5(path: Path, shape, seed: int) -> Path:
    import h5py

    if path.exists():
        try:
            with h5py.File(path, "r") as f:
                d = f["data"]
                if d.shape == tuple(shape) and d.dtype == np.float32 and d.compression is None:
                    return path
        except (OSError, KeyError):
            pass
    say(f"  writing {path} ({np.prod(shape) * 4 / 2**30:.2f} GiB, contiguous, uncompressed) ...")
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        d = f.create_dataset("data", shape=tuple(shape), dtype=np.float32)  # contiguous layout
        for rx, block in iter_blocks(shape, seed):
            d[rx] = block
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- detectors

def det_params(shape) -> tuple[tuple[int, int], tuple[float, float], list[tuple[float, float]]]:
    """Centre, the headline annulus (20, 50 on a 128 detector) and the 8 annuli of the multi pass."""
    qx, qy = shape[2], shape[3]
    center = (qx // 2, qy // 2)
    s = min(qx, qy) / 128.0
    one = (20 * s, 50 * s)
    eight = [((2 + 6 * k) * s, (22 + 6 * k) * s) for k in range(8)]
    return center, one, eight


def reference_masks(shape, center, rings) -> dict[str, np.ndarray]:
    """float32 mask stacks (len(rings), Qx*Qy) for every edge convention."""
    i, j = np.meshgrid(np.arange(shape[2]), np.arange(shape[3]), indexing="ij")
    r = np.hypot(i - center[0], j - center[1])
    out = {}
    for name, (lo, hi) in CONVENTIONS.items():
        out[name] = np.stack([(lo(r, a) & hi(r, b)).ravel() for a, b in rings]).astype(np.float32)
    return out


def fw_detector(fw, center, ring):
    return fw.detectors.Annulus(center=tuple(center), inner=ring[0], outer=ring[1])


def fw_status() -> tuple[object | None, str]:
    """(api, note): api has virtual_image, detectors.Annulus, load and DataCube; None if missing.

    The public names are ``fw.virtual_image`` / ``fw.detectors`` / ``fw.load``. While the
    top-level exports are not wired yet, the same functions are taken from
    ``fourd_widgets.analysis`` and the note says so.
    """
    import types

    try:
        import fourd_widgets as fw
    except Exception as exc:  # noqa: BLE001 - report any import failure
        return None, f"import fourd_widgets failed: {type(exc).__name__}: {exc}"
    api = types.SimpleNamespace(DataCube=fw.DataCube, load=getattr(fw, "load", None),
                                virtual_image=getattr(fw, "virtual_image", None),
                                detectors=getattr(fw, "detectors", None),
                                version=getattr(fw, "__version__", "?"))
    note = ""
    if api.virtual_image is None or api.detectors is None:
        try:
            from fourd_widgets.analysis import detectors, virtual
        except ImportError as exc:
            return None, f"fourd_widgets has no fw.virtual_image / fw.detectors yet ({exc})"
        api.virtual_image, api.detectors = virtual.virtual_image, detectors
        note = ("fw.virtual_image / fw.detectors not exported at top level yet: used "
                "fourd_widgets.analysis.virtual.virtual_image and .analysis.detectors")
    if not hasattr(api.detectors, "Annulus"):
        return None, "fourd_widgets has no detectors.Annulus yet"
    return api, note


def fw_call_kwargs(fw) -> dict:
    """progress=False when virtual_image takes it (no progress bar inside timed calls)."""
    import inspect

    try:
        params = inspect.signature(fw.virtual_image).parameters
    except (TypeError, ValueError):
        return {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {"progress": False} if takes_any or "progress" in params else {}


# ----------------------------------------------------------------------------- agreement

def compare(image, refs: dict[str, np.ndarray]) -> dict:
    """Relative L2 and max errors of ``image`` against the reference of every edge convention."""
    img = np.asarray(image, dtype=np.float64)
    errs = {}
    for name, ref in refs.items():
        ref = np.asarray(ref, dtype=np.float64).reshape(img.shape)
        diff = img - ref
        errs[name] = {"rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(ref)),
                      "rel_max": float(np.abs(diff).max() / np.abs(ref).max())}
    best = min(errs, key=lambda n: errs[n]["rel_l2"])
    return {"best_convention": best, **errs[best], "all": errs}


def rel_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(a.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- peers

def run_peer(name: str, npy: Path, center, one, eight, args) -> dict:
    script = {"py4dstem": "py4dstem_virtual.py", "libertem": "libertem_ring.py"}[name]
    python = Path(args.venvs) / name / "bin" / "python"
    if not python.exists():
        return {"peer": name, "skipped": f"no venv at {python.parent.parent}: "
                                         f"run `bash bench/setup_peers.sh`"}
    cache = Path(args.cache_dir)
    out = cache / f"peer_{name}_image.npy"
    log = cache / "logs" / f"peer_{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), str(PEERS / script), "--npy", str(npy),
           "--center", str(center[0]), str(center[1]), "--inner", str(one[0]),
           "--outer", str(one[1]), "--repeats", str(args.repeats), "--out", str(out),
           "--rings8", json.dumps([list(r) for r in eight]), "--threads", str(args.threads),
           "--executors", args.libertem_executors]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                              timeout=3600)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = log.read_text().strip().splitlines()[-15:]
        return {"peer": name, "error": f"exit code {proc.returncode}, see {log}", "log_tail": tail}
    res = json.loads(lines[-1][len(RESULT_PREFIX):])
    res["wall_s"] = wall
    res["log"] = str(log)
    return res


# ----------------------------------------------------------------------------- part 1-5

def memory_part(args, results: dict) -> None:
    cache = Path(args.cache_dir)
    shape = tuple(args.shape)
    say(f"[1] test data: float32 {shape} = {np.prod(shape) * 4 / 2**30:.2f} GiB")
    npy = ensure_npy(cube_path(cache, shape, 0, "npy"), shape, seed=0)
    t0 = time.perf_counter()
    cube = np.load(npy)
    say(f"  loaded {npy} in {time.perf_counter() - t0:.2f} s")
    center, one, eight = det_params(shape)
    results["data"] = {"path": str(npy), "shape": shape, "dtype": "float32",
                       "nbytes": int(cube.nbytes), "center": center, "annulus": one,
                       "annuli8": eight}

    say(f"[2] BLAS reference and fourd_widgets, {args.threads} threads")
    flat = cube.reshape(shape[0] * shape[1], -1)
    masks1 = reference_masks(shape, center, [one])
    masks8 = reference_masks(shape, center, eight)
    v = np.ascontiguousarray(masks1["ri<=r<=ro"][0])
    m8 = np.ascontiguousarray(masks8["ri<=r<=ro"].T)
    fns = {"blas_1": lambda: flat @ v, "blas_8": lambda: flat @ m8}
    # References for every edge convention (untimed): one GEMM per convention.
    refs1 = {n: (flat @ m[0]).reshape(shape[:2]) for n, m in masks1.items()}
    refs8 = {n: (flat @ m.T).T.reshape((len(eight),) + shape[:2]) for n, m in masks8.items()}
    results["mask_pixels"] = {n: int(m.sum()) for n, m in masks1.items()}

    fw, why = fw_status()
    images = {}
    if why:
        say(f"  note: {why}")
    kw = {}
    if fw is None:
        say(f"  fourd_widgets: SKIPPED — {why}. Our rows stay empty until it lands.")
        results["ours"] = {"skipped": why}
    else:
        fcube = fw.DataCube(cube)
        det1 = fw_detector(fw, center, one)
        dets8 = [fw_detector(fw, center, r) for r in eight]
        kw = fw_call_kwargs(fw)
        fns["fw_1"] = lambda: np.asarray(fw.virtual_image(fcube, det1, **kw))
        fns["fw_8"] = lambda: np.asarray(fw.virtual_image(fcube, dets8, **kw))
    results["load_memory_part"] = wait_idle(args.wait_idle)
    try:
        timings = interleaved(fns, args.repeats)
    except Exception as exc:  # noqa: BLE001 - a broken API must not hide the other figures
        why = f"fw.virtual_image raised {type(exc).__name__}: {exc}"
        say(f"  fourd_widgets: FAILED — {why}")
        results["ours"] = {"error": why}
        fns.pop("fw_1"), fns.pop("fw_8")
        timings = interleaved(fns, args.repeats)
    blas, blas8 = timings["blas_1"], timings["blas_8"]
    blas.pop("result"), blas8.pop("result")
    results["blas_1"] = {**blas, "method": "flat(Npos, Qx*Qy) @ mask(Qx*Qy,) float32 (sgemv)"}
    results["blas_8"] = {**blas8, "method": "flat(Npos, Qx*Qy) @ masks(Qx*Qy, 8) float32 (sgemm)"}
    say(f"  BLAS 1 mask  : {blas['median_s']:.4f} s   "
        f"({cube.nbytes / blas['median_s'] / 2**30:.1f} GiB/s)")
    say(f"  BLAS 8 masks : {blas8['median_s']:.4f} s")
    if "fw_1" in timings:
        o1, o8 = timings["fw_1"], timings["fw_8"]
        images["fourd_widgets"] = img1 = o1.pop("result")
        img8 = o8.pop("result")
        results["ours"] = {"one": o1, "eight": o8, "version": fw.version, "note": why,
                           "call_kwargs": kw, "agreement_1": compare(img1, refs1)}
        if img8.shape == (len(eight),) + shape[:2]:
            results["ours"]["agreement_8"] = compare(img8, refs8)
        else:
            results["ours"]["agreement_8"] = {"error": f"shape {img8.shape}, expected "
                                                       f"{(len(eight),) + shape[:2]}"}
        say(f"  fw 1 det     : {o1['median_s']:.4f} s (first call {o1['first_s']:.3f} s)")
        say(f"  fw 8 det     : {o8['median_s']:.4f} s (first call {o8['first_s']:.3f} s)")
    fns.clear()  # drops our DataCube too
    results["threads_main"] = _common.thread_info()

    peers = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    results["peers"] = {}
    if peers:
        say("[3] peers (each in its own venv)")
    del flat, cube  # the peers load their own copy
    for name in peers:
        say(f"  running {name} ...")
        load = wait_idle(args.wait_idle)
        res = run_peer(name, npy, center, one, eight, args)
        res["load_before"] = load
        results["peers"][name] = res
        if res.get("image_path"):
            img = np.load(res["image_path"])
            images[res["peer"]] = img
            res["agreement"] = compare(img, refs1)
        if "median_s" in res:
            say(f"    {res['peer']} {res.get('version')}: {res['median_s']:.4f} s "
                f"(first {res['first_s']:.3f} s, import {res['import_s']:.2f} s, "
                f"load {res['load_s']:.2f} s)")
        else:
            say(f"    {name}: {res.get('skipped') or res.get('error')}")
            for ln in res.get("log_tail", []):
                say(f"      | {ln}")

    say("[4] agreement")
    names = list(images)
    pair = {}
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            pair[f"{names[a]} vs {names[b]}"] = rel_diff(images[names[a]], images[names[b]])
    results["pairwise_rel_l2"] = pair


# ----------------------------------------------------------------------------- part 6

class RssSampler:
    """Samples this process's RssAnon / RssFile (kB → bytes) every few ms; keeps the peaks."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self._stop = threading.Event()
        self._thread = None
        self.peak_anon = self.peak_file = 0

    @staticmethod
    def read() -> tuple[int, int]:
        anon = file_ = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith("RssFile:"):
                    file_ = int(line.split()[1]) * 1024
        return anon, file_

    def _run(self) -> None:
        while not self._stop.is_set():
            a, f = self.read()
            self.peak_anon = max(self.peak_anon, a)
            self.peak_file = max(self.peak_file, f)
            self._stop.wait(self.period)

    def __enter__(self):
        self.base_anon, self.base_file = self.read()
        self.peak_anon, self.peak_file = self.base_anon, self.base_file
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def resident_bytes(path: Path) -> int | None:
    """Bytes of ``path`` in the page cache, from util-linux ``fincore`` (None if unavailable)."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, timeout=60)
        return int(out.stdout.split()[0]) if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def evict(path: Path) -> str:
    """Drop ``path`` from the page cache: posix_fadvise(DONTNEED), plus drop_caches when root."""
    how = []
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        how.append("fadvise")
    finally:
        os.close(fd)
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        how.append("drop_caches")
    except OSError:
        pass
    return "+".join(how)


def plain_read(path: Path, block: int = 16 * MiB) -> int:
    """Sequential read of the whole file into one reused buffer; returns bytes read."""
    buf = bytearray(block)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def h5_read(path: Path, block: int = 16 * MiB) -> int:
    """The HDF5 dataset read through h5py in contiguous scan-row blocks (second baseline)."""
    import h5py

    with h5py.File(path, "r") as f:
        d = f["data"]
        rows = max(1, block // (int(np.prod(d.shape[1:])) * d.dtype.itemsize))
        buf = np.empty((rows,) + d.shape[1:], d.dtype)
        for start in range(0, d.shape[0], rows):
            stop = min(start + rows, d.shape[0])
            d.read_direct(buf, np.s_[start:stop], np.s_[: stop - start])
    return int(np.prod(d.shape)) * 4


def fw_budget_kwargs(fw, budget: int) -> dict:
    """Pass the budget if fw.virtual_image takes one under a name we know."""
    import inspect

    try:
        params = inspect.signature(fw.virtual_image).parameters
    except (TypeError, ValueError):
        return {}
    for name in ("memory_budget", "budget", "max_memory"):
        if name in params:
            return {name: budget}
    return {}


def open_fw(fw, path: Path):
    """fw.load(path); if that fails, say why and fall back to a DataCube over the raw array."""
    try:
        if fw.load is None:
            raise AttributeError("fourd_widgets has no load")
        return fw.load(str(path)), "fw.load(path)"
    except Exception as exc:  # noqa: BLE001
        why = f"fw.load failed ({type(exc).__name__}: {exc}); used fw.DataCube("
        if path.suffix == ".npy":
            return fw.DataCube(np.load(path, mmap_mode="r")), why + "np.load(mmap_mode='r'))"
        import h5py

        return fw.DataCube(h5py.File(path, "r")["data"]), why + "h5py dataset)"


def streaming_child(args) -> dict:
    """Part 6, run in a fresh process (started by streaming_part)."""
    cache = Path(args.cache_dir)
    shape = tuple(args.stream_shape)
    budget = args.budget_mib * MiB
    nbytes = int(np.prod(shape)) * 4
    out: dict = {"shape": shape, "file_bytes": nbytes, "budget_bytes": budget, "files": {}}
    if nbytes <= budget:
        out["warning"] = "the streamed file is not larger than the budget"
    files = {"npy": ensure_npy(cube_path(cache, shape, 1, "npy"), shape, seed=1),
             "hdf5": ensure_h5(cube_path(cache, shape, 1, "h5"), shape, seed=1)}
    center, one, _ = det_params(shape)
    fw, why = fw_status()
    if fw is None:
        out["ours"] = {"skipped": why}
    else:
        kwargs = {**fw_call_kwargs(fw), **fw_budget_kwargs(fw, budget)}
        out["ours"] = {"call_kwargs": kwargs, "note": why}
        det = fw_detector(fw, center, one)
        small = np.ones((2, 2) + shape[2:], np.float32)
        np.asarray(fw.virtual_image(fw.DataCube(small), det, **kwargs))  # JIT, caches: untimed
    out["load"] = wait_idle(args.wait_idle)
    for kind, path in files.items():
        rec: dict = {"path": str(path), "size": path.stat().st_size, "cold": {}, "warm": {}}
        methods = {"plain read": lambda p=path: plain_read(p)}
        if kind == "hdf5":
            methods["h5py read_direct"] = lambda p=path: h5_read(p)
        opened = {}
        if fw is not None:
            def run_fw(p=path, kind=kind):
                cube, how = open_fw(fw, p)
                opened[kind] = how
                try:
                    return np.asarray(fw.virtual_image(cube, det, **kwargs))
                finally:
                    if hasattr(cube, "close"):
                        cube.close()
            methods["fw.virtual_image(fw.load)"] = run_fw
        cold = {n: {"times_s": [], "rss": [], "resident_after_evict": []} for n in methods}
        for _ in range(args.stream_repeats):  # interleaved rounds: load from others hits all alike
            for name, fn in methods.items():
                c = cold[name]
                c["evict"] = evict(path)
                c["resident_after_evict"].append(resident_bytes(path))
                with RssSampler() as smp:
                    t0 = time.perf_counter()
                    fn()
                    c["times_s"].append(time.perf_counter() - t0)
                c["rss"].append({"anon_growth": smp.peak_anon - smp.base_anon,
                                 "file_mapped_growth": smp.peak_file - smp.base_file})
        plain_read(path)  # now the file is in the page cache
        warm = {n: [] for n in methods}
        for _ in range(args.stream_repeats):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                res = fn()
                warm[name].append(time.perf_counter() - t0)
                if name.startswith("fw."):
                    rec["image"] = res
        for name in methods:
            rec["cold"][name] = {**cold[name], "median_s": statistics.median(cold[name]["times_s"])}
            rec["warm"][name] = {"times_s": warm[name], "median_s": statistics.median(warm[name])}
        rec["opened_with"] = opened.get(kind)
        out["files"][kind] = rec
    if fw is not None:
        # References (warm, untimed): one pass over the .npy memory map with every convention.
        masks = reference_masks(shape, center, [one])
        m = np.ascontiguousarray(np.concatenate([masks[n] for n in CONVENTIONS]).T)
        mm = np.load(files["npy"], mmap_mode="r").reshape(shape[0] * shape[1], -1)
        step = max(1, (64 * MiB) // (mm.shape[1] * 4))
        acc = np.concatenate([np.asarray(mm[i:i + step]) @ m for i in range(0, mm.shape[0], step)])
        refs = {n: acc[:, k].reshape(shape[:2]) for k, n in enumerate(CONVENTIONS)}
        for kind, rec in out["files"].items():
            rec["agreement"] = compare(rec.pop("image"), refs)
    out["threads"] = _common.thread_info()
    return out


def streaming_part(args, results: dict) -> None:
    shape = tuple(args.stream_shape)
    say(f"[6] file streaming: {np.prod(shape) * 4 / 2**30:.2f} GiB files, budget "
        f"{args.budget_mib} MiB, {args.stream_repeats} cold runs each (child process)")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--streaming-child",
           "--cache-dir", args.cache_dir, "--threads", str(args.threads),
           "--budget-mib", str(args.budget_mib), "--stream-shape", ",".join(map(str, shape)),
           "--stream-repeats", str(args.stream_repeats), "--wait-idle", str(args.wait_idle)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    for ln in proc.stdout.splitlines():
        if not ln.startswith(RESULT_PREFIX):
            say("  " + ln)
    if proc.returncode != 0 or not lines:
        results["streaming"] = {"error": f"child exited with {proc.returncode}"}
        say(f"  streaming child FAILED (exit {proc.returncode}); its stderr is above")
        return
    results["streaming"] = json.loads(lines[-1][len(RESULT_PREFIX):])


# ----------------------------------------------------------------------------- report

def ratio(a, b):
    return None if a is None or b is None else a / b


def report(results: dict, args) -> None:
    say()
    say("=" * 78)
    env = results["environment"]
    say(f"machine: {env['cpus']} cpus, {env['machine']}, python {env['python']}, "
        f"numpy {env['numpy']}; threads for everybody: {args.threads}")
    loads = [("in-memory part", results.get("load_memory_part"))]
    loads += [(n, p.get("load_before")) for n, p in results.get("peers", {}).items()]
    loads += [("streaming part", (results.get("streaming") or {}).get("load"))]
    say("CPU use by other processes just before each part (2 s sample): " + ", ".join(
        f"{n} {rec['other_cpu_busy']:.0%}" for n, rec in loads if rec))
    for k in CORETYPE_VARS:
        if k in os.environ:
            say(f"NOTE: {k}={os.environ[k]} is set in the environment (it was left as it is)")
    if "blas_1" in results:
        ours = results.get("ours", {})
        o1 = ours.get("one", {}).get("median_s")
        o8 = ours.get("eight", {}).get("median_s")
        b1 = results["blas_1"]["median_s"]
        b8 = results["blas_8"]["median_s"]
        shape = results["data"]["shape"]
        say(f"\nIn-memory cube {tuple(shape)} float32, {results['data']['nbytes'] / 2**30:.2f} GiB; "
            f"annulus centre {tuple(results['data']['center'])}, radii {results['data']['annulus']}")
        say("\n| implementation | median s | first call s | notes |")
        say("|---|---:|---:|---|")
        say(f"| BLAS sgemv, 1 mask | {fmt_s(b1)} | {fmt_s(results['blas_1']['first_s'])} | "
            f"{b1 and results['data']['nbytes'] / b1 / 2**30:.1f} GiB/s |")
        say(f"| BLAS sgemm, 8 masks | {fmt_s(b8)} | {fmt_s(results['blas_8']['first_s'])} | |")
        if "one" in ours:
            say(f"| fw.virtual_image, 1 annulus | {fmt_s(o1)} | {fmt_s(ours['one']['first_s'])} | |")
            say(f"| fw.virtual_image, 8 annuli | {fmt_s(o8)} | {fmt_s(ours['eight']['first_s'])} | |")
        else:
            say(f"| fw.virtual_image | — | — | {ours.get('skipped') or ours.get('error')} |")
        for name, p in results.get("peers", {}).items():
            if "median_s" not in p:
                say(f"| {name} | — | — | {p.get('skipped') or p.get('error')} |")
                continue
            extra = f", executor {p['headline_executor']}" if p.get("headline_executor") else ""
            say(f"| {p['peer']} {p['version']} (numpy {p['numpy']}{extra}) | {fmt_s(p['median_s'])} | "
                f"{fmt_s(p['first_s'])} | import {p['import_s']:.2f} s, load {p['load_s']:.2f} s, "
                f"setup {fmt_s(p.get('setup_s'))} s |")
            if p.get("multi"):
                say(f"| {p['peer']}, 8 annuli ({p['multi']['method']}) | "
                    f"{fmt_s(p['multi']['median_s'])} | {fmt_s(p['multi']['first_s'])} | |")
            for run in p.get("runs", [])[1:]:
                if "median_s" in run:
                    say(f"| {p['peer']}, executor {run['executor']} | {fmt_s(run['median_s'])} | "
                        f"{fmt_s(run['first_s'])} | setup {fmt_s(run['setup_s'])} s; 8 annuli "
                        f"{fmt_s((run.get('multi') or {}).get('median_s'))} s |")
                else:
                    say(f"| {p['peer']}, executor {run['executor']} | — | — | {run.get('error')} |")

        say("\n| ratio | value | target |")
        say("|---|---:|---|")
        say(f"| fw 1 annulus / BLAS 1 mask | {fmt_ratio(ratio(o1, b1))} | {verdict(ratio(o1, b1), 1.2)} |")
        o1_min, b1_min = ours.get("one", {}).get("min_s"), results["blas_1"]["min_s"]
        say(f"| same, fastest call of each (min) | {fmt_ratio(ratio(o1_min, b1_min))} | "
            f"(context: least disturbed) |")
        say(f"| fw 8 annuli / fw 1 annulus | {fmt_ratio(ratio(o8, o1))} | "
            f"{verdict(ratio(o8, o1), 1.5, strict=True)} |")
        say(f"| fw 8 annuli / BLAS 8 masks | {fmt_ratio(ratio(o8, b8))} | (context) |")
        say(f"| BLAS 8 masks / BLAS 1 mask | {fmt_ratio(ratio(b8, b1))} | (context) |")
        for name, p in results.get("peers", {}).items():
            if "median_s" in p:
                say(f"| {p['peer']} / fw 1 annulus | {fmt_ratio(ratio(p['median_s'], o1))} | (speed-up) |")
                say(f"| {p['peer']} / BLAS 1 mask | {fmt_ratio(ratio(p['median_s'], b1))} | (context) |")
                if p.get("multi"):
                    say(f"| {p['peer']} 8 annuli / fw 8 annuli | "
                        f"{fmt_ratio(ratio(p['multi']['median_s'], o8))} | (speed-up) |")

        say("\nAgreement (relative L2 error against the BLAS reference of the edge convention "
            "that fits best; pixel counts per convention: "
            + ", ".join(f"{k} {v}" for k, v in results["mask_pixels"].items()) + ")")
        say("\n| implementation | best-fitting convention | rel L2 | rel max |")
        say("|---|---|---:|---:|")
        rows = []
        if "agreement_1" in ours:
            rows.append(("fw 1 annulus", ours["agreement_1"]))
            if "best_convention" in ours.get("agreement_8", {}):
                rows.append(("fw 8 annuli", ours["agreement_8"]))
        for name, p in results.get("peers", {}).items():
            if "agreement" in p:
                rows.append((f"{p['peer']} (documented: {p.get('mask_convention')})", p["agreement"]))
        for label, a in rows:
            say(f"| {label} | {a['best_convention']} | {a['rel_l2']:.2e} | {a['rel_max']:.2e} |")
        for k, v in results.get("pairwise_rel_l2", {}).items():
            say(f"- {k}: rel L2 difference {v:.2e}")

    st = results.get("streaming")
    if st:
        say("")
        if "error" in st:
            say(f"File streaming: {st['error']}")
        else:
            say(f"File streaming: {tuple(st['shape'])} float32 = {st['file_bytes'] / 2**30:.2f} GiB per "
                f"file, budget {st['budget_bytes'] / MiB:.0f} MiB; cold = evicted from the page "
                f"cache before each run; fw: {st['ours'].get('skipped') or 'measured'}")
            say("\n| file | method | cold median s | cold GiB/s | warm s | resident after evict | "
                "peak anon RSS growth MiB |")
            say("|---|---|---:|---:|---:|---|---:|")
            for kind, rec in st["files"].items():
                for name, c in rec["cold"].items():
                    gbs = rec["size"] / c["median_s"] / 2**30
                    resid = ",".join("?" if r is None else f"{r / MiB:.0f}MiB"
                                     for r in c["resident_after_evict"])
                    anon = max(m["anon_growth"] for m in c["rss"]) / MiB
                    say(f"| {kind} | {name} | {c['median_s']:.3f} | {gbs:.2f} | "
                        f"{rec['warm'][name]['median_s']:.3f} | {resid} ({c['evict']}) | {anon:.0f} |")
            say("\n| ratio | value | target |")
            say("|---|---:|---|")
            for kind, rec in st["files"].items():
                fwc = rec["cold"].get("fw.virtual_image(fw.load)", {}).get("median_s")
                base = rec["cold"]["plain read"]["median_s"]
                say(f"| {kind}: fw cold / plain read cold | {fmt_ratio(ratio(fwc, base))} | "
                    f"{verdict(ratio(fwc, base), 1.5)} |")
                fww = rec["warm"].get("fw.virtual_image(fw.load)", {}).get("median_s")
                say(f"| {kind}: fw warm / plain read warm | "
                    f"{fmt_ratio(ratio(fww, rec['warm']['plain read']['median_s']))} | (context) |")
            for kind, rec in st["files"].items():
                if rec.get("opened_with"):
                    say(f"- {kind} opened with {rec['opened_with']}")
                if "agreement" in rec:
                    a = rec["agreement"]
                    say(f"- {kind} agreement: {a['best_convention']}, rel L2 {a['rel_l2']:.2e}")
                    fw_cold = rec["cold"].get("fw.virtual_image(fw.load)")
                    if fw_cold:
                        anon = max(m["anon_growth"] for m in fw_cold["rss"])
                        say(f"- {kind} fw peak anonymous memory growth {anon / MiB:.0f} MiB vs budget "
                            f"{st['budget_bytes'] / MiB:.0f} MiB: "
                            f"{'within' if anon <= st['budget_bytes'] else 'OVER'}")
    say("=" * 78)


def jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def main() -> None:
    args = ARGS
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if args.streaming_child:
        print(RESULT_PREFIX + json.dumps(streaming_child(args), default=jsonable), flush=True)
        return
    t_start = time.perf_counter()
    results: dict = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "environment": {"cpus": os.cpu_count(), "machine": platform.machine(),
                                     "python": platform.python_version(), "numpy": np.__version__,
                                     "coretype_env": {k: os.environ[k] for k in CORETYPE_VARS
                                                      if k in os.environ}}}
    if not args.skip_memory:
        memory_part(args, results)
    if not args.skip_streaming:
        streaming_part(args, results)
    results["total_s"] = time.perf_counter() - t_start
    report(results, args)
    path = Path(args.json) if args.json else cache / "results_latest.json"
    path.write_text(json.dumps(results, indent=1, default=jsonable))
    say(f"all figures: {path} (total {results['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
