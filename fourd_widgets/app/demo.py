"""``fourd-widgets demo``: the Voila dashboard on the built-in sample data (``--lab``: JupyterLab and the tutorials).

What it does, in order:

1. makes the demo folder (``~/.cache/fourd_widgets/demo`` or ``--dir``);
2. writes the built-in sample data there as HDF5 (compressed, about 70 MB),
   unless the file is already there;
3. copies the tutorial notebooks (:data:`TUTORIALS`: the tour and one per
   tool) there, each unless a copy is already there (your edits stay);
4. serves, on 127.0.0.1, the dashboard notebook with Voila (the explorer on the
   sample; "save recipe" writes to the demo folder), or with ``--lab`` the demo
   folder with JupyterLab and the tour opened; prints the URL (with the access
   token) and where the server's log goes (a private temporary folder, not the
   demo folder); Ctrl-C stops the server.

Both servers work offline and quietly: the pages they serve load nothing from
outside 127.0.0.1 (Voila gets the :data:`VOILA_TEMPLATE` template, which drops
the stock template's Font Awesome links to a CDN: the same fonts come with
Voila's own bundle), and JupyterLab does not offer to fetch Jupyter news (its
announcements plugin is disabled through :data:`LAB_CONFIG_DIR`).

Both answer only requests addressed to this machine: a ``Host`` header other than
``localhost``, ``127.0.0.1`` or ``[::1]`` (with any port) is refused with 403, token
or not, on every path (JupyterLab: :data:`LOCAL_HOST_SETTINGS`; Voila: run through
:mod:`fourd_widgets.app.voila_server`, which refuses before any handler, static files
included). A web page of another site whose name an attacker points at 127.0.0.1
(DNS rebinding) gets no page, kernel, API or file of ours.

What is served is chosen in one place, :data:`DEMO_APP` (``--lab`` picks
``"lab"``). The servers themselves are described by :class:`ServerSpec` and
run by :func:`serve`, which ``fourd-widgets dashboard`` uses too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "DEFAULT_DIR", "DEMO_SAMPLE", "DEMO_APP", "SERVER_APPS", "ServerSpec", "add_parser", "run",
    "shipped_notebook", "tour_notebook_source", "dashboard_notebook_source", "prepare_demo", "write_cube_h5",
    "write_sample_file", "free_port", "lab_spec", "voila_spec", "app_folder", "add_server_options", "serve",
    "TUTORIALS", "copy_tutorials", "server_log", "VOILA_TEMPLATE", "VOILA_EXTENSIONS", "LAB_CONFIG_DIR",
    "JUPYTER_DATA_DIR", "LAB_DISABLED_PLUGINS", "LAB_WORKSPACES", "LOCAL_HOST_SETTINGS", "VOILA_SERVER_MODULE",
]

#: Where the demo lives unless ``--dir`` says otherwise.
DEFAULT_DIR = Path.home() / ".cache" / "fourd_widgets" / "demo"
#: Name of the built-in sample (see :func:`fourd_widgets.datasets.sample_names`).
DEMO_SAMPLE = "strained_crystal"
#: File name of the tour notebook.
TOUR_NAME = "tour.ipynb"
#: File name of the dashboard notebook.
DASHBOARD_NAME = "explorer_dashboard.ipynb"
#: The tutorial notebooks ``demo`` copies into the demo folder (every notebook of
#: ``notebooks/`` but the dashboard's); the wheel ships each beside this module.
TUTORIALS = (
    "tour.ipynb",
    "explorer_tutorial.ipynb",
    "disk_detection.ipynb",
    "strain_mapping.ipynb",
    "recipes_and_batch.ipynb",
    "phase_imaging.ipynb",
    "radial_profiling.ipynb",
    "classification.ipynb",
    "orientation_mapping.ipynb",
    "ptychography.ipynb",
)
#: Jupyter data folder shipped with this module: holds the Voila template
#: :data:`VOILA_TEMPLATE` (``voila/templates/...``); Voila finds it through ``JUPYTER_PATH``.
JUPYTER_DATA_DIR = Path(__file__).resolve().parent / "jupyter_data"
#: The Voila template of the dashboard: Voila's ``lab`` template without its links to a CDN.
VOILA_TEMPLATE = "fourd_widgets"
#: The front-end extensions Voila loads for the dashboard, and no other that happens to
#: be installed (each is more to load, and may fetch or warn): anywidget (every view of
#: fourd_widgets is an anywidget), the ipywidgets models (jupyterlab-manager) and Voila's
#: own widget manager.
VOILA_EXTENSIONS = ("anywidget", "@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8")
#: Jupyter config folder shipped with this module: ``labconfig/page_config.json``
#: disables :data:`LAB_DISABLED_PLUGINS`; JupyterLab finds it through ``JUPYTER_CONFIG_PATH``.
LAB_CONFIG_DIR = Path(__file__).resolve().parent / "jupyter_config"
#: Where the demo's JupyterLab keeps its workspace (open tabs), relative to the
#: server's private working folder.
LAB_WORKSPACES = "lab-workspaces"
#: JupyterLab plugins the demo turns off: the announcements plugin asks, in a pop-up,
#: whether to fetch Jupyter news from the internet.
LAB_DISABLED_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)
#: The Jupyter server settings that refuse (403) a request whose ``Host`` header is not
#: this machine: ``localhost`` by name, or a loopback address (127.0.0.1, [::1]), with
#: any port. Jupyter's own check (``JupyterHandler.check_host``); JupyterLab gets them on
#: its command line, Voila (which turns the check off by default) through its config file,
#: besides :mod:`fourd_widgets.app.voila_server`'s own check, which covers every path.
LOCAL_HOST_SETTINGS: dict[str, Any] = {"allow_remote_access": False, "local_hostnames": ["localhost"]}
#: The module that runs Voila (with Voila's command line), refusing other ``Host`` headers on every path.
VOILA_SERVER_MODULE = "fourd_widgets.app.voila_server"
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
    ready_path : str
        A path that answers 200 once the server is up (and starts no kernel).
    env : dict
        Extra environment variables of the server (and so of its kernels).
    config_file : str, optional
        A JSON config file the server reads from its working folder;
        :func:`serve` writes :attr:`config` there, with the access token.
    config : dict
        Configuration written to ``config_file``.
    token_key : tuple of str
        Where the token goes in ``config`` (section, name); empty when the
        server reads ``JUPYTER_TOKEN`` from its environment.
    host_check_key : tuple of str
        Where :func:`serve` puts :data:`LOCAL_HOST_SETTINGS` in ``config``
        (section, name); empty when the command line sets them.
    search_paths : dict
        Folders :func:`serve` puts first on search-path variables of the
        server's environment (``{"JUPYTER_PATH": folder}``), before what they
        hold already.
    """

    argv: list[str]
    url_path: str
    name: str
    ready_path: str = "/api/status"
    env: dict[str, str] = field(default_factory=dict)
    config_file: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    token_key: tuple[str, ...] = ()
    search_paths: dict[str, Path] = field(default_factory=dict)
    host_check_key: tuple[str, ...] = ()


