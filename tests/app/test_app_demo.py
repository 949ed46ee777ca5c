"""``fourd-widgets demo``: the demo folder, the server it starts, and how it stops."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.app import demo as demo_module

from .app_helpers import port_is_open


@pytest.mark.slow
def test_demo_folder_holds_the_sample_and_the_tour(demo_folder: Path) -> None:
    tour = nbformat.read(demo_folder / "tour.ipynb", as_version=4)
    source = nbformat.read(demo_module.tour_notebook_source(), as_version=4)
    assert [c.source for c in tour.cells] == [c.source for c in source.cells]
    cube, _truth = fw.datasets.sample(demo_module.DEMO_SAMPLE)
    with fw.load(demo_folder / f"{demo_module.DEMO_SAMPLE}.h5") as loaded:
        assert loaded.shape == cube.shape
        assert loaded.dtype == cube.dtype
        np.testing.assert_array_equal(loaded.to_numpy(), cube.to_numpy())
        assert loaded.calibration == cube.calibration


def test_prepare_demo_keeps_what_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    data = folder / f"{demo_module.DEMO_SAMPLE}.h5"
    demo_module.write_cube_h5(fw.DataCube(np.ones((2, 2, 4, 4), dtype=np.uint8)), data)
    notebook = folder / "tour.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("my own note")]), notebook)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def no_simulation(*args, **kwargs):
        raise AssertionError("the sample was simulated again although its file exists")

    monkeypatch.setattr(demo_module, "write_sample_file", no_simulation)
    assert demo_module.prepare_demo(folder) == notebook
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_prepare_demo_creates_missing_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = []
    monkeypatch.setattr(demo_module, "write_sample_file", lambda path: written.append(path))
    folder = tmp_path / "a" / "b"
    notebook = demo_module.prepare_demo(folder)
    assert written == [folder / f"{demo_module.DEMO_SAMPLE}.h5"]
    assert notebook.read_bytes() == demo_module.tour_notebook_source().read_bytes()


def test_write_cube_h5_round_trips_a_calibration_in_mrad(tmp_path: Path) -> None:
    cal = fw.Calibration(real_step=0.5, real_units="nm", reciprocal_step=0.25, reciprocal_units="mrad",
                         energy_eV=200e3, convergence_semiangle_mrad=1.2, origin=(3.5, 4.0))
    data = np.arange(3 * 4 * 8 * 9, dtype=np.uint16).reshape(3, 4, 8, 9)
    path = tmp_path / "cube.h5"
    demo_module.write_cube_h5(fw.DataCube(data, cal), path)
    loaded = fw.load(path)
    np.testing.assert_array_equal(loaded.to_numpy(), data)
    assert loaded.calibration.real_step_in("nm") == 0.5
    assert loaded.calibration.reciprocal_step_in("mrad") == 0.25
    assert loaded.calibration.energy_eV == 200e3
    assert loaded.calibration.convergence_semiangle_mrad == 1.2
    assert loaded.calibration.origin == (3.5, 4.0)
    assert [p.name for p in tmp_path.iterdir()] == ["cube.h5"]  # no temporary file left


def test_lab_spec_serves_only_localhost(tmp_path: Path) -> None:
    spec = demo_module.SERVER_APPS["lab"](tmp_path, "tour.ipynb", 8123)
    assert spec.argv[0] == sys.executable
    assert "--ServerApp.ip=127.0.0.1" in spec.argv
    assert "--ServerApp.port=8123" in spec.argv
    assert f"--ServerApp.root_dir={tmp_path}" in spec.argv
    assert not any("token" in arg.lower() for arg in spec.argv)  # the token travels in the environment
    assert spec.url_path == "/lab/tree/tour.ipynb"


def test_the_demo_serves_the_dashboard_notebook(tmp_path: Path) -> None:
    assert demo_module.DEMO_APP == "voila"
    source = demo_module.dashboard_notebook_source()
    assert source.name == "explorer_dashboard.ipynb"
    with demo_module.app_folder(source) as app:
        assert [p.name for p in app.iterdir()] == ["explorer_dashboard.ipynb"]  # nothing else to serve
        spec = demo_module.SERVER_APPS[demo_module.DEMO_APP](app, source.name, 8124)
        assert spec.argv[:4] == [sys.executable, "-m", "fourd_widgets.app.voila_server", str(app / source.name)]
        assert "--Voila.ip=127.0.0.1" in spec.argv and "--Voila.port=8124" in spec.argv
        assert f"--Voila.root_dir={app}" in spec.argv
    assert not app.exists()
    assert spec.config == {"VoilaConfiguration": {"file_allowlist": []}}  # Voila serves no file
    assert not any("token" in arg.lower() for arg in spec.argv)


@pytest.mark.slow
def test_demo_lab_serves_and_stops_on_sigterm(demo_lab) -> None:
    demo = demo_lab
    status_url = f"http://127.0.0.1:{demo.port}/api/status?token={demo.token}"
    with urllib.request.urlopen(status_url, timeout=60) as response:
        assert response.status == 200
    contents_url = f"http://127.0.0.1:{demo.port}/api/contents?token={demo.token}"
    with urllib.request.urlopen(contents_url, timeout=60) as response:
        names = {item["name"] for item in json.load(response)["content"]}
    assert {"tour.ipynb", f"{demo_module.DEMO_SAMPLE}.h5"} <= names
    assert demo.signal(signal.SIGTERM) == 0
    assert "stopped." in demo.rest_outputs()
    assert not port_is_open(demo.port)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.slow
def test_demo_refuses_a_wrong_token(demo) -> None:
    """Voila sends a request with a wrong token to its login page; the dashboard does not run."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        opener.open(f"http://127.0.0.1:{demo.port}/?token=wrong", timeout=60)
    except urllib.error.HTTPError as exc:
        assert exc.code in (302, 403)
        assert exc.code == 403 or "/login" in exc.headers["Location"]
    else:
        raise AssertionError("the server answered a request with a wrong token")
    assert "Kernel started" not in demo.log.read_text()


