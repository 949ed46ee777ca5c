"""LiberTEM peer: ring analysis (and an 8-ring ApplyMasksUDF pass) on the cached cube.

Run with the LiberTEM venv's python (see bench/setup_peers.sh); started by
bench/bench_virtual_image.py. The cube is handed over as a MemoryDataSet (``ctx.load('memory')``),
which is the like-for-like comparison with an in-memory fw.DataCube.

Executors (``--executors``, each measured separately):
  threads  ConcurrentJobExecutor with ``--threads`` worker threads in this process (no copies
           of the data; the fair headline on a 2-core machine)
  inline   InlineJobExecutor: single process, single worker thread
  dask     local dask.distributed cluster with ``--threads`` workers; a MemoryDataSet is
           shipped to the worker processes, which LiberTEM documents as slow (for reference only)

LiberTEM's ring mask is ``ri < r <= ro`` (``masks.ring``), with cx the column (Qy) coordinate
and cy the row (Qx) coordinate.
"""

from __future__ import annotations

import time

t_import = time.perf_counter()
import numpy as np  # noqa: E402
import libertem  # noqa: E402
from libertem import masks  # noqa: E402
from libertem.api import Context  # noqa: E402
from libertem.udf.masks import ApplyMasksUDF  # noqa: E402

import _common  # noqa: E402

import_s = time.perf_counter() - t_import


def run_executor(spec: str, data: np.ndarray, args) -> tuple[dict, np.ndarray]:
    qx, qy = args.center
    t0 = time.perf_counter()
    ctx = Context.make_with(spec, cpus=args.threads) if spec != "inline" else Context.make_with("inline")
    ds = ctx.load("memory", data=data, sig_dims=2)
    setup_s = time.perf_counter() - t0
    try:
        ring = ctx.create_ring_analysis(dataset=ds, cx=qy, cy=qx, ri=args.inner, ro=args.outer)

        def run():
            return np.asarray(ctx.run(ring).intensity.raw_data)

        r = _common.timed(run, args.repeats)
        image = r.pop("result")
        out = {"executor": spec, "setup_s": setup_s, **r, "multi": None}
        if args.rings8:
            sy, sx = data.shape[2], data.shape[3]
            factories = [
                (lambda ri=ri, ro=ro: masks.ring(centerX=qy, centerY=qx, imageSizeX=sx,
                                                 imageSizeY=sy, radius=ro, radius_inner=ri))
                for ri, ro in args.rings8]
            udf = ApplyMasksUDF(mask_factories=factories)

            def run8():
                return ctx.run_udf(dataset=ds, udf=udf)["intensity"].data

            m = _common.timed(run8, args.repeats)
            m.pop("result")
            m["method"] = f"ApplyMasksUDF with {len(factories)} ring masks, one pass"
            out["multi"] = m
    finally:
        ctx.close()
    return out, image


def main() -> None:
    args = _common.parse_args(__doc__)
    t0 = time.perf_counter()
    data = np.load(args.npy)
    load_s = time.perf_counter() - t0
    runs = []
    image = None
    for spec in [s.strip() for s in args.executors.split(",") if s.strip()]:
        try:
            out, img = run_executor(spec, data, args)
        except Exception as exc:  # report and go on with the other executors
            runs.append({"executor": spec, "error": f"{type(exc).__name__}: {exc}"})
            continue
        runs.append(out)
        if image is None:
            image = img
    if image is not None:
        np.save(args.out, image)
    ok = [r for r in runs if "median_s" in r]
    best = ok[0] if ok else {}
    _common.emit({
        "peer": "LiberTEM",
        "version": libertem.__version__,
        "numpy": np.__version__,
        "method": "ctx.run(ctx.create_ring_analysis(ds, cx, cy, ri, ro)) on ctx.load('memory')",
        "mask_convention": "ri < r <= ro",
        "threads": _common.thread_info(),
        "import_s": import_s, "load_s": load_s,
        "image_path": args.out if image is not None else None,
        "headline_executor": best.get("executor"),
        "setup_s": best.get("setup_s"), "first_s": best.get("first_s"),
        "times_s": best.get("times_s"), "median_s": best.get("median_s"),
        "multi": best.get("multi"),
        "runs": runs,
    })


if __name__ == "__main__":
    main()
