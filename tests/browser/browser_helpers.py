"""Helpers of the browser tests: the test cube, the test notebook, servers on free ports, page probes."""

from __future__ import annotations

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

#: Chromium flags that work in this sandbox (Playwright's own browser download does not).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
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
from fourd_widgets.analysis.detectors import Circle, Annulus
from fourd_widgets.widgets import Explorer
from browser_helpers import make_cube
STATE = Path({state!r})
cube = make_cube()
ex = Explorer(cube, [Circle((16.0, 15.0), 4.0), Annulus((16.0, 15.0), 8.0, 11.0)], size=320)
_lock = threading.Lock()
_count = [0]

def dump(*_):
    with _lock:
        _count[0] += 1
        views = [ex.diffraction_view, *ex.real_views]
        state = {{"count": _count[0], "params": ex.params.to_json(), "exact": ex.exact, "updates": ex.updates,
                 "versions": [v.image_version for v in views], "colormaps": [v.colormap for v in views],
                 "contrast": [v.contrast for v in views], "vmax": [v.vmax for v in views], "vmin": [v.vmin for v in views],
                 "overlays": ex.diffraction_view.overlays, "selector": ex.selector}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), virtual=ex.virtual_images,
                 pattern=ex.diffraction_pattern if ex.diffraction_pattern is not None else np.zeros(0),
                 wire=np.stack([v.wire_image for v in ex.real_views]))
        os.replace(tmp, STATE / "state.npz")

ex.on_update(dump)
for _v in [ex.diffraction_view, *ex.real_views]:
    _v.observe(dump, names=["colormap", "contrast", "vmin", "vmax", "percentiles", "scale"])
ex.wait()
dump()
ex
'''


def write_test_notebook(folder: Path, name: str, state: Path) -> Path:
    """A notebook that shows an Explorer on :func:`make_cube` and dumps its state to ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Explorer under test"),
                nbformat.v4.new_code_cell(SETUP.format(state=str(state)))]
    path = folder / name
    nbformat.write(nb, path)
    return path


def read_state(state: Path) -> dict | None:
    """The last dump written by the notebook (None before the first)."""
    f = state / "state.npz"
    if not f.exists():
        return None
    for _ in range(20):
        try:
            with np.load(f) as z:
                out = json.loads(str(z["state"]))
                out.update(virtual=z["virtual"], pattern=z["pattern"], wire=z["wire"])
                return out
        except (OSError, ValueError, KeyError, EOFError):  # being replaced right now
            time.sleep(0.05)
    return None


def wait_state(state: Path, predicate, what: str, timeout: float = WAIT_S) -> dict:
    """Poll the dump until ``predicate(state)`` holds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = read_state(state)
        if last is not None and predicate(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last state: "
                         f"{ {k: v for k, v in (last or {}).items() if k not in ('virtual', 'pattern', 'wire')} }")


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
                   PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]))
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
        return {version: +root.dataset.imageVersion, renders: +root.dataset.renderCount,
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


def canvas_pixels(page, index: int) -> bytes:
    """The RGBA pixels of the index-th view's canvas (read back from the page)."""
    data = page.evaluate("""(i) => {
        const c = document.querySelectorAll('.fw-view')[i].querySelector('canvas.fw-canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }""", index)
    return bytes(data)


def wait_views(page, count: int, timeout: float = WAIT_S) -> None:
    """Until ``count`` views have painted an image."""
    page.wait_for_function(
        """(n) => { const v = document.querySelectorAll('.fw-view');
                    return v.length >= n && Array.from(v).slice(0, n).every(e => +e.dataset.imageVersion >= 1); }""",
        arg=count, timeout=timeout * 1000)
