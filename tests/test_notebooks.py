"""Every notebook in notebooks/ runs from top to bottom without an error, and the tutorials leave their tools live.

The notebooks carry their own asserts on what they compute; here each one is
executed with nbclient in a fresh python3 kernel, in a temporary working folder
(once per session: the tests below share the executed copy).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from fourd_widgets.app.demo import DASHBOARD_NAME, TUTORIALS

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
#: Per-cell limit, so that a hung kernel fails the test instead of stalling it.
CELL_TIMEOUT_S = 600
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: The cells of each tutorial that show a tool, by the name the cell ends on (written
#: here, not read from the notebooks: a tool cell that goes missing fails the test).
TOOL_CELLS = {
    "tour.ipynb": [],
    "explorer_tutorial.ipynb": ["explorer", "view"],
    "disk_detection.ipynb": ["tuner"],
    "strain_mapping.ipynb": ["cal_tool", "mapper"],
    "recipes_and_batch.ipynb": [],
    "phase_imaging.ipynb": ["tuner"],
    "radial_profiling.ipynb": ["profiler", "si_profiler"],
    "classification.ipynb": ["seg"],
    "orientation_mapping.ipynb": ["mapper"],
    "ptychography.ipynb": ["tuner"],
}


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


class _CommTrackingClient(NotebookClient):
    """An nbclient that also records which widget models the kernel closed (``comm_close``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed_models: set[str] = set()

    def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
        if msg["msg_type"] == "comm_close":
            self.closed_models.add(msg["content"]["comm_id"])
        super().handle_comm_msg(outs, msg, cell_index)


_EXECUTED: dict[Path, tuple[Any, _CommTrackingClient]] = {}


@pytest.fixture
def executed(tmp_path_factory: pytest.TempPathFactory):
    """``executed(path)``: the notebook run once per session, and the client that ran it."""

    def run(path: Path) -> tuple[Any, _CommTrackingClient]:
        if path not in _EXECUTED:
            nb = nbformat.read(path, as_version=4)
            client = _CommTrackingClient(
                nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                resources={"metadata": {"path": str(tmp_path_factory.mktemp(path.stem))}},
            )
            client.execute()  # raises CellExecutionError, naming the cell, on any error
            _EXECUTED[path] = (nb, client)
        return _EXECUTED[path]

    return run


def test_there_are_notebooks() -> None:
    assert notebook_paths(), f"no notebooks found in {NOTEBOOKS}"


@pytest.mark.slow
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs(path: Path, executed) -> None:
    nb, _client = executed(path)
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")


def test_the_tutorials_are_every_notebook_but_the_dashboard() -> None:
    names = {p.name for p in notebook_paths()}
    assert set(TUTORIALS) == names - {DASHBOARD_NAME}
    assert set(TOOL_CELLS) == set(TUTORIALS)


def test_the_wheel_ships_every_tutorial() -> None:
    """``demo --lab`` copies them from beside fourd_widgets/app/demo.py in an installed wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the check is the same on every version
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for name in [*TUTORIALS, DASHBOARD_NAME]:
        assert shipped.get(f"notebooks/{name}") == f"fourd_widgets/app/{name}"


def _models_reached(model_id: str, state: dict[str, dict]) -> set[str]:
    """``model_id`` and every model its state refers to (``IPY_MODEL_...``), recursively."""
    seen, todo = set(), [model_id]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", repr(state.get(current, {})))
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_leaves_its_tools_live(name: str, executed) -> None:
    """After Run All, every tool cell shows a widget whose models (and those of its parts) are all open."""
    nb, client = executed(NOTEBOOKS / name)
    state = client.widget_state  # model id -> state, from the kernel's comm_open / update messages
    live_cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        views = [out["data"][WIDGET_VIEW]["model_id"] for out in cell.get("outputs", [])
                 if WIDGET_VIEW in out.get("data", {})]
        last_line = cell.source.strip().splitlines()[-1].strip()
        if last_line in TOOL_CELLS[name]:
            assert views, f"the cell ending in {last_line!r} shows no widget"
            for model in views:
                reached = _models_reached(model, state)
                assert len(reached) > 1, f"{last_line}: the widget shown has no parts"
                assert reached <= set(state), f"{last_line}: a model shown was never opened"
                assert not reached & client.closed_models, f"{last_line}: the notebook closed its tool"
            live_cells.append(last_line)
    assert live_cells == TOOL_CELLS[name]
