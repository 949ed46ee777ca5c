"""The demo in a real browser, offline and quiet: the dashboard (Voila) and the tutorials (JupyterLab).

One demo folder, one ``fourd-widgets demo`` and one ``fourd-widgets demo --lab``
for the whole module. Every request the pages make is recorded (and every
websocket), with the browser's console. A test fails if a page asks anything of
a host other than 127.0.0.1, if JupyterLab offers Jupyter news, if the server
log lands in the demo folder, if a tutorial leaves no live tool on the page after
Restart + Run All, or if a front-end version warning comes back (see
:data:`VOILA_UPSTREAM_WARNINGS` for the ones Voila itself still logs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from fourd_widgets.app import demo as demo_module

from ..browser.browser_helpers import CHROMIUM, CHROMIUM_ARGS
from ..test_notebooks import TOOL_CELLS
from .app_helpers import DemoProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
#: Limits for one page condition and for Run All of one tutorial (waits, not speed checks).
PAGE_TIMEOUT_MS = 120_000
RUN_ALL_TIMEOUT_MS = 600_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
#: Version warnings of module federation that Voila 0.5.13 logs by itself, which no
#: setting removes: its page bundles JupyterLab 4.2.5, while its own widget manager
#: (@voila-dashboards/widgets-manager8, built against 4.5.10) and JupyterLab's widget
#: manager (jupyterlab_widgets 3.0.17, against 4.6.2, needed for the ipywidgets models)
#: ask for newer copies of these shared packages, and get 4.2.5 all the same. They are
#: counted: one more, or one for another package, fails the test.
VOILA_UPSTREAM_WARNINGS = {
    "@jupyterlab/console": 1, "@jupyterlab/logconsole": 1, "@jupyterlab/mainmenu": 1, "@jupyterlab/notebook": 1,
    "@jupyterlab/outputarea": 1, "@jupyterlab/rendermime": 2, "@jupyterlab/services": 2,
    "@jupyterlab/settingregistry": 1, "@jupyterlab/translation": 1, "@jupyterlab/statedb": 1,
    "@jupyterlab/coreutils": 1,
}
VERSION_WARNING = re.compile(r"(?:Unsatisfied version .* of shared singleton module|No satisfying version .* "
                             r"of shared module) (@?[\w./-]+)")
#: The tutorials that show tools.
TOOL_TUTORIALS = [name for name, cells in TOOL_CELLS.items() if cells]


def tool_cell_indices(path: Path) -> list[int]:
    """Indices (among all cells) of the cells of ``path`` that show a tool (see ``TOOL_CELLS``)."""
    cells = nbformat.read(path, as_version=4).cells
    return [i for i, c in enumerate(cells) if c.cell_type == "code" and c.source.strip()
            and c.source.strip().splitlines()[-1].strip() in TOOL_CELLS[path.name]]


@pytest.fixture(scope="module")
def folder(demo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder of this module's own: the session's sample data (hard link), nothing else."""
    own = tmp_path_factory.mktemp("offline") / "demo"
    own.mkdir()
    sample = f"{demo_module.DEMO_SAMPLE}.h5"
    os.link(demo_folder / sample, own / sample)
    return own


def _module_server(folder: Path, *options: str):
    from fourd_widgets.app.demo import free_port

    # A Jupyter config folder of its own (where JupyterLab would keep workspaces by default), so
    # the test can see that the demo writes none there, whatever else runs on this machine.
    env = {"JUPYTER_CONFIG_DIR": str(folder.parent / "jupyter-config")}
    running = DemoProcess(folder, free_port(), *options, env=env)
    try:
        yield running
    finally:
        running.stop()
        running.remove_log()


@pytest.fixture(scope="module")
def voila_demo(folder: Path):
    yield from _module_server(folder)


