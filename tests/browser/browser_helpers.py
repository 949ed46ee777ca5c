"""Helpers of the browser tests: the test cube, the test notebook, servers on free ports, page probes."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

import fourd_widgets.analysis.virtual  # noqa: F401  (registers the virtual_image step for Recipe.from_json)
from fourd_widgets.analysis.run import run
from fourd_widgets.core.recipe import Recipe

#: Chromium flags that work in this sandbox (Playwright's own browser download does not).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: The checkout these tests belong to (kernels import fourd_widgets from here).
REPO = Path(__file__).resolve().parents[2]
#: Limits (not speed checks): server start, one page condition.
SERVER_START_S = 120
WAIT_S = 90


def make_cube() -> Any:
    """The test cube: 24x24 scan of 32x32 uint16 patterns, a bright disc whose intensity varies over the scan."""
    from fourd_widgets.core import Calibration, DataCube

    rng = np.random.default_rng(7)
    rx, ry = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    qx, qy = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    disc = ((qx - 16) ** 2 + (qy - 15) ** 2 < 25).astype(np.float64)
    ring = (((qx - 16) ** 2 + (qy - 15) ** 2 > 64) & ((qx - 16) ** 2 + (qy - 15) ** 2 < 144)).astype(np.float64)
    bright = 200 + 100 * np.sin(rx / 3.0)[..., None, None]
    dark = 20 + 15 * np.cos(ry / 2.0)[..., None, None] + 10 * (rx % 5 == 0)[..., None, None]
    data = bright * disc + dark * ring + rng.poisson(3, size=(24, 24, 32, 32))
    return DataCube(data.astype(np.uint16), Calibration(real_step=1.5, reciprocal_step=0.02, origin=(16.0, 15.0)))


SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
from fourd_widgets.analysis.detectors import Circle, Annulus, Polygon
from fourd_widgets.widgets import Explorer
from browser_helpers import make_cube
STATE = Path({state!r})
cube = make_cube()
ex = Explorer(cube, {detectors}, size=320{options})
_lock = threading.Lock()
_count = [0]

def dump(*_):
    with _lock:
        _count[0] += 1
        views = [ex.diffraction_view, *ex.real_views]
        state = {{"count": _count[0], "params": ex.params.to_json(), "exact": ex.exact, "updates": ex.updates,
                 "versions": [v.image_version for v in views], "colormaps": [v.colormap for v in views],
                 "contrast": [v.contrast for v in views], "vmax": [v.vmax for v in views], "vmin": [v.vmin for v in views],
                 "overlays": ex.diffraction_view.overlays, "selector": ex.selector,
                 "badges": [v.badge for v in ex.real_views],
                 "cache": type(ex.drag_cache).__name__}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), virtual=ex.virtual_images,
                 pattern=ex.diffraction_pattern if ex.diffraction_pattern is not None else np.zeros(0),
                 wire=np.stack([v.wire_image for v in ex.real_views]))
        os.replace(tmp, STATE / "state.npz")

ex.on_update(dump)
for _v in [ex.diffraction_view, *ex.real_views]:
    _v.observe(dump, names=["colormap", "contrast", "vmin", "vmax", "percentiles", "scale"])
ex.wait()
ex.wait_cache(120)  # drags use the cache (exact or binned preview), never a full pass
dump()
ex
'''


#: The explorer's detectors unless a test gives others.
DEFAULT_DETECTORS = "[Circle((16.0, 15.0), 4.0), Annulus((16.0, 15.0), 8.0, 11.0)]"


def write_notebook(folder: Path, name: str, source: str, title: str = "# Under test") -> Path:
    """A notebook of one markdown cell and one code cell ``source``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_code_cell(source)]
    path = folder / name
    nbformat.write(nb, path)
    return path


def write_test_notebook(folder: Path, name: str, state: Path, detectors: str = DEFAULT_DETECTORS,
                        options: str = "") -> Path:
    """A notebook that shows an Explorer on :func:`make_cube` and dumps its state to ``state``.

    ``detectors`` is Python source of the detector list; ``options`` more keyword
    arguments of the Explorer, as source starting with a comma.
    """
    state.mkdir(parents=True, exist_ok=True)
    return write_notebook(folder, name, SETUP.format(state=str(state), detectors=detectors, options=options),
                          "# Explorer under test")


def read_state(state: Path) -> dict | None:
    """The last dump written by the notebook (None before the first).

    ``state.npz`` (a JSON ``state`` plus arrays, which join the dict by name) or ``state.json``.
    """
    f = state / "state.npz"
    if not f.exists():
        try:
            return json.loads((state / "state.json").read_text())
        except (OSError, ValueError):  # not there yet, or being replaced right now
            return None
    for _ in range(20):
        try:
            with np.load(f) as z:
                out = json.loads(str(z["state"]))
                out.update({name: z[name] for name in z.files if name != "state"})
                return out
        except (OSError, ValueError, KeyError, EOFError):  # being replaced right now
            time.sleep(0.05)
    return None