def lab_spec(folder: Path, notebook: Path | str, port: int) -> ServerSpec:
    """JupyterLab serving ``folder``, with ``notebook`` (in ``folder``) opened.

    The token is given through ``JUPYTER_TOKEN`` in the environment, not here,
    so it does not show in the process list. Nothing is fetched from the
    internet (no update check, no news, no extension index) and the page does
    not ask whether to fetch news (:data:`LAB_DISABLED_PLUGINS`, through
    :data:`LAB_CONFIG_DIR`): microscope PCs are often offline. As root (a fresh
    machine or a container) JupyterLab has to be told that this is intended.
    """
    argv = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={folder}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        # The layout of open tabs is kept in the server's private working folder
        # (serve() starts it there), so each demo opens on the tour and leaves
        # the user's own JupyterLab workspaces alone.
        f"--LabApp.workspaces_dir={LAB_WORKSPACES}",
        # Refuse other Host headers (DNS rebinding), whatever the user's own config says.
        f"--ServerApp.allow_remote_access={LOCAL_HOST_SETTINGS['allow_remote_access']}",
        *(f"--ServerApp.local_hostnames={name}" for name in LOCAL_HOST_SETTINGS["local_hostnames"]),
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")
    relative = (Path(folder) / notebook).relative_to(folder).as_posix()
    return ServerSpec(argv=argv, url_path=f"/lab/tree/{relative}", name="JupyterLab",
                      search_paths={"JUPYTER_CONFIG_PATH": LAB_CONFIG_DIR})


