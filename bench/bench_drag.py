#!/usr/bin/env python
"""Detector-drag benchmark: how fast the linked explorer answers a moved or resized detector.

One command, one run (by hand, never in CI)::

    python bench/bench_drag.py

What it does, in order:

1. Builds the benchmark cube in memory: uint16, scan 256x256, detector 128x128 (2 GiB),
   Poisson counts around a bright central disk, a ring and a few Bragg spots (seeded).
2. Builds :class:`fourd_widgets.analysis.interactive.DragCache` (the detector-major
   prefix-sum cache) and reports its build time and memory.
3. Simulates drags: for each shape (circle, annulus, rectangle, polygon) ``--steps``
   successive positions and sizes, from a few pixels to nearly the whole detector;
   every ``cache.image(detector)`` call is timed. Then a mask painted with a brush
   (the incremental path), and the centre-of-mass responses.
4. Checks a few drag images against ``fw.virtual_image`` (must be equal: integer data).
5. For comparison, in the same process: a plain numpy full recompute
   (``(block * mask).sum()`` over scan chunks), the chunked ``fw.virtual_image``,
   and a py4DSTEM-style per-position loop (``np.sum(pattern * mask)`` per position),
   timed on ``--loop-subset`` positions and extrapolated to the whole scan.
6. The binned preview (:class:`PreviewCache`, as for a cube larger than the cache
   budget): build time, preview latency during a drag, full image on release.
7. Prints a table and writes it to bench/RESULTS.md under "Detector drag (explorer)"
   (replacing only that section).

The machine may be shared: the figures are medians (p50) and 95th percentiles (p95).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = "## Detector drag (explorer)"


def make_cube(scan: int, det: int, seed: int) -> np.ndarray:
    """Poisson counts of a few pattern variants (disk, ring, spots), one per position."""
    rng = np.random.default_rng(seed)
    q = np.arange(det) - (det - 1) / 2
    r = np.hypot(q[:, None], q[None, :])
    base = 40.0 * (r < det * 0.12) + 6.0 * np.exp(-((r - det * 0.3) / 3.0) ** 2) + 0.5
    variants = []
    for v in range(24):
        lam = base.copy()
        for _ in range(8):
            x, y = rng.uniform(0.1, 0.9, 2) * det
            lam += 25.0 * np.exp(-((np.arange(det)[:, None] - x) ** 2 + (np.arange(det)[None, :] - y) ** 2) / 4.0)
        variants.append(rng.poisson(lam * rng.uniform(0.5, 1.5)).astype(np.uint16))
    variants = np.stack(variants)
    data = np.empty((scan, scan, det, det), np.uint16)
    for i in range(scan):
        data[i] = variants[rng.integers(0, len(variants), scan)]
        data[i] += rng.integers(0, 3, size=(scan, 1, 1), dtype=np.uint16)
    return data


def drag_detectors(kind: str, steps: int, det: int, seed: int) -> list:
    """``steps`` detectors along a drag path, sizes from small to nearly the whole detector."""
    from fourd_widgets.analysis.detectors import Annulus, Circle, Polygon, Rectangle

    rng = np.random.default_rng(seed)
    out = []
    c0 = (det - 1) / 2
    for i in range(steps):
        f = (i + 1) / steps  # grows along the drag
        cx, cy = c0 + 0.15 * det * np.sin(i / 7.0) + rng.uniform(-0.5, 0.5), c0 + 0.15 * det * np.cos(i / 9.0)
        size = 2.0 + f * 0.48 * det
        if kind == "circle":
            out.append(Circle((cx, cy), size))
        elif kind == "annulus":
            out.append(Annulus((cx, cy), size * 0.5, size))
        elif kind == "rectangle":
            out.append(Rectangle((cx - size, cx + size * 0.8), (cy - size * 0.7, cy + size)))
        else:
            n = 5 + i % 4
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = size * rng.uniform(0.6, 1.0, n)
            out.append(Polygon(tuple((float(cx + a * np.cos(t)), float(cy + a * np.sin(t))) for t, a in zip(ang, rad))))
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def numpy_full(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Plain numpy recompute: (block * mask).sum() over scan chunks of 8 rows."""
    out = np.empty(data.shape[:2])
    m = mask.astype(np.float32)
    for r in range(0, data.shape[0], 8):
        out[r:r + 8] = (data[r:r + 8] * m).sum(axis=(2, 3))
    return out