def wait_state(state: Path, predicate, what: str, timeout: float = WAIT_S) -> dict:
    """Poll the dump until ``predicate(state)`` holds; the failure shows its scalar entries."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = read_state(state) or last
        if last is not None and predicate(last):
            return last
        time.sleep(0.1)
    shown = {k: v for k, v in (last or {}).items() if not isinstance(v, np.ndarray) and k != "params"}
    raise AssertionError(f"timed out waiting for {what}; last state: {shown}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A Jupyter server process (JupyterLab or Voila) on 127.0.0.1, stopped by :meth:`stop`."""

    def __init__(self, args: list[str], port: int, ready_path: str, home: Path, log: Path) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   JUPYTER_DATA_DIR=env.get("JUPYTER_DATA_DIR", str(Path(sys.prefix) / "share" / "jupyter")),
                   # the checkout under test comes first: the installed (editable) copy may be another one
                   PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(REPO), env.get("PYTHONPATH", "")]))
        self.log = open(log, "w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, cwd=home)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"{args[2]} exited at start; see {log}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + ready_path, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"{args[2]} did not answer on {self.base}{ready_path}; see {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def start_lab(root: Path, home: Path) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True", "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None", "--ServerApp.port_retries=0", "--allow-root"]
    return Server(args, port, "/api/status", home, home / "jupyterlab.log")


def start_voila(root: Path, home: Path) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "voila", str(root), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0"]
    return Server(args, port, "/", home, home / "voila.log")


# --- page probes -----------------------------------------------------------------------------
def view_info(page, index: int) -> dict:
    """Data attributes of the index-th image view on the page, with the canvas box."""
    return page.evaluate("""(i) => {
        const root = document.querySelectorAll('.fw-view')[i];
        const c = root.querySelector('canvas.fw-canvas');
        const r = c.getBoundingClientRect();
        return {version: +root.dataset.imageVersion, badge: root.dataset.badge || '',
                markersDrawn: +root.dataset.markersDrawn, renders: +root.dataset.renderCount,
                transform: JSON.parse(root.dataset.transform || '{}'), overlays: JSON.parse(root.dataset.overlays || '[]'),
                colormap: root.dataset.colormap, vmax: +root.dataset.vmax,
                box: {left: r.left, top: r.top, width: r.width, height: r.height, cw: c.width, ch: c.height}};
    }""", index)


def screen_point(info: dict, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image point (x = row, y = column) in a view."""
    t, b = info["transform"], info["box"]
    X = (y + 0.5) * t["s"] + t["ox"]
    Y = (x + 0.5) * t["s"] + t["oy"]
    return b["left"] + X * b["width"] / b["cw"], b["top"] + Y * b["height"] / b["ch"]


def pixel_at(page, index: int, info: dict, x: float, y: float) -> tuple[int, int, int, int]:
    """RGBA of the canvas pixel under image point (x = row, y = column) of the index-th view."""
    t = info["transform"]
    return tuple(page.evaluate("""([i, X, Y]) => {
        const c = document.querySelectorAll('.fw-view')[i].querySelector('canvas.fw-canvas');
        return Array.from(c.getContext('2d').getImageData(X, Y, 1, 1).data);
    }""", [index, int((y + 0.5) * t["s"] + t["ox"]), int((x + 0.5) * t["s"] + t["oy"])]))


def press_and_move(page, start: tuple[float, float], by: tuple[float, float], steps: int) -> None:
    """Press the mouse at page point ``start`` and move it by ``by`` screen px in ``steps`` moves (button held)."""
    x0, y0 = start
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(x0 + by[0] * k / steps, y0 + by[1] * k / steps)
        time.sleep(0.02)  # separate moves, as a hand makes them (the view throttles what it sends)


def canvas_pixels(page, index: int) -> bytes:
    """The RGBA pixels of the index-th view's canvas (read back from the page, as base64: a JSON list of
    400 000 numbers costs seconds on a loaded machine)."""
    data = page.evaluate("""(i) => {
        const c = document.querySelectorAll('.fw-view')[i].querySelector('canvas.fw-canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = '';
        for (let k = 0; k < px.length; k += 0x8000) s += String.fromCharCode.apply(null, px.subarray(k, k + 0x8000));
        return btoa(s);
    }""", index)
    return base64.b64decode(data)


def wait_views(page, count: int, timeout: float = WAIT_S) -> None:
    """Until ``count`` views have painted an image."""
    page.wait_for_function(
        """(n) => { const v = document.querySelectorAll('.fw-view');
                    return v.length >= n && Array.from(v).slice(0, n).every(e => +e.dataset.imageVersion >= 1); }""",
        arg=count, timeout=timeout * 1000)


# --- assertions shared by the browser tests ----------------------------------------------------
def d0(state: dict) -> dict:
    return next(o for o in state["overlays"] if o["id"] == "d0")


def assert_replay(state: dict, cube) -> None:
    """What Python showed equals a headless replay of explorer.params; the browser got the float32 copy."""
    res = run(Recipe.from_json(state["params"]), cube)
    np.testing.assert_array_equal(res["virtual_image"], state["virtual"])
    np.testing.assert_array_equal(res["virtual_image"].astype(np.float32), state["wire"])
    np.testing.assert_array_equal(res["virtual_diffraction"], state["pattern"])


def wait_canvas_change(page, index: int, before: bytes, what: str) -> bytes:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        now = canvas_pixels(page, index)
        if now != before:
            return now
        time.sleep(0.1)
    raise AssertionError(f"the canvas of view {index} did not change after {what}")
