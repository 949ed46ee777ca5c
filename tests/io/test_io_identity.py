"""The input identity and run key shared by the batch runner and the engine's checkpoints."""

from __future__ import annotations

import os

import numpy as np

from fourd_widgets.core.calibration import Calibration
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.identity import HASHED_BYTES, canonical_json, input_identity, run_key, run_key_parts


def test_identity_follows_links_and_sees_size_time_and_the_ends(tmp_path):
    p = tmp_path / "scan.bin"
    blob = bytearray(os.urandom(3 * HASHED_BYTES))
    p.write_bytes(blob)
    link = tmp_path / "link.bin"
    link.symlink_to(p)
    ident = input_identity(link)
    assert ident["path"] == str(p.resolve()) and ident["size"] == len(blob)
    assert ident["mtime_ns"] == os.stat(p).st_mtime_ns
    st = os.stat(p)
    for where in (0, len(blob) - 1):  # a byte in the first or the last MiB changes the hash
        changed = bytearray(blob)
        changed[where] ^= 0xFF
        p.write_bytes(changed)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time: only the hash can tell
        assert input_identity(p)["sha256"] != ident["sha256"]
        assert input_identity(p)["mtime_ns"] == ident["mtime_ns"]
    p.write_bytes(blob)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert input_identity(p) == ident


def test_identity_of_a_small_file_hashes_all_of_it(tmp_path):
    import hashlib

    p = tmp_path / "s.npy"
    np.save(p, np.arange(10))
    assert input_identity(p)["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_identity_of_a_folder_covers_its_files(tmp_path):
    store = tmp_path / "scan.zarr"
    store.mkdir()
    (store / "a").write_bytes(b"12")
    first = input_identity(store)
    (store / "b").write_bytes(b"345")
    second = input_identity(store)
    assert second["size"] == 5 and second["sha256"] != first["sha256"]


def test_run_key_changes_with_each_part_and_only_then():
    ident = {"path": "/d/scan.h5", "size": 10, "mtime_ns": 1, "sha256": "0" * 64}
    recipe = Recipe((), calibration=Calibration(real_step=2.0))
    base = run_key(recipe, {"binning": 2}, ident)
    assert run_key(Recipe((), calibration=Calibration(real_step=2.0)), {"binning": (2)}, dict(ident)) == base
    assert run_key(recipe.to_dict(), {"binning": 2}, ident) == base  # a recipe or its dict
    assert run_key(Recipe((), calibration=Calibration(real_step=2.5)), {"binning": 2}, ident) != base
    assert run_key(recipe, {"binning": 4}, ident) != base
    assert run_key(recipe, {"binning": 2}, {**ident, "mtime_ns": 2}) != base
    assert run_key(recipe, None, ident) == run_key(recipe, {}, ident)
    parts = run_key_parts(recipe, {"binning": 2}, ident)
    assert sorted(parts) == ["input", "load options", "recipe"]
    other = run_key_parts(recipe, {"binning": 4}, ident)
    assert [k for k in parts if parts[k] != other[k]] == ["load options"]


def test_canonical_json_is_order_and_tuple_blind():
    assert canonical_json({"b": (1, 2), "a": {"y": 1, "x": 2}}) == canonical_json({"a": {"x": 2, "y": 1},
                                                                                  "b": [1, 2]})
    assert canonical_json({"v": np.float32(0.5), "n": np.int64(3)}) == '{"n":3,"v":0.5}'