def voila_spec(folder: Path, notebook: Path | str, port: int, env: dict[str, str] | None = None) -> ServerSpec:
    """Voila rendering ``notebook`` (in ``folder``) as an app, with ``folder`` as its root.

    Voila serves the one notebook (no file tree, no contents API), and is told
    to serve no file at all (``file_allowlist`` empty: the dashboard needs
    none). Give it a folder that holds nothing but the notebook
    (:func:`app_folder`): the data reach the notebook's kernel only, through
    ``env``. The token goes to a config file in the server's private working
    folder (Voila does not read ``JUPYTER_TOKEN``), so it does not show in the
    process list. The page loads nothing from outside 127.0.0.1 (the
    :data:`VOILA_TEMPLATE` template, found through ``JUPYTER_PATH``) and only the
    front-end extensions in :data:`VOILA_EXTENSIONS`. Voila runs through
    :data:`VOILA_SERVER_MODULE`, which refuses (403) every request whose
    ``Host`` is not this machine before any of Voila's handlers runs: the
    page, kernels, API, extension files and static files (the template's CSS
    and Voila's JavaScript, which Voila serves outside Jupyter's own check).
    :data:`LOCAL_HOST_SETTINGS` go to the config file as Tornado settings too,
    so Jupyter's own check stays on behind it.

    Parameters
    ----------
    folder : Path
        Voila's root folder; holds the notebook.
    notebook : path
        The notebook, relative to ``folder``.
    port : int
        Port on 127.0.0.1.
    env : dict, optional
        Environment of the server and so of the notebook's kernel.
    """
    argv = [
        sys.executable, "-m", VOILA_SERVER_MODULE, str(Path(folder) / notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        f"--Voila.root_dir={folder}",
        f"--VoilaConfiguration.template={VOILA_TEMPLATE}",
        *(f"--VoilaConfiguration.extension_allowlist={name}" for name in VOILA_EXTENSIONS),
    ]
    return ServerSpec(argv=argv, url_path="/", name="Voila",
                      ready_path=f"/voila/templates/{VOILA_TEMPLATE}/static/index.css",
                      env=dict(env or {}), search_paths={"JUPYTER_PATH": JUPYTER_DATA_DIR}, config_file="voila.json",
                      config={"VoilaConfiguration": {"file_allowlist": []}}, token_key=("Voila", "token"),
                      host_check_key=("Voila", "tornado_settings"))


@contextlib.contextmanager
def app_folder(notebook: Path) -> Iterator[Path]:
    """A private temporary folder holding only a copy of ``notebook``; removed on exit."""
    with tempfile.TemporaryDirectory(prefix="fourd-widgets-app-") as folder:
        shutil.copyfile(notebook, Path(folder) / notebook.name)
        yield Path(folder)


#: The servers the demo can start, by name: ``factory(folder, notebook, port)``.
SERVER_APPS: dict[str, Callable[[Path, Path | str, int], ServerSpec]] = {"lab": lab_spec, "voila": voila_spec}
#: The one place that picks what the demo serves (``--lab`` picks ``"lab"``).
DEMO_APP = "voila"


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--port P`` and ``--no-browser``, the options of every command that starts a server."""
    parser.add_argument("--port", type=int, default=0, metavar="P",
                        help="port to serve on (default: a free one)")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print the URL; do not open a web browser")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "demo",
        help="open the explorer dashboard on the built-in sample data (--lab: JupyterLab and the tutorials)",
        description=(
            "Write the built-in sample data (HDF5, about 70 MB) and the tutorial notebooks to a demo folder, "
            "then serve the explorer dashboard on the sample with Voila on 127.0.0.1 (with --lab: the demo "
            "folder with JupyterLab, the tour opened). Ctrl-C stops the server."
        ),
    )
    add_server_options(parser)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR",
                        help=f"demo folder (default: {DEFAULT_DIR})")
    parser.add_argument("--lab", action="store_true",
                        help="serve JupyterLab with the tutorials (the tour opened) instead of the dashboard")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prepare the demo folder and serve it until interrupted; returns the exit status."""
    folder = Path(args.dir).expanduser().resolve()
    try:
        dashboard = None if args.lab else dashboard_notebook_source()
        tour = prepare_demo(folder)
        copy_tutorials(folder)
    except FileNotFoundError as exc:
        print(f"fourd-widgets demo: {exc}", file=sys.stderr)
        return 1
    port = args.port or free_port()
    log = server_log("demo")
    if args.lab:
        return serve(SERVER_APPS["lab"](folder, tour.name, port), folder, port,
                     open_browser=not args.no_browser, log=log)
    from .dashboard_ui import OUTPUT_DIR_ENV

    with app_folder(dashboard) as app:
        spec = SERVER_APPS[DEMO_APP](app, dashboard.name, port)
        # "save recipe" writes to the demo folder
        spec = dataclasses.replace(spec, env={**spec.env, OUTPUT_DIR_ENV: str(folder)})
        return serve(spec, folder, port, open_browser=not args.no_browser, log=log)


def shipped_notebook(name: str) -> Path:
    """A notebook shipped with fourd_widgets, by file name.

    Looked for beside this module (an installed wheel: the build puts it
    there) and then in the ``notebooks/`` folder of the source checkout (an
    editable install).

    Raises
    ------
    FileNotFoundError
        If neither is there.
    """
    here = Path(__file__).resolve().parent
    candidates = [here / name, here.parent.parent / "notebooks" / name]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the notebook {name} was not found (looked at {', '.join(map(str, candidates))}). "
        "Install fourd_widgets from a source checkout with pip install -e ."
    )


