"""``fourd-widgets demo``: sample data and the tour notebook, served by JupyterLab.

What it does, in order:

1. makes the demo folder (``~/.cache/fourd_widgets/demo`` or ``--dir``);
2. writes the built-in sample data there as HDF5, unless the file is already there;
3. copies the tour notebook there, unless a copy is already there (your edits stay);
4. serves the folder on 127.0.0.1 with the notebook opened and prints its URL
   (with the access token); Ctrl-C stops the server.

What is served is chosen in one place, :data:`DEMO_APP` (today JupyterLab with
the tour; the Voila dashboard will take its place).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "DEFAULT_DIR", "DEMO_SAMPLE", "DEMO_APP", "SERVER_APPS", "ServerSpec", "add_parser", "run",
    "tour_notebook_source", "prepare_demo", "write_cube_h5", "write_sample_file", "free_port", "lab_spec",
    "serve",
]

#: Where the demo lives unless ``--dir`` says otherwise.
DEFAULT_DIR = Path.home() / ".cache" / "fourd_widgets" / "demo"
#: Name of the built-in sample (see :func:`fourd_widgets.datasets.sample_names`).
DEMO_SAMPLE = "strained_crystal"
#: File name of the tour notebook.
TOUR_NAME = "tour.ipynb"
#: How long the server may take to answer before the demo gives up, in seconds.
STARTUP_TIMEOUT_S = 120.0
#: How long the server may take to stop on SIGTERM before it is killed, in seconds.
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ServerSpec:
    """How to start one kind of server and what to open in it.

    Attributes
    ----------
    argv : list of str
        The server's command line.
    url_path : str
        Path (after ``http://127.0.0.1:PORT``) of the page to open.
    name : str
        What is served, for messages.
    """

    argv: list[str]
    url_path: str
    name: str


def lab_spec(folder: Path, notebook: str, port: int) -> ServerSpec:
    """JupyterLab serving ``folder``, with ``notebook`` (relative to it) opened.

    The token is given through ``JUPYTER_TOKEN`` in the environment, not here,
    so it does not show in the process list. Nothing is fetched from the
    internet (no update check, no extension index): microscope PCs are often
    offline. As root (a fresh machine or a container) JupyterLab has to be told
    that this is intended.
    """
    argv = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={folder}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")
    return ServerSpec(argv=argv, url_path=f"/lab/tree/{notebook}", name="JupyterLab")


#: The servers the demo can start, by name: ``factory(folder, notebook, port)``.
SERVER_APPS: dict[str, Callable[[Path, str, int], ServerSpec]] = {"lab": lab_spec}
#: The one place that picks what the demo serves.
DEMO_APP = "lab"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "demo",
        help="write sample data and the tour notebook to a folder and open them in JupyterLab",
        description=(
            "Write the built-in sample data (HDF5) and the tour notebook to a demo folder, "
            "then serve it with JupyterLab on 127.0.0.1. Ctrl-C stops the server."
        ),
    )
    parser.add_argument("--port", type=int, default=0, metavar="P",
                        help="port to serve on (default: a free one)")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print the URL; do not open a web browser")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR",
                        help=f"demo folder (default: {DEFAULT_DIR})")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prepare the demo folder and serve it until interrupted; returns the exit status."""
    folder = Path(args.dir).expanduser().resolve()
    try:
        notebook = prepare_demo(folder)
    except FileNotFoundError as exc:
        print(f"fourd-widgets demo: {exc}", file=sys.stderr)
        return 1
    port = args.port or free_port()
    spec = SERVER_APPS[DEMO_APP](folder, notebook.name, port)
    return serve(spec, folder, port, open_browser=not args.no_browser)


def tour_notebook_source() -> Path:
    """The tour notebook shipped with fourd_widgets.

    Looked for beside this module (an installed wheel) and then in the
    ``notebooks/`` folder of the source checkout (an editable install).

    Raises
    ------
    FileNotFoundError
        If neither is there.
    """
    here = Path(__file__).resolve().parent
    candidates = [here / TOUR_NAME, here.parent.parent / "notebooks" / TOUR_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the tour notebook was not found (looked at {', '.join(map(str, candidates))}). "
        "Install fourd_widgets from a source checkout with pip install -e ."
    )


def write_cube_h5(cube: Any, path: Path) -> None:
    """Save ``cube`` as a plain HDF5 file that :func:`fourd_widgets.load` reads back.

    The layout is that of the shared test data: a dataset ``data`` of shape
    (Rx, Ry, Qx, Qy), chunked by scan row, and the calibration as root
    attributes (``scan_step_A``, ``reciprocal_sampling_invA`` or
    ``angular_sampling_mrad``, ``energy_eV``, ``convergence_semiangle_mrad``,
    ``origin_px``; rotation, ellipse and flip are not stored). The file is
    written under a temporary name and then renamed,
    so ``path`` is never left half-written.

    Parameters
    ----------
    cube : DataCube
        What to save (read chunk by chunk).
    path : Path
        The file to write; replaced if it exists.
    """
    import h5py

    cal = cube.calibration
    attrs: dict[str, Any] = {}
    if cal.real_step is not None:
        attrs["scan_step_A"] = cal.real_step_in("Å")
    if cal.reciprocal_step is not None:
        if cal.reciprocal_units == "mrad":
            attrs["angular_sampling_mrad"] = cal.reciprocal_step
        else:
            attrs["reciprocal_sampling_invA"] = cal.reciprocal_step_in("1/Å")
    if cal.energy_eV is not None:
        attrs["energy_eV"] = cal.energy_eV
    if cal.convergence_semiangle_mrad is not None:
        attrs["convergence_semiangle_mrad"] = cal.convergence_semiangle_mrad
    if cal.origin is not None:
        attrs["origin_px"] = list(cal.origin)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            rx, ry, qx, qy = cube.shape
            dset = f.create_dataset("data", shape=cube.shape, dtype=cube.dtype, chunks=(1, ry, qx, qy))
            for chunk in cube.iter_chunks():
                dset[chunk.rx, chunk.ry] = chunk.data
            f.attrs.update(attrs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_sample_file(path: Path, sample: str = DEMO_SAMPLE) -> None:
    """Simulate the built-in ``sample`` and save it as HDF5 at ``path``."""
    from ..datasets import sample as make_sample

    cube, _truth = make_sample(sample)
    write_cube_h5(cube, path)


def prepare_demo(folder: Path) -> Path:
    """Fill ``folder`` with the sample data and the tour; returns the notebook's path.

    Files already there are kept as they are.
    """
    tour = tour_notebook_source()  # before the (slower) sample, so a missing tour fails fast
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{DEMO_SAMPLE}.h5"
    if data.exists():
        print(f"sample data: {data} (already there)")
    else:
        print(f"sample data: writing {data} ...", flush=True)
        write_sample_file(data)
    notebook = folder / TOUR_NAME
    if notebook.exists():
        print(f"tour:        {notebook} (already there; delete it to get a fresh copy)")
    else:
        shutil.copyfile(tour, notebook)
        print(f"tour:        {notebook}")
    return notebook


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Talks to 127.0.0.1 directly, whatever http_proxy says.
_LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _LOCAL_OPENER.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _stop(process: subprocess.Popen) -> int:
    """Ask the server to stop (SIGTERM), kill it if it does not; returns its status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(spec: ServerSpec, folder: Path, port: int, open_browser: bool = True) -> int:
    """Start the server of ``spec``, print its URL, and wait until it stops or Ctrl-C.

    The server runs in its own session, so that Ctrl-C reaches only this
    process, which then stops the server cleanly (SIGTERM, and kill if it
    hangs). SIGTERM to this process does the same. The server's log goes to
    ``folder/server.log``.

    Returns
    -------
    int
        0 after a stop by Ctrl-C / SIGTERM, 1 if the server failed.
    """
    token = secrets.token_urlsafe(24)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}{spec.url_path}?token={token}"
    log = folder / "server.log"
    env = {**os.environ, "JUPYTER_TOKEN": token}
    # Ctrl-C and SIGTERM both stop the server; set explicitly, since a shell
    # starting us in the background may have left SIGINT ignored.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            spec.argv, cwd=folder, env=env, stdin=subprocess.DEVNULL,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _answers(f"{base}/api/status?token={token}"):
                if process.poll() is not None or time.monotonic() > deadline:
                    status = _stop(process)
                    print(f"fourd-widgets demo: {spec.name} did not start (status {status}). "
                          f"Last lines of {log}:\n{_log_tail(log)}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            print(f"\n{spec.name} is serving {folder}\n\n    {url}\n\n"
                  "Open that URL in a browser. Press Ctrl-C to stop.", flush=True)
            if open_browser:
                webbrowser.open(url)
            process.wait()
            print(f"fourd-widgets demo: {spec.name} stopped (status {process.returncode}); "
                  f"see {log}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\nstopping {spec.name} ...", flush=True)
            _stop(process)
            print("stopped.", flush=True)
            return 0
        finally:
            _stop(process)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