def per_position_loop(data: np.ndarray, mask: np.ndarray, n: int) -> float:
    """py4DSTEM-style: one np.sum(pattern * mask) per scan position; seconds for ``n`` positions."""
    Ry = data.shape[1]
    t = time.perf_counter()
    for i in range(n):
        np.sum(data[i // Ry, i % Ry] * mask)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", type=int, default=256)
    ap.add_argument("--det", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200, help="drag steps per shape")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--loop-subset", type=int, default=2000)
    ap.add_argument("--preview-budget", type=float, default=1.2, help="GiB for the preview cache")
    ap.add_argument("--moments", action="store_true",
                    help="also build the cache with moments (2x memory) and time the com_y drag on it")
    ap.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    args = ap.parse_args(argv)

    import numba

    import fourd_widgets as fw
    from fourd_widgets.analysis.detectors import Circle, Mask, detector_mask
    from fourd_widgets.analysis.interactive import DragCache, PreviewCache
    from fourd_widgets.analysis.virtual import virtual_image

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    data, t_gen = timed(make_cube, args.scan, args.det, args.seed)
    cube = fw.DataCube(data)
    det_shape = cube.detector_shape
    print(f"cube {data.shape} {data.dtype} {data.nbytes / 2**30:.2f} GiB generated in {t_gen:.1f} s", flush=True)

    # --- build -------------------------------------------------------------------------
    rss0 = rss()
    cache = DragCache(cube)
    _, t_build = timed(cache.build, progress=False)
    rss1 = rss()
    cache_bytes = cache.nbytes
    t_jit0 = time.perf_counter()
    cache.image(Circle((1.0, 1.0), 3.0))  # first query: loads the JIT cache of the query kernel
    t_first = time.perf_counter() - t_jit0

    # --- drags -------------------------------------------------------------------------
    rows: list[tuple[str, list[float], str]] = []
    checks: list = []
    for kind in ("circle", "annulus", "rectangle", "polygon"):
        dets = drag_detectors(kind, args.steps, args.det, args.seed)
        times = []
        for d in dets:
            _, t = timed(cache.image, d)
            times.append(t)
        checks += [dets[0], dets[len(dets) // 2], dets[-1]]
        rows.append((kind, times, f"{args.steps} steps, size 2 px .. {0.5 * args.det:.0f} px"))

    # a brush painting a free-form mask: each step adds a small disc (incremental path)
    rng = np.random.default_rng(args.seed)
    w = np.zeros(det_shape, bool)
    yy, xx = np.mgrid[:det_shape[0], :det_shape[1]]
    x, y = det_shape[0] * 0.3, det_shape[1] * 0.3
    times = []
    for i in range(args.steps):
        x = float(np.clip(x + rng.normal(0, 2.0), 0, det_shape[0] - 1))
        y = float(np.clip(y + rng.normal(0, 2.0), 0, det_shape[1] - 1))
        w = w | ((xx - x) ** 2 + (yy - y) ** 2 < 9.0)
        _, t = timed(cache.image, Mask(w.copy()))
        times.append(t)
    checks.append(Mask(w.copy()))
    rows.append(("mask (brush)", times, f"{args.steps} strokes of a radius-3 brush, {int(w.sum())} px at the end"))

    for resp in ("com_x", "com_y"):
        dets = [Circle(d.center, d.radius, response=resp) for d in drag_detectors("circle", args.steps // 4, args.det, 1)]
        times = [timed(cache.image, d)[1] for d in dets]
        note = "moments cache off: cost grows with area" if resp == "com_y" else "same pass as the sum"
        rows.append((f"circle {resp}", times, f"{len(dets)} steps, {note}"))

    # --- correctness against the chunked reference ---------------------------------------
    worst = 0.0
    for d in checks:
        a = cache.image(d)
        b = virtual_image(cube, d, progress=False)
        worst = max(worst, float(np.max(np.abs(a - b))))
    exact = worst == 0.0

    # --- peers ---------------------------------------------------------------------------
    probe = Circle((args.det / 2, args.det / 2), args.det * 0.3)
    mask = detector_mask(probe, det_shape)
    virtual_image(cube, probe, progress=False)  # JIT warm-up
    t_np = min(timed(numpy_full, data, mask)[1] for _ in range(2))
    t_vi = min(timed(virtual_image, cube, probe, progress=False)[1] for _ in range(2))
    n_sub = min(args.loop_subset, args.scan * args.scan)
    t_loop = per_position_loop(data, mask, n_sub) * (args.scan * args.scan) / n_sub
    t_cache = statistics.median(rows[0][1])

    cache.release()
    del cache
    if args.moments:
        mcache = DragCache(cube, moments=True, budget_bytes=2 * DragCache.required_bytes(cube))
        _, t_mbuild = timed(mcache.build, progress=False)
        mbytes = mcache.nbytes
        dets = [Circle(d.center, d.radius, response="com_y") for d in drag_detectors("circle", args.steps, args.det, 1)]
        mcache.image(dets[0])
        times = [timed(mcache.image, d)[1] for d in dets]
        rows.append(("circle com_y, moments=True", times,
                     f"{len(dets)} steps; cache {mbytes / 2**30:.0f} GiB built in {t_mbuild:.1f} s"))
        mcache.release()
        del mcache

    # --- preview -------------------------------------------------------------------------
    budget = int(args.preview_budget * 2**30)
    preview = PreviewCache(cube, budget_bytes=budget)
    _, t_pbuild = timed(preview.build, progress=False)
    pdets = drag_detectors("circle", args.steps, args.det, args.seed + 1)
    ptimes = []
    for d in pdets:
        r, t = timed(preview.image, d)
        assert r.is_preview
        ptimes.append(t)
    _, t_full = timed(preview.full, pdets[-1])
    ref = virtual_image(cube, pdets[-1], progress=False)
    prev_img = preview.image(pdets[-1]).expanded()
    rel = float(np.nanmedian(np.abs(prev_img - ref) / np.maximum(np.abs(ref), 1)))

    # --- report --------------------------------------------------------------------------
    say(SECTION)
    say()
    say(f"Command: `python bench/bench_drag.py{' ' + ' '.join(argv) if argv else ''}` "
        f"({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, numba {numba.__version__} with {numba.get_num_threads()} threads, "
        f"numpy {np.__version__}). The machine was shared with other jobs: medians are the figure "
        "to quote.")
    say()
    say(f"Cube: {data.shape} uint16 in memory, {data.nbytes / 2**30:.2f} GiB, Poisson counts (seed {args.seed}).")
    say()
    say(f"DragCache build: {t_build:.1f} s (one pass; includes first-touch of the cache pages), "
        f"cache {cache_bytes / 2**30:.2f} GiB of uint32 prefix sums ({cache_bytes / data.nbytes:.1f}x the cube; "
        f"process RSS grew by {(rss1 - rss0) / 2**30:.2f} GiB); "
        f"first query after build {t_first * 1e3:.0f} ms (kernel JIT cache load).")
    say()
    say("| drag | calls | p50 ms | p95 ms | max ms | what |")
    say("|---|---:|---:|---:|---:|---|")
    for name, times, what in rows:
        say(f"| {name} | {len(times)} | {pct(times, 50) * 1e3:.1f} | {pct(times, 95) * 1e3:.1f} | "
            f"{max(times) * 1e3:.1f} | {what} |")
    say()
    say(f"Every checked drag image equals `fw.virtual_image` exactly: {exact} "
        f"({len(checks)} detectors, max abs difference {worst:g}).")
    say()
    say("Full recompute of one image, for comparison (circle of radius 0.3 Qx):")
    say()
    say("| method | time | vs cache p50 (circle) |")
    say("|---|---:|---:|")
    say(f"| DragCache.image (p50 of the circle drag) | {t_cache * 1e3:.1f} ms | 1x |")
    say(f"| numpy `(block * mask).sum()` over the in-memory cube | {t_np * 1e3:.0f} ms | {t_np / t_cache:.0f}x |")
    say(f"| `fw.virtual_image` (chunked engine) | {t_vi * 1e3:.0f} ms | {t_vi / t_cache:.0f}x |")
    say(f"| py4DSTEM-style per-position loop (**extrapolated** from {n_sub} positions) | "
        f"{t_loop:.1f} s | {t_loop / t_cache:.0f}x |")
    say()
    sr, _, sq, _ = preview.binning
    say(f"PreviewCache (budget {args.preview_budget:g} GiB, as for a cube larger than the budget): "
        f"binning scan {sr}x{sr}, detector {sq}x{sq}, {preview.nbytes / 2**30:.2f} GiB, built in "
        f"{t_pbuild:.1f} s by streaming the cube once. Preview during a circle drag: p50 "
        f"{pct(ptimes, 50) * 1e3:.1f} ms, p95 {pct(ptimes, 95) * 1e3:.1f} ms ({len(ptimes)} calls; "
        f"median relative deviation from the exact image {rel:.2%}). Exact image on release "
        f"(`full()`, chunked engine): {t_full * 1e3:.0f} ms.")
    say()
    if not args.no_results:
        write_section(HERE / "RESULTS.md", "\n".join(lines) + "\n")
    return 0


def write_section(path: Path, text: str) -> None:
    """Replace (or append) only the "Detector drag (explorer)" section of RESULTS.md."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("\n" + old[end + 1:] if end >= 0 else "")
    path.write_text(new, encoding="utf-8")
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