def tour_notebook_source() -> Path:
    """The tour notebook shipped with fourd_widgets (see :func:`shipped_notebook`)."""
    return shipped_notebook(TOUR_NAME)


def dashboard_notebook_source() -> Path:
    """The dashboard notebook shipped with fourd_widgets (see :func:`shipped_notebook`)."""
    return shipped_notebook(DASHBOARD_NAME)


def write_cube_h5(cube: Any, path: Path, compress: bool = False) -> None:
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
    compress : bool
        Store the data losslessly compressed (byte shuffle + gzip level 1, which
        any HDF5 reader decodes). Simulated patterns are mostly empty detector:
        a quarter of the size, for about a second more per 250 MB to read.
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
            packing: dict[str, Any] = {}
            if compress:
                packing = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
            dset = f.create_dataset("data", shape=cube.shape, dtype=cube.dtype, chunks=(1, ry, qx, qy), **packing)
            for chunk in cube.iter_chunks():
                dset[chunk.rx, chunk.ry] = chunk.data
            f.attrs.update(attrs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_sample_file(path: Path, sample: str = DEMO_SAMPLE) -> None:
    """Simulate the built-in ``sample`` and save it as compressed HDF5 at ``path``.

    The demo's sample (64 x 64 scan of 128 x 128 float32 patterns, 268 MB in
    memory) takes about 70 MB on disk.
    """
    from ..datasets import sample as make_sample

    cube, _truth = make_sample(sample)
    write_cube_h5(cube, path, compress=True)


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


def copy_tutorials(folder: Path) -> list[Path]:
    """Copy the tutorial notebooks other than the tour (:data:`TUTORIALS`) into ``folder``.

    :func:`prepare_demo` copies the tour; ``demo`` calls both. A notebook
    already in ``folder`` is kept as it is (your edits stay); delete it to get
    a fresh copy.

    Returns
    -------
    list of Path
        The notebooks' paths in ``folder``, in the order of :data:`TUTORIALS`.

    Raises
    ------
    FileNotFoundError
        If a tutorial is not shipped (see :func:`shipped_notebook`); nothing is copied then.
    """
    sources = [shipped_notebook(name) for name in TUTORIALS if name != TOUR_NAME]  # all found before any copy
    folder.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for source in sources:
        target = folder / source.name
        if target.exists():
            kept.append(source.name)
        else:
            shutil.copyfile(source, target)
            copied.append(source.name)
    if copied:
        print(f"tutorials:   {', '.join(copied)} copied to {folder}")
    if kept:
        print(f"tutorials:   {', '.join(kept)} already there (delete one to get a fresh copy)")
    return [folder / source.name for source in sources]


def server_log(command: str) -> Path:
    """Where a server started by ``command`` logs: ``server.log`` in a new private temporary folder.

    Not in the folder served, which is the user's; the folder is kept after the
    server stops, so the log can still be read.
    """
    return Path(tempfile.mkdtemp(prefix=f"fourd-widgets-{command}-")) / "server.log"


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


def _write_config(spec: ServerSpec, folder: Path, token: str) -> None:
    """Write the server's config file (with the token, readable by this user only) into ``folder``."""
    if spec.config_file is None:
        return
    config = json.loads(json.dumps(spec.config))  # a deep copy
    for key, value in ((spec.token_key, token), (spec.host_check_key, LOCAL_HOST_SETTINGS)):
        if key:
            *sections, name = key
            node = config
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = value
    path = folder / spec.config_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)


