"""README.md says what the repository does: its commands, formats table and API tour are checked."""

from __future__ import annotations

import os
import re
import shutil
import shlex
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.app.cli import build_parser
from fourd_widgets.app.demo import write_cube_h5
from fourd_widgets.io import SUPPORTED_FORMATS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI_RUN = REPO / ".ci" / "run"
INSTALL = REPO / "scripts" / "install.sh"


def section(title: str) -> str:
    """The text of the ``## title...`` section of README.md."""
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return [b.strip() for b in re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)]


def setup_commands() -> list[str]:
    return code_blocks(section("Set-up"), "bash")


def test_setup_has_exactly_two_commands() -> None:
    demo, tests = setup_commands()
    assert demo == 'pip install -e ".[all]" && fourd-widgets demo'
    assert tests == "bash scripts/install.sh && python -m pytest"


def test_ci_runs_the_readme_test_command() -> None:
    lines = [ln.strip() for ln in CI_RUN.read_text().splitlines()]
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    commands = [ln for ln in lines[1:] if ln and not ln.startswith("#")]
    assert commands[-1] == setup_commands()[1]
    assert CI_RUN.stat().st_mode & stat.S_IXUSR


@pytest.mark.parametrize("script", [CI_RUN, INSTALL], ids=lambda p: p.name)
def test_scripts_are_valid_bash(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def fake_tools(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A PATH whose ``apt-get`` and ``python`` only log their arguments to a file.

    The PATH holds nothing else but ``dirname`` (which the script needs), so whether
    ``node``/``npm`` are "installed" is decided by the test putting fakes of them there.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> "{log}"\n')
    # python also logs the constraints file pip is given through the environment
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "python $* [PIP_CONSTRAINT=$PIP_CONSTRAINT]" >> "{log}"\n')
    for tool in ("apt-get", "python"):
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    env = {**os.environ, "PATH": str(bin_dir)}
    return env, log, bin_dir


@pytest.mark.parametrize("chromium_present", [True, False])
@pytest.mark.parametrize("node_present", [True, False])
def test_install_script(fake_tools, tmp_path: Path, chromium_present: bool, node_present: bool) -> None:
    env, log, bin_dir = fake_tools
    chromium = tmp_path / "chromium"
    if chromium_present:
        chromium.write_text("#!/bin/sh\n")
        chromium.chmod(0o755)
    if node_present:
        for tool in ("node", "npm"):
            (bin_dir / tool).write_text("#!/bin/sh\n")
            (bin_dir / tool).chmod(0o755)
    result = subprocess.run([shutil.which("bash"), str(INSTALL)], env={**env, "CHROMIUM": str(chromium)},
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    apt = (["apt-get install -y chromium"] if not chromium_present else []) + (
        ["apt-get install -y nodejs npm"] if not node_present else [])
    if apt:  # one index refresh before the first install, none without installs
        apt.insert(0, "apt-get update")
    constraints = REPO / "scripts" / "constraints.txt"
    assert log.read_text().splitlines() == apt + [
        f"python -m pip install -e .[all] [PIP_CONSTRAINT={constraints}]"]


def test_constraints_pin_every_declared_dependency() -> None:
    """Every requirement of pyproject.toml is pinned to one exact version that its bound allows."""
    import re
    import tomllib

    from packaging.requirements import Requirement

    pins = {}
    for line in (REPO / "scripts" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = list(project["build-system"]["requires"]) + list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith("fourd_widgets")]
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is declared but not pinned in scripts/constraints.txt"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} is outside {req.specifier}"
        upper = [s for s in req.specifier if s.operator in ("<", "<=")]
        assert upper, f"{req.name} has no upper bound in pyproject.toml"


def test_install_script_checks_debian_chromium_by_default() -> None:
    assert 'CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"' in INSTALL.read_text()


def test_formats_table_matches_the_readers() -> None:
    rows = [ln for ln in section("Supported formats").splitlines() if ln.startswith("| `")]
    expected = [f"| `{name}` | {', '.join(exts)} | {what} |" for name, exts, what in SUPPORTED_FORMATS]
    assert rows == expected


def test_console_examples_parse() -> None:
    commands = [ln[2:] for ln in section("A short tour").splitlines() if ln.startswith("$ ")]
    assert len(commands) >= 3
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command, comments=True)
        assert argv[0] == "fourd-widgets"
        parser.parse_args(argv[1:])  # exits (fails the test) on a usage error


def test_api_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tour,) = code_blocks(section("A short tour"), "python")
    data = np.random.default_rng(0).poisson(3.0, size=(8, 9, 16, 16)).astype(np.uint16)
    cal = fw.Calibration(real_step=2.0, reciprocal_step=0.02, energy_eV=200e3, origin=(8, 8))
    write_cube_h5(fw.DataCube(data, cal), tmp_path / "scan.h5")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(tour, "README.md", "exec"), namespace)
    assert namespace["small"].detector_shape == (8, 8)
    np.testing.assert_array_equal(namespace["dp"], data[3, 5])
    assert namespace["cal"].energy_eV == 200e3
    assert namespace["cube"].shape == (8, 8, 64, 64)  # the last line rebinds cube
    for handle in (namespace["small"],):
        handle.close()
    assert os.listdir(tmp_path) == ["scan.h5"]
