"""Recipe: ordered step records + calibration, JSON round trip, refusals."""

import json

import pytest

from fourd_widgets.core.calibration import Calibration
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.errors import FileFormatError, ParameterError

from .test_params import Disk, Ring


def make():
    return Recipe(steps=(Disk((1, 2), 3), Ring((0, 0), 1, 4), Disk((5, 5), 1)),
                  calibration=Calibration(real_step=2.0, energy_eV=300e3),
                  input={"path": "scan.h5", "shape": [4, 4, 8, 8]})


def test_default_labels_are_unique():
    assert make().labels == ("test.disk", "test.ring", "test.disk_2")
    r = Recipe().then(Disk()).then(Disk()).then(Ring(), label="ring")
    assert r.labels == ("test.disk", "test.disk_2", "ring")


def test_json_file_round_trip(tmp_path):
    r = make()
    path = tmp_path / "recipe.json"
    r.save(path)
    back = Recipe.load(path)
    assert back == r and back.steps[1] == Ring((0, 0), 1, 4)
    assert back.calibration.energy_eV == 300e3 and back.input["path"] == "scan.h5"
    assert list(dict(back).keys()) == list(r.labels)
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.update(extra=1), "recipe: unknown field 'extra'"),
        (lambda d: d.update(schema_version=7), "recipe schema_version 7 is newer"),
        (lambda d: d["steps"][1].update(inner=9), "recipe step 1: test.ring: inner (9.0) must be smaller"),
        (lambda d: d["steps"].append({"step": "no.such"}), "recipe step 3: unknown step 'no.such'"),
        (lambda d: d.update(labels=["a", "a", "b"]), "labels must be unique"),
        (lambda d: d.update(labels=["a"]), "one label per step"),
        (lambda d: d.update(steps={}), "steps must be a list"),
    ],
)
def test_refusals(mutate, message):
    d = json.loads(make().to_json())
    mutate(d)
    with pytest.raises(ParameterError) as exc:
        Recipe.from_dict(d)
    assert message in str(exc.value)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileFormatError, match="missing.json"):
        Recipe.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParameterError, match="bad.json: recipe is not valid JSON"):
        Recipe.load(bad)


def test_coerce_accepts_recipe_dict_and_json_only():
    r = make()
    assert Recipe.coerce(r) is r
    assert Recipe.coerce(r.to_dict()) == r
    assert Recipe.coerce(r.to_json()) == r
    with pytest.raises(ParameterError, match="expected a Recipe, its dict or its JSON, got int"):
        Recipe.coerce(3)