@pytest.fixture(scope="module")
def lab_demo(folder: Path):
    yield from _module_server(folder, "--lab")


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run bash scripts/install.sh")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Recorder:
    """Everything a page asked for (requests, websockets, failures) and logged (console)."""

    def __init__(self, page) -> None:
        self.urls: list[str] = []
        self.failed: list[str] = []
        self.console: list[tuple[str, str]] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.console.append(("pageerror", str(e))))

    def remote(self) -> list[str]:
        """The URLs that would leave 127.0.0.1 (a blob: URL belongs to the page that made it)."""
        out = []
        for url in self.urls:
            parsed = urlparse(url[len("blob:"):] if url.startswith("blob:") else url)
            if parsed.scheme == "data":
                continue
            if parsed.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out

    def failed_not_cancelled(self) -> list[str]:
        """Failed requests, but those the page cancelled itself (JupyterLab swaps its busy favicon so)."""
        return [f for f in self.failed if "net::ERR_ABORTED" not in f]

    def version_warnings(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _kind, text in self.console:
            match = VERSION_WARNING.search(text)
            if match:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts


@pytest.fixture(scope="module")
def lab_page(chromium, lab_demo, request: pytest.FixtureRequest):
    """One JupyterLab page for the module (each test navigates it), with its recorder."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    recorder = Recorder(page)
    try:
        yield page, recorder
    finally:
        _keep_on_failure(page, recorder, "lab", request)
        context.close()


def _keep_on_failure(page, recorder: Recorder, name: str, request: pytest.FixtureRequest) -> None:
    if request.session.testsfailed:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"offline-{name}.png"), full_page=True)
        except Exception:  # the page may be gone; the console log still helps
            pass
        (ARTIFACTS / f"offline-{name}.console.txt").write_text(
            "\n".join(f"{kind}: {text}" for kind, text in recorder.console))


def assert_log_outside(demo: DemoProcess) -> None:
    assert demo.log is not None and demo.log.is_file(), "the demo did not say where its server logs"
    assert demo.folder.resolve() not in demo.log.resolve().parents
    assert not (demo.folder / "server.log").exists()


def test_the_dashboard_loads_nothing_from_outside(voila_demo, chromium, request) -> None:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    recorder = Recorder(page)
    try:
        page.goto(voila_demo.url)
        page.wait_for_function(
            """() => { const v = document.querySelectorAll('.fw-view');
                       return v.length >= 3 && Array.from(v).every(e => +e.dataset.imageVersion >= 1); }""")
        # The icon font of the buttons (Font Awesome, no longer from a CDN) is there all the same.
        save = page.locator("button", has_text="save recipe")
        save.wait_for(state="visible")
        assert save.locator("i.fa").count() == 1
        page.wait_for_function("""() => Array.from(document.fonts).some(
            f => f.family.replace(/["']/g, '') === 'Font Awesome 5 Free' && f.status === 'loaded')""")
        icon_font = save.locator("i.fa").evaluate("e => getComputedStyle(e, '::before').fontFamily")
        assert "Font Awesome" in icon_font
        page.wait_for_load_state("networkidle")

        assert recorder.urls, "no request was recorded"
        assert recorder.remote() == []
        assert recorder.failed == []
        warnings = recorder.version_warnings()
        assert set(warnings) <= set(VOILA_UPSTREAM_WARNINGS), warnings
        assert all(n <= VOILA_UPSTREAM_WARNINGS[name] for name, n in warnings.items()), warnings
        assert_log_outside(voila_demo)
    finally:
        _keep_on_failure(page, recorder, "voila", request)
        context.close()


def test_lab_opens_the_tour_without_a_news_popup(lab_demo, lab_page) -> None:
    page, recorder = lab_page
    # Every tutorial is in the demo folder, as shipped.
    for name in demo_module.TUTORIALS:
        copy = nbformat.read(lab_demo.folder / name, as_version=4)
        source = nbformat.read(demo_module.shipped_notebook(name), as_version=4)
        assert [c.source for c in copy.cells] == [c.source for c in source.cells]
    assert not (lab_demo.folder / demo_module.DASHBOARD_NAME).exists()

    user_workspaces = lab_demo.folder.parent / "jupyter-config" / "lab" / "workspaces"
    page.goto(lab_demo.url)
    heading = page.locator(".jp-NotebookPanel:visible .jp-RenderedMarkdown h1")
    heading.first.wait_for(state="visible")
    assert heading.first.inner_text().strip().startswith("A tour of fourd_widgets")
    config = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent)")
    assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]
    _wait_kernel_idle(page)
    assert "news" not in " ".join(page.locator(".Toastify__toast").all_inner_texts()).lower()
    assert_log_outside(lab_demo)
    # the demo's layout is its own: nothing lands among the user's JupyterLab workspaces
    assert list(user_workspaces.glob("*")) == []


def _wait_kernel_idle(page) -> None:
    """Until the open notebook's kernel is idle; accepts the kernel proposed if JupyterLab asks for one.

    (On a busy machine JupyterLab may open the notebook before it has the list of
    kernels, and then asks, proposing the notebook's own python3.)
    """
    probe = """() => { if (document.querySelector('.jp-Dialog')) return 'dialog';
                       const s = document.querySelector(
                           '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
                       return s && s.getAttribute('data-status') === 'idle' ? 'idle' : false; }"""
    if page.wait_for_function(probe).json_value() == "dialog":
        dialog = page.locator(".jp-Dialog")
        assert "Select Kernel" in dialog.inner_text(), dialog.inner_text()
        dialog.locator("button.jp-mod-accept").click()
        page.wait_for_function(probe.replace("'dialog'", "false"))


def _restart_and_run_all(page) -> None:
    """The notebook toolbar's "restart the kernel and run all cells" button, and "Restart" in its dialog.

    Tried again if no dialog comes (a click while JupyterLab is still busy opening the notebook may be lost),
    or if the dialog is JupyterLab asking which kernel to start.
    """
    button = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) [data-command='notebook:restart-run-all']")
    dialog = page.locator(".jp-Dialog")
    for _attempt in range(5):
        button.first.click()
        try:
            dialog.wait_for(state="visible", timeout=20_000)
        except Exception:  # playwright's TimeoutError: no dialog yet
            continue
        if "Select Kernel" not in dialog.inner_text():
            break
        # JupyterLab opened the notebook before it had the list of kernels, and asks late: take its proposal
        dialog.locator("button.jp-mod-accept").click()
        dialog.wait_for(state="detached")
        _wait_kernel_idle(page)
    assert "Restart" in dialog.inner_text(), dialog.inner_text()
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")


