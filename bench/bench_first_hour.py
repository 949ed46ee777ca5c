#!/usr/bin/env python
"""A real-sized first hour: a 2 GiB file opened in the dashboard, first image, drag cache, memory.

One command, one run (by hand, never in CI)::

    python bench/bench_first_hour.py                 # 128 x 128 scan of 256 x 256 uint16 (2 GiB)
    python bench/bench_first_hour.py --scan 64       # smaller, for a quick look

What it does, in order:

1. Writes the cube to an HDF5 file in ``--dir`` (default: a temporary folder), chunked one
   scan row of patterns per chunk as detectors write them, unless the file is already there.
   Poisson counts around a bright disk that is off the detector centre, a ring and spots.
2. Drops the file from the page cache when it can (``posix_fadvise``), so the first read is
   a cold read as after an acquisition.
3. In this process, as the dashboard's kernel does: ``Dashboard(folder)``, picks the file,
   and times (a) the first virtual images complete (every position painted, polled every 0.1 s),
   (a') the defaults refined on the full mean pattern (``explorer.wait()``), (b) the drag cache built (``explorer.wait_cache()``), sampling the explorer's status line
   every 0.1 s to record the progress it shows, and the process's resident memory.
4. Prints the figures and the progress seen, and writes them to bench/RESULTS.md under
   "A real-sized first hour" (replacing only that section).

Targets (issue "The first hour of a new user"): a first image within 10 s; a progress bar
while the drag cache builds; resident memory bounded (the cache budget plus a few chunks,
not the size of the file).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = "## A real-sized first hour"


def write_cube(path: Path, scan: int, det: int, seed: int = 0) -> None:
    import h5py

    rng = np.random.default_rng(seed)
    ii, jj = np.indices((det, det))
    cx, cy = 0.42 * det, 0.55 * det  # the beam is not at the detector centre
    r = np.hypot(ii - cx, jj - cy)
    lam = 60.0 * (r < det * 0.08) + 4.0 * np.exp(-((r - det * 0.3) / 4.0) ** 2) + 0.3
    tmp = path.with_suffix(".partial.h5")
    with h5py.File(tmp, "w") as f:
        d = f.create_dataset("data", shape=(scan, scan, det, det), dtype=np.uint16, chunks=(1, scan, det, det))
        for x in range(scan):
            d[x] = rng.poisson(lam, size=(scan, det, det)).astype(np.uint16)
    os.replace(tmp, path)


def drop_page_cache(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (AttributeError, OSError):
        return False


def status_text(explorer) -> str:
    for name in ("status", "_status"):
        value = getattr(explorer, name, None)
        text = getattr(value, "value", value)
        if isinstance(text, str):
            return text
    session = getattr(explorer, "session", None)
    busy = getattr(session, "busy", None)
    return busy if isinstance(busy, str) else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=int, default=128)
    parser.add_argument("--det", type=int, default=256)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "fourd-first-hour")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)

    import psutil

    from fourd_widgets.app.dashboard_ui import Dashboard

    args.dir.mkdir(parents=True, exist_ok=True)
    name = f"scan_{args.scan}x{args.scan}_det_{args.det}x{args.det}.h5"
    path = args.dir / name
    if not path.exists():
        t = time.perf_counter()
        write_cube(path, args.scan, args.det)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t:.1f} s")
    cold = drop_page_cache(path)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    peak = [rss0]
    seen: list[tuple[float, str]] = []
    stop = threading.Event()
    board_ref: dict = {}
    first_image: dict = {}
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            board = board_ref.get("board")
            explorer = getattr(board, "explorer", None) if board is not None else None
            if explorer is not None:
                if "first" not in first_image:
                    try:  # every position of every virtual image painted: the first image is on screen
                        if np.isfinite(explorer.virtual_images).all():
                            first_image["first"] = time.perf_counter() - t0
                    except Exception:  # noqa: BLE001 - not built yet
                        pass
                text = status_text(explorer)
                if text and (not seen or seen[-1][1] != text):
                    seen.append((time.perf_counter() - t0, text))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    board = Dashboard(args.dir, output_dir=args.dir / "out", size=360)
    board_ref["board"] = board
    board.open(name)
    explorer = board.explorer
    assert explorer is not None, board.message.value
    explorer.wait(600)
    t_settled = time.perf_counter() - t0
    while "first" not in first_image and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    t_first = first_image.get("first", float("nan"))
    built = explorer.wait_cache(1800)
    t_cache = time.perf_counter() - t0
    time.sleep(0.3)
    stop.set()
    sampler.join()
    board.close()
    progress = [text for _t, text in seen if "%" in text]
    rows = [
        ("file", f"{path.stat().st_size / 2**30:.2f} GiB HDF5, scan {args.scan}x{args.scan}, detector "
                 f"{args.det}x{args.det} uint16, {'cold' if cold else 'warm'} read"),
        ("first image on screen (open, detectors placed from 64 patterns, first virtual images)",
         f"{t_first:.1f} s (target <= 10 s)"),
        ("defaults refined on the full mean pattern (explorer.wait())", f"{t_settled:.1f} s"),
        ("drag cache built" if built else "drag cache not built", f"{t_cache:.1f} s"),
        ("progress messages shown while it built", f"{len(progress)} ({progress[0] if progress else '-'} ... "
                                                   f"{progress[-1] if progress else '-'})"),
        ("resident memory: start / peak / growth",
         f"{rss0 / 2**20:.0f} / {peak[0] / 2**20:.0f} / {(peak[0] - rss0) / 2**20:.0f} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if not args.no_write:
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        text = (f"{SECTION}\n\n`python bench/bench_first_hour.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}).\n\n"
                f"| what | figure |\n|---|---|\n{table}\n")
        results = HERE / "RESULTS.md"
        old = results.read_text() if results.exists() else "# Benchmark results\n"
        if SECTION in old:
            head, _, rest = old.partition(SECTION)
            nxt = rest.find("\n## ")
            old = head + text + ("\n" + rest[nxt + 1:] if nxt >= 0 else "")
        else:
            old = old.rstrip("\n") + "\n\n" + text
        results.write_text(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
