"""The command-line frame: subcommand registration, --version, usage and error handling."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import fourd_widgets
from fourd_widgets.app import cli, info
from fourd_widgets.errors import FileFormatError


def test_every_subcommand_is_registered() -> None:
    parser = cli.build_parser()
    names = set(parser._subparsers._group_actions[0].choices)  # the one subparsers action
    assert names == {"info", "demo", "dashboard", "run"}
    for module in cli.SUBCOMMANDS:
        assert callable(module.add_parser)


def test_version(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fourd-widgets {fourd_widgets.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert cli.main([]) == cli.USER_ERROR
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["info", "x.h5", "--no-such-option"]) == cli.USER_ERROR
    assert "--no-such-option" in capsys.readouterr().err


def test_our_errors_print_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    path = tmp_path / "data.h5"
    path.write_bytes(b"x")

    def refuse(args):
        raise FileFormatError(path, "is refused for this test.")

    monkeypatch.setattr(info, "run", refuse)
    assert cli.main(["info", str(path)]) == cli.USER_ERROR
    err = capsys.readouterr().err
    assert err == f"fourd-widgets info: error: {path}: is refused for this test.\n"


def test_other_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    def crash(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(info, "run", crash)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["info", str(tmp_path / "x.h5")])


def test_module_entry_point_runs(run_app) -> None:
    result = run_app("--help")
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("info", "demo", "run"))


def test_console_script_is_installed() -> None:
    exe = shutil.which("fourd-widgets")
    assert exe, "the fourd-widgets console script is not on PATH; run pip install -e ."
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert result.stdout.strip() == f"fourd-widgets {fourd_widgets.__version__}"