@pytest.mark.slow
def test_demo_reports_a_port_in_use(demo_folder: Path, run_app) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_app("demo", "--no-browser", "--port", str(port), "--dir", str(demo_folder))
    assert result.returncode == 1
    assert "Voila did not start" in result.stderr
    assert str(port) in result.stderr  # the log tail says which port was taken


def test_copy_tutorials_adds_the_others_and_keeps_your_edits(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    mine = folder / "strain_mapping.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("my own note")]), mine)
    edited = mine.read_bytes()
    paths = demo_module.copy_tutorials(folder)
    others = [n for n in demo_module.TUTORIALS if n != demo_module.TOUR_NAME]
    assert paths == [folder / n for n in others]
    assert mine.read_bytes() == edited
    for name in others:
        if name != mine.name:
            assert (folder / name).read_bytes() == demo_module.shipped_notebook(name).read_bytes()
    # the tour is prepare_demo's, the dashboard is served from a private folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(others)


def test_copy_tutorials_copies_nothing_if_one_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "TUTORIALS", (*demo_module.TUTORIALS, "no_such_tutorial.ipynb"))
    with pytest.raises(FileNotFoundError, match="no_such_tutorial.ipynb"):
        demo_module.copy_tutorials(tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


def test_the_demo_sample_is_compressed_to_the_size_the_readme_gives(sample_h5: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"a (\d+) MB\s+compressed HDF5 file", readme)
    assert stated, "README.md does not give the size of the demo's sample file"
    size_mb = sample_h5.stat().st_size / 1e6
    assert abs(size_mb - int(stated.group(1))) <= 1  # "69 MB": rounded to the MB
    with fw.load(sample_h5) as cube:
        assert size_mb < cube.nbytes / 1e6 / 2  # compressed: the same data (checked above) in less space


def test_server_log_is_outside_the_folder_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log, other = demo_module.server_log("demo"), demo_module.server_log("demo")
    try:
        assert log.name == "server.log" and not log.exists()
        assert tmp_path not in log.parents
        assert log.parent.stat().st_mode & 0o077 == 0  # a private folder: the log shows the access token
        assert log.parent != other.parent  # one folder per server
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)
        shutil.rmtree(other.parent, ignore_errors=True)


def test_lab_spec_turns_off_the_news_popup(tmp_path: Path) -> None:
    spec = demo_module.SERVER_APPS["lab"](tmp_path, "tour.ipynb", 8125)
    first = spec.search_paths["JUPYTER_CONFIG_PATH"]
    page_config = json.loads((first / "labconfig" / "page_config.json").read_text())
    assert page_config["disabledExtensions"] == {"@jupyterlab/apputils-extension:announcements": True}
    assert tuple(page_config["disabledExtensions"]) == demo_module.LAB_DISABLED_PLUGINS  # the documented list
    assert "--LabApp.news_url=None" in spec.argv  # and the server fetches no news either


def test_lab_spec_keeps_its_workspace_in_the_servers_own_folder(tmp_path: Path) -> None:
    """serve() starts the server in a private temporary folder: a relative path lands there."""
    spec = demo_module.SERVER_APPS["lab"](tmp_path, "tour.ipynb", 8127)
    (workspaces,) = [a.split("=", 1)[1] for a in spec.argv if a.startswith("--LabApp.workspaces_dir=")]
    assert not Path(workspaces).is_absolute() and ".." not in Path(workspaces).parts


def test_voila_spec_uses_the_offline_template(tmp_path: Path) -> None:
    spec = demo_module.SERVER_APPS["voila"](tmp_path, "x.ipynb", 8126, env={"A": "1"})
    assert spec.env == {"A": "1"}
    first = spec.search_paths["JUPYTER_PATH"]
    template = first / "voila" / "templates" / demo_module.VOILA_TEMPLATE
    assert json.loads((template / "conf.json").read_text())["base_template"] == "lab"
    assert (template / "index.html.j2").is_file()
    assert f"--VoilaConfiguration.template={demo_module.VOILA_TEMPLATE}" in spec.argv
    allowed = [a.split("=", 1)[1] for a in spec.argv if a.startswith("--VoilaConfiguration.extension_allowlist=")]
    assert "anywidget" in allowed and "bqplot" not in allowed