def serve(spec: ServerSpec, folder: Path, port: int, open_browser: bool = True, *,
          log: Path, command: str = "demo") -> int:
    """Start the server of ``spec``, print its URL, and wait until it stops or Ctrl-C.

    The server runs in its own session, so that Ctrl-C reaches only this
    process, which then stops the server cleanly (SIGTERM, and kill if it
    hangs). SIGTERM to this process does the same. The server works in a
    private temporary folder (its config file with the token goes there and
    is removed afterwards).

    Parameters
    ----------
    spec : ServerSpec
        What to start.
    folder : Path
        What is served, for messages.
    port : int
        The port of ``spec``.
    open_browser : bool
        Open the URL in a web browser.
    log : Path
        The server's log file.
    command : str
        The subcommand, for messages.

    Returns
    -------
    int
        0 after a stop by Ctrl-C / SIGTERM, 1 if the server failed.
    """
    token = secrets.token_urlsafe(24)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}{spec.url_path}?token={token}"
    env = {**os.environ, **spec.env, "JUPYTER_TOKEN": token}
    for variable, first in spec.search_paths.items():
        env[variable] = os.pathsep.join([str(first), *([env[variable]] if env.get(variable) else [])])
    ready = f"{base}{spec.ready_path}?token={token}"
    prefix = f"fourd-widgets {command}:"
    # Ctrl-C and SIGTERM both stop the server; set explicitly, since a shell
    # starting us in the background may have left SIGINT ignored.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"{spec.name} log: {log}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fourd-widgets-server-") as workdir, open(log, "wb") as log_file:
        _write_config(spec, Path(workdir), token)
        process = subprocess.Popen(
            spec.argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _answers(ready):
                if process.poll() is not None or time.monotonic() > deadline:
                    status = _stop(process)
                    print(f"{prefix} {spec.name} did not start (status {status}). "
                          f"Last lines of {log}:\n{_log_tail(log)}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            print(f"\n{spec.name} is serving {folder}\n\n    {url}\n\n"
                  "Open that URL in a browser. Press Ctrl-C to stop.", flush=True)
            if open_browser:
                webbrowser.open(url)
            process.wait()
            print(f"{prefix} {spec.name} stopped (status {process.returncode}); see {log}", file=sys.stderr)
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