@pytest.mark.parametrize("name", TOOL_TUTORIALS)
def test_tutorial_shows_its_tools_after_restart_and_run_all(lab_demo, lab_page, name: str) -> None:
    page, recorder = lab_page
    # "reset": a workspace with only this notebook open (not the tour of the previous test)
    page.goto(lab_demo.url.replace(f"/lab/tree/{demo_module.TOUR_NAME}", f"/lab/tree/{name}") + "&reset")
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current", has_text=name).wait_for(state="visible")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(state="visible")
    _wait_kernel_idle(page)
    _restart_and_run_all(page)
    # Done when every code cell has its execution count and none is queued or running.
    page.wait_for_function(
        """() => { const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                   const prompts = Array.from(p.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
                                        .map(e => e.textContent.trim());
                   return prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:$/.test(t)); }""",
        timeout=RUN_ALL_TIMEOUT_MS)
    assert panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .jp-mod-error,"
                         " .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0
    # Each tool cell shows its tool: painted image views in the cell's output, still on the page.
    tools = tool_cell_indices(lab_demo.folder / name)
    assert len(tools) == len(TOOL_CELLS[name])
    without_views = """(tools) => {
        const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell');
        return tools.filter(i => !Array.from(cells[i].querySelectorAll('.jp-OutputArea .fw-view'))
                                       .some(v => +v.dataset.imageVersion >= 1)); }"""
    try:
        page.wait_for_function(f"(tools) => ({without_views})(tools).length === 0", arg=tools)
    except Exception as exc:  # playwright's TimeoutError: say which tools are missing
        raise AssertionError(f"{name}: no live tool in cells {page.evaluate(without_views, tools)} "
                             "after Restart + Run All") from exc

    assert recorder.remote() == []
    assert recorder.failed_not_cancelled() == []
    assert recorder.version_warnings() == {}
    assert "news" not in " ".join(page.locator(".Toastify__toast").all_inner_texts()).lower()
