"""Issue 12 item 15: a damaged results file always ends in our error naming it (which part is
damaged), and ``Results.save`` to a place it cannot write says so clearly. Hypothesis byte flips
on a whole results file are in the fuzz suite (test_io_fuzz_children.py, each in a child process)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.run import run
from fourd_widgets.analysis.virtual import VirtualImageParams
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.errors import FileFormatError
from fourd_widgets.io.results import Results

from ..privileges import as_nobody, needs_root, open_folder  # noqa: F401 (fixture)


def _results() -> Results:
    data = np.random.default_rng(2).poisson(4.0, size=(80, 80, 8, 8)).astype(np.uint16)
    disk = fw.detectors.Circle(center=(4, 4), radius=2)
    return run(Recipe((VirtualImageParams(detectors=(disk,)),)), fw.DataCube(data), progress=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "good.results.h5"
    _results().save(path)
    return path


def _copy(saved, tmp_path, name="damaged.results.h5"):
    dst = tmp_path / name
    dst.write_bytes(saved.read_bytes())
    return dst


def _replace_text(path, name, text):
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, data=text)


def _flip_chunk(path):
    # Flip bytes inside the gzip stream of the (compressed) virtual image: HDF5's filter fails
    with h5py.File(path, "r") as f:
        d = f["results/virtual_image"]
        assert d.compression == "gzip"
        info = d.id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\x00\xff" * 16)


def _set_attr(path, name, value):
    with h5py.File(path, "r+") as f:
        f.attrs[name] = value


def _drop(path, name):
    with h5py.File(path, "r+") as f:
        del f[name]


DAMAGE = {
    "recipe_not_json": (lambda p: _replace_text(p, "recipe", "{not json"), "the recipe"),
    "recipe_not_a_recipe": (lambda p: _replace_text(p, "recipe", '{"steps": 5}'), "the recipe"),
    "provenance_not_json": (lambda p: _replace_text(p, "provenance", "garbage{"), "the provenance"),
    "recipe_a_number": (lambda p: _replace_text(p, "recipe", np.arange(3)), "the recipe"),
    "compressed_chunk_flipped": (_flip_chunk, "result 'virtual_image'"),
    "version_is_text": (lambda p: _set_attr(p, "fourd_widgets_results", "one"), "version"),
    "no_results_group": (lambda p: _drop(p, "results"), "results"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_file_ends_in_our_error_naming_it_and_the_part(saved, tmp_path, kind):
    damage, part = DAMAGE[kind]
    path = _copy(saved, tmp_path)
    damage(path)
    with pytest.raises(FileFormatError) as info:
        Results.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and part in message, message


def test_the_intact_copy_still_reads(saved, tmp_path):
    back = Results.load(_copy(saved, tmp_path))
    assert back["virtual_image"].shape == (1, 80, 80) and not back.partial


def test_save_to_a_missing_folder_says_so(tmp_path):
    target = tmp_path / "no_such_folder" / "r.results.h5"
    with pytest.raises(FileFormatError, match="no_such_folder does not exist"):
        _results().save(target)
    assert not (tmp_path / "no_such_folder").exists()


def test_save_onto_a_folder_says_so_and_leaves_it(tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(FileFormatError, match="is a folder"):
        _results().save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no temporary file left


def test_save_under_a_file_says_so(tmp_path):
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(FileFormatError, match="is not a folder"):
        _results().save(tmp_path / "plain" / "r.results.h5")


@needs_root
def test_save_into_an_unwritable_folder_says_so(open_folder):
    locked = open_folder / "locked"
    locked.mkdir(mode=0o755)  # root's: 'nobody' may not write in it
    res = _results()
    res.save(open_folder / "warm.h5")  # h5py's first write, while still root

    def attempt() -> str:
        try:
            res.save(locked / "r.results.h5")
        except FileFormatError as exc:
            return f"clear: {exc}"
        return "saved"

    out = as_nobody(attempt)
    assert out.startswith("ok") and "clear:" in out and "r.results.h5" in out and "cannot be written" in out, out
    assert not os.listdir(locked)
