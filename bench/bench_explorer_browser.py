"""Browser benchmark of the explorer: mouse move -> repainted virtual image, during a detector drag.

Run by hand (``python bench/bench_explorer_browser.py``); it appends its figures to bench/RESULTS.md.

Voila serves a notebook that builds the benchmark cube in its kernel: a 256x256 scan of 128x128
uint16 patterns (2 GiB, in memory) and shows ``Explorer(cube)``; after the drag cache is built,
Chromium (Playwright) drags the bright-field detector with the mouse:

* **step latency**: one mouse move of ~1 detector pixel, then wait for the real-space canvas to
  repaint with a new image; latency = repaint time - time of the pointer event (both
  ``performance.now()`` in the page). p50 / p95 over ``--steps`` moves;
* **update rate**: a continuous drag (one move every ~16 ms for ``--seconds``); repaints of the
  real-space view with a new image per second;
* **compute time per update**: ``explorer.compute_times`` of the kernel ('drag' = drag-cache query).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "browser"))
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, screen_point, start_voila, view_info  # noqa: E402

NOTEBOOK = '''\
import json, threading, time
from pathlib import Path
import numpy as np
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.analysis.detectors import Circle, Annulus
from fourd_widgets.widgets import Explorer

Rx = Ry = {scan}
Q = 128
qx, qy = np.meshgrid(np.arange(Q), np.arange(Q), indexing="ij")
r2 = (qx - 64) ** 2 + (qy - 64) ** 2
disc = (r2 < 12 ** 2).astype(np.float32) * 300
ring = ((r2 > 25 ** 2) & (r2 < 50 ** 2)).astype(np.float32) * 20
noise = np.random.default_rng(0).integers(0, 8, size=(16, Q, Q)).astype(np.float32)
data = np.empty((Rx, Ry, Q, Q), dtype=np.uint16)
ry = np.arange(Ry, dtype=np.float32)
for i in range(Rx):
    bright = 1 + 0.5 * np.sin((i + ry) / 9.0)
    data[i] = (bright[:, None, None] * disc + (2 - bright)[:, None, None] * ring + noise[i % 16]).astype(np.uint16)
cube = DataCube(data, Calibration(real_step=2.0, reciprocal_step=0.02, origin=(64.0, 64.0)))
ex = Explorer(cube, [Circle((64.0, 64.0), 12.0), Annulus((64.0, 64.0), 25.0, 50.0)], size=384)
OUT = Path({out!r})

def report():
    ex.wait_cache(3600)
    while True:
        (OUT / "times.tmp").write_text(json.dumps({{"cache": ex.wait_cache(0), "times": list(ex.compute_times),
                                                    "status": ex.status.value, "nbytes": cube.nbytes}}))
        (OUT / "times.tmp").replace(OUT / "times.json")
        time.sleep(0.5)

threading.Thread(target=report, daemon=True).start()
ex
'''

PROBE = """() => {
  const views = document.querySelectorAll('.fw-view');
  const dv = views[0].querySelector('canvas.fw-canvas');
  const real = views[1];
  window.__moves = []; window.__paints = [];
  dv.addEventListener('pointermove', (e) => window.__moves.push(e.timeStamp), true);
  let last = real.dataset.imageVersion;
  new MutationObserver(() => {
    if (real.dataset.imageVersion !== last) { last = real.dataset.imageVersion;
      window.__paints.push(+real.dataset.paintedAt); }
  }).observe(real, {attributes: true, attributeFilter: ['data-painted-at']});
}"""


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def read_times(out: Path) -> dict:
    for _ in range(50):
        try:
            return json.loads((out / "times.json").read_text())
        except (OSError, ValueError):
            time.sleep(0.2)
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", type=int, default=256, help="scan side (256 = the 2 GiB cube)")
    ap.add_argument("--steps", type=int, default=60, help="single moves timed for the latency")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the continuous drag")
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "nb", Path(tmp) / "out"
        root.mkdir()
        out.mkdir()
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK.format(scan=args.scan, out=str(out)))]
        nbformat.write(nb, root / "bench.ipynb")
        server = start_voila(root, Path(tmp))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.set_default_timeout(900_000)
                t0 = time.perf_counter()
                page.goto(f"{server.base}/voila/render/bench.ipynb")
                page.wait_for_function("() => document.querySelectorAll('.fw-view').length >= 3 && "
                                       "+document.querySelectorAll('.fw-view')[1].dataset.imageVersion >= 1")
                first_image = time.perf_counter() - t0
                deadline = time.monotonic() + 1800
                while not read_times(out).get("cache"):
                    if time.monotonic() > deadline:
                        raise SystemExit("the drag cache was not built in 30 min")
                    time.sleep(1)
                cache_ready = time.perf_counter() - t0
                page.evaluate(PROBE)
                info = view_info(page, 0)
                s = info["transform"]["s"] * info["box"]["width"] / info["box"]["cw"]
                x, y = screen_point(info, 64.0, 64.0)
                page.mouse.move(x, y)
                page.mouse.down()
                latencies = []
                for k in range(args.steps):
                    n = page.evaluate("() => window.__paints.length")
                    time.sleep(0.06)  # past the 50 ms throttle: each step is sent at once
                    x += s * (1 if (k // 10) % 2 == 0 else -1)
                    page.mouse.move(x, y)
                    page.wait_for_function("(n) => window.__paints.length > n", arg=n)
                    move, paint = page.evaluate("() => [window.__moves[window.__moves.length - 1], "
                                                "window.__paints[window.__paints.length - 1]]")
                    latencies.append(paint - move)
                page.evaluate("() => { window.__paints = []; }")
                start = page.evaluate("() => performance.now()")
                t_end = time.monotonic() + args.seconds
                k = 0
                while time.monotonic() < t_end:
                    x += s * 0.5 * (1 if (k // 40) % 2 == 0 else -1)
                    page.mouse.move(x, y)
                    time.sleep(0.016)
                    k += 1
                stop = page.evaluate("() => performance.now()")
                page.mouse.up()
                time.sleep(1.0)
                paints = page.evaluate("() => window.__paints")
                rate = len([p for p in paints if start <= p <= stop]) / ((stop - start) / 1000)
                times = read_times(out)
                browser.close()
        finally:
            server.stop()
    drag = [t for kind, t in times.get("times", []) if kind == "drag"]
    result = {
        "cube": f"{args.scan}x{args.scan} scan of 128x128 uint16 ({times.get('nbytes', 0) / 2**30:.2f} GiB, in memory)",
        "first image s": round(first_image, 1), "cache ready s": round(cache_ready, 1),
        "latency p50 ms": round(statistics.median(latencies), 1), "latency p95 ms": round(percentile(latencies, 95), 1),
        "updates per s": round(rate, 1), "moves timed": len(latencies), "drag computes": len(drag),
        "compute p50 ms": round(1000 * statistics.median(drag), 1) if drag else None,
        "compute p95 ms": round(1000 * percentile(drag, 95), 1) if drag else None,
    }
    print(json.dumps(result, indent=1))
    if not args.no_write:
        append_results(result)


def append_results(r: dict) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""
## Explorer in the browser: detector drag (bench_explorer_browser.py)

`python bench/bench_explorer_browser.py` ({stamp}; 2 cores, no GPU, Voila 0.5 + Debian Chromium headless via
Playwright). Cube: {r['cube']}; `Explorer(cube)` with a BF disc (r = 12 px) and an annulus; the drag
cache (`interactive_cache`, exact `DragCache`) was ready {r['cache ready s']} s after the page was opened
(first images after {r['first image s']} s, which includes generating the cube in the kernel). The BF disc
is dragged with the mouse.

| measure | value |
|---|---|
| mouse move -> repainted real-space canvas, p50 ({r['moves timed']} single moves) | **{r['latency p50 ms']} ms** |
| same, p95 | {r['latency p95 ms']} ms |
| real-space repaints with a new image during a continuous drag | **{r['updates per s']} per s** |
| kernel compute per drag update (drag-cache query), p50 / p95 ({r['drag computes']} updates) | **{r['compute p50 ms']} ms** / {r['compute p95 ms']} ms |

Latency includes the JS throttle (50 ms between sends; a move after a pause is sent at once), the
websocket round trip, the query on the kernel's worker thread and the browser's colormap pass.
"""
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
