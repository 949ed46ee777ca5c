"""Helpers shared by the peer scripts. Standard library + numpy only: runs in every peer venv.

A peer script is started by bench_virtual_image.py with the peer's own venv python. It loads
the cached .npy cube, computes the same annular virtual image, saves the image as .npy so the
main process can compare it numerically, and prints one line ``FOURD_BENCH_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

RESULT_PREFIX = "FOURD_BENCH_RESULT "


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--npy", required=True, help="cube saved by bench_virtual_image.py")
    p.add_argument("--center", type=float, nargs=2, required=True, metavar=("QX", "QY"))
    p.add_argument("--inner", type=float, required=True)
    p.add_argument("--outer", type=float, required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", required=True, help="where to save the virtual image (.npy)")
    p.add_argument("--rings8", default="", help='JSON list of [inner, outer] pairs for the '
                   'multi-detector pass (same centre); empty: skip it')
    p.add_argument("--executors", default="threads,inline",
                   help="LiberTEM only: comma-separated executor specs for Context.make_with")
    p.add_argument("--threads", type=int, default=2, help="worker count given to the peer")
    args = p.parse_args()
    args.rings8 = json.loads(args.rings8) if args.rings8 else []
    return args


def thread_info() -> dict:
    """BLAS/OpenMP pools as threadpoolctl sees them, plus the thread-related environment."""
    env = {k: os.environ.get(k) for k in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(k) is not None}
    try:
        from threadpoolctl import threadpool_info
        pools = [{k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
                 for d in threadpool_info()]
    except Exception as exc:  # threadpoolctl missing: say so rather than guess
        pools = [{"error": f"threadpoolctl unavailable: {exc}"}]
    return {"env": env, "pools": pools}


def timed(fn, repeats: int) -> dict:
    """First call (may include JIT / cache warm-up) timed apart, then the median of ``repeats``."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return {"result": result, "first_s": first, "times_s": times,
            "median_s": statistics.median(times), "min_s": min(times), "load": os.getloadavg()}


def emit(payload: dict) -> None:
    payload.setdefault("python", platform.python_version())
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(payload), flush=True)
