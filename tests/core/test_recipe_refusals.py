"""Issue 12 item 14: hostile recipe files are refused with our error, naming the file and what is
wrong, and ``fourd-widgets run`` exits 2 (a usage error) with one line and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.virtual import VirtualImageParams
from fourd_widgets.app import cli
from fourd_widgets.core.calibration import Calibration
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.errors import FourDError, ParameterError


def _base() -> dict:
    disks = (fw.detectors.Circle(center=(8, 8), radius=4),
             fw.detectors.Mask(mask=np.ones((2, 2), dtype=np.uint8)))
    return Recipe((VirtualImageParams(detectors=disks),), calibration=Calibration(real_step=1.0)).to_dict()


def _with(change) -> str:
    d = _base()
    change(d)
    return json.dumps(d)


def _text_with(old: str, new: str) -> str:
    text = json.dumps(_base())
    assert old in text
    return text.replace(old, new, 1)


def _set(path, value):
    def change(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


# (name, recipe text, words the message must hold)
HOSTILE = [
    ("input_number", _with(_set(["input"], 5)), "input"),
    ("input_list", _with(_set(["input"], [1, 2])), "input"),
    ("input_text", _with(_set(["input"], "ab")), "input"),
    ("origin_map_text", _with(_set(["calibration", "origin_map"], "abc")), "origin_map"),
    ("origin_map_ragged", _with(_set(["calibration", "origin_map"], [[[1, 2]], [[1]]])), "origin_map"),
    ("origin_text", _with(_set(["calibration", "origin"], "64,64")), "origin"),
    ("nested", "[" * 100_000, "too deeply"),
    ("long_integer", _text_with('"real_step": 1.0', '"real_step": ' + "9" * 5000), "5000 digits"),
    ("radius_1e400", _text_with('"radius": 4.0', '"radius": 1' + "0" * 400), "radius"),
    ("mask_negative_shape", _with(lambda d: d["steps"][0]["detectors"][1]["mask"].update(shape=[-2, -2])),
     "negative"),
    ("schema_version_0", _with(_set(["schema_version"], 0)), "schema_version"),
    ("schema_version_negative", _with(_set(["schema_version"], -3)), "schema_version"),
    ("schema_version_true", _with(_set(["schema_version"], True)), "schema_version"),
    ("schema_version_text", _with(_set(["schema_version"], "1")), "schema_version"),
]


@pytest.mark.parametrize("name,text,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_recipe_is_refused_naming_the_file_and_the_problem(tmp_path, name, text, words):
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    with pytest.raises(FourDError) as info:
        Recipe.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert words in message, message


@pytest.mark.parametrize("version", [0, -3, True, "1"])
def test_schema_version_must_be_a_positive_integer_not_called_newer(version):
    d = _base()
    d["schema_version"] = version
    with pytest.raises(ParameterError, match="schema_version must be a positive integer") as info:
        Recipe.from_dict(d)
    assert "newer" not in str(info.value)
    d["calibration"]["schema_version"] = version
    d["schema_version"] = 1
    with pytest.raises(ParameterError, match="schema_version must be a positive integer"):
        Recipe.from_dict(d)


def test_a_recipe_that_is_not_text_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b'{"type": "recipe", \xff\xfe}')
    with pytest.raises(FourDError, match="binary.json.*not UTF-8"):
        Recipe.load(path)


@pytest.mark.parametrize("name,text,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_cli_exits_2_with_one_line_and_no_traceback(tmp_path, capsys, name, text, words):
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    data = tmp_path / "scan.npy"
    np.save(data, np.ones((2, 2, 16, 16), dtype=np.uint16))
    status = cli.main(["run", str(path), str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and str(path) in err


def test_the_cli_in_a_process_exits_2_without_a_traceback(tmp_path):
    # the real command, for the two inputs that broke Python itself (recursion, integer size)
    data = tmp_path / "scan.npy"
    np.save(data, np.ones((2, 2, 16, 16), dtype=np.uint16))
    for name, text, _ in HOSTILE[6:8]:
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        out = subprocess.run([sys.executable, "-m", "fourd_widgets.app", "run", str(path), str(data),
                              "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and str(path) in out.stderr
