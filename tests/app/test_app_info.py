"""``fourd-widgets info``: the table and JSON agree with what the files themselves hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from fourd_widgets.app import cli
from fourd_widgets.app.info import format_calibration, format_table, human_size, to_json

ROW = re.compile(r"^\s*(\S.*?)\s{2,}(\S.*)$")


def table_rows(text: str) -> dict[str, str]:
    """``label -> value`` for each ``label  value`` line of an info table."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def file_facts(path: Path) -> dict:
    """Shape, dtype, chunks and root attributes of the ``data`` dataset, read with h5py."""
    with h5py.File(path, "r") as f:
        dset = f["data"]
        return {"shape": dset.shape, "dtype": dset.dtype, "chunks": dset.chunks,
                "attrs": {k: np.asarray(v) for k, v in f.attrs.items()}}


def first(value: np.ndarray) -> float:
    return float(np.ravel(value)[0])


# --- formatting, on hand-written descriptions ---------------------------------
@pytest.mark.parametrize("nbytes, text", [
    (0, "0 bytes"),
    (1023, "1023 bytes"),
    (1024, "1.0 KiB (1,024 bytes)"),
    (13_421_772, "12.8 MiB (13,421,772 bytes)"),
    (3 * 2**40, "3.0 TiB (3,298,534,883,328 bytes)"),
])
def test_human_size(nbytes: int, text: str) -> None:
    assert human_size(nbytes) == text


def test_calibration_lines_carry_units() -> None:
    rows = table_rows(format_calibration({
        "real_step": 2.5, "real_units": "nm", "reciprocal_step": 0.3, "reciprocal_units": "mrad",
        "energy_eV": 200e3, "convergence_semiangle_mrad": 1.5, "origin": None,
        "ellipse": [1.0, 0.98, 30.0], "rotation_deg": -12.0, "flip": True,
    }))
    assert rows == {
        "real step": "2.5 nm", "reciprocal step": "0.3 mrad", "beam energy": "200 keV",
        "convergence semi-angle": "1.5 mrad", "ellipse (a, b, θ°)": "(1, 0.98, 30)",
        "rotation": "-12°", "flip": "yes",
    }


def test_origin_map_is_summarised() -> None:
    lines = format_calibration({"origin_map": np.zeros((3, 4, 2)).tolist()})
    assert table_rows(lines) == {"origin": "a map over the scan, 3 × 4 positions"}


def test_empty_calibration_says_pixels() -> None:
    assert "everything in pixels" in format_calibration({})


def test_table_of_a_description() -> None:
    text = format_table("a.h5", {
        "format": "hdf5", "shape": (2, 3, 4, 5), "dtype": "uint16", "nbytes": 240,
        "storage_chunks": None, "calibration": {"energy_eV": 80e3}, "dataset": "/data", "options": {},
    })
    rows = table_rows(text)
    assert rows["file"] == "a.h5"
    assert rows["shape"] == "(2, 3, 4, 5)  scan 2 × 3, detector 4 × 5"
    assert rows["size"] == "240 bytes"
    assert rows["chunking"] == "contiguous (not chunked)"
    assert rows["dataset"] == "/data"
    assert "options" not in rows
    assert rows["beam energy"] == "80 keV"


def test_json_turns_numpy_into_plain_values() -> None:
    data = json.loads(to_json({"shape": (np.int64(2), 3), "dtype": np.dtype("<f4"),
                               "calibration": {"origin": np.array([1.5, 2.0])}}))
    assert data == {"shape": [2, 3], "dtype": "float32", "calibration": {"origin": [1.5, 2.0]}}


# --- real files -----------------------------------------------------------------
def check_table_against_file(text: str, path: Path) -> None:
    """The table's numbers are those stored in ``path`` (read with h5py, not copied)."""
    facts = file_facts(path)
    attrs = facts["attrs"]
    shape, dtype = facts["shape"], facts["dtype"]
    rows = table_rows(text)
    assert rows["file"] == str(path)
    assert rows["format"] == "hdf5"
    assert rows["shape"].split("  ")[0] == str(tuple(shape))
    assert rows["dtype"] == str(dtype)
    assert rows["size"].endswith(f"({int(np.prod(shape)) * dtype.itemsize:,} bytes)")
    assert rows["size on disk"].endswith(f"({path.stat().st_size:,} bytes)")
    assert rows["chunking"] == (str(facts["chunks"]) if facts["chunks"] else "contiguous (not chunked)")
    assert rows["real step"] == f"{first(attrs['scan_step_A']):g} Å"
    assert rows["reciprocal step"] == f"{first(attrs['reciprocal_sampling_invA']):g} 1/Å"
    assert rows["beam energy"] == f"{first(attrs['energy_eV']) / 1e3:g} keV"
    assert rows["convergence semi-angle"] == f"{first(attrs['convergence_semiangle_mrad']):g} mrad"
    origin = attrs["origin_px"].ravel()
    assert rows["origin"] == f"({origin[0]:g}, {origin[1]:g}) px"


def check_json_against_file(text: str, path: Path) -> None:
    facts = file_facts(path)
    attrs = facts["attrs"]
    data = json.loads(text)
    assert data["shape"] == list(facts["shape"])
    assert data["dtype"] == str(facts["dtype"])
    assert data["nbytes"] == int(np.prod(facts["shape"])) * facts["dtype"].itemsize
    cal = data["calibration"]
    assert cal["real_step"] == pytest.approx(first(attrs["scan_step_A"]))
    assert cal["real_units"] == "Å"
    assert cal["reciprocal_step"] == pytest.approx(first(attrs["reciprocal_sampling_invA"]))
    assert cal["reciprocal_units"] == "1/Å"
    assert cal["energy_eV"] == pytest.approx(first(attrs["energy_eV"]))
    assert cal["convergence_semiangle_mrad"] == pytest.approx(first(attrs["convergence_semiangle_mrad"]))
    assert cal["origin"] == pytest.approx(attrs["origin_px"].ravel().tolist())


@pytest.mark.shared_data
def test_info_table_on_shared_file(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    path = shared_data / "si_001_unstrained.h5"
    assert cli.main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    check_table_against_file(captured.out, path)


@pytest.mark.shared_data
def test_info_json_on_shared_file_in_a_subprocess(shared_data: Path, run_app) -> None:
    path = shared_data / "si_001_unstrained.h5"
    result = run_app("info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    check_json_against_file(result.stdout, path)


@pytest.mark.shared_data
def test_info_passes_binning_to_the_reader(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    path = shared_data / "si_001_unstrained.h5"
    facts = file_facts(path)
    assert cli.main(["info", str(path), "--binning", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rx, ry, qx, qy = facts["shape"]
    assert data["shape"] == [rx, ry, qx // 2, qy // 2]
    assert data["calibration"]["reciprocal_step"] == pytest.approx(
        2 * first(facts["attrs"]["reciprocal_sampling_invA"]))
    assert data["options"] == {"binning": 2}
    assert cli.main(["info", str(path), "--binning", "2", "--scan-shape", "16", "16"]) == 0
    assert table_rows(capsys.readouterr().out)["options"] == "scan_shape=[16, 16], binning=2"


def test_info_on_the_sample_file(sample_h5: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["info", str(sample_h5)]) == 0
    check_table_against_file(capsys.readouterr().out, sample_h5)
    assert cli.main(["info", str(sample_h5), "--json"]) == 0
    check_json_against_file(capsys.readouterr().out, sample_h5)


def test_info_dataset_option_picks_the_array(tmp_path: Path, capsys) -> None:
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["first"] = np.zeros((2, 3, 4, 5), dtype=np.uint8)
        f["second"] = np.zeros((3, 2, 6, 6), dtype=np.int16)
    assert cli.main(["info", str(path), "--dataset", "second", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["shape"], data["dtype"]) == ([3, 2, 6, 6], "int16")


def test_info_scan_shape_option_reshapes_a_stack(tmp_path: Path, capsys) -> None:
    path = tmp_path / "stack.npy"
    np.save(path, np.zeros((12, 4, 5), dtype=np.float32))
    assert cli.main(["info", str(path), "--scan-shape", "3", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [3, 4, 4, 5]


def assert_one_line_error(result, path: Path) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fourd-widgets info: error: ")
    assert str(path) in lines[0]


def test_info_on_a_missing_file(tmp_path: Path, run_app) -> None:
    path = tmp_path / "no_such_scan.h5"
    assert_one_line_error(run_app("info", str(path)), path)


@pytest.mark.parametrize("content", [
    b"\x89HDF\r\n\x1a\n" + b"\x00garbage" * 64,  # HDF5 signature, broken superblock
    b"this is not HDF5",
])
def test_info_on_a_corrupt_file(tmp_path: Path, run_app, content: bytes) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(content)
    assert_one_line_error(run_app("info", str(path)), path)


def test_info_on_a_truncated_sample_file(sample_h5: Path, tmp_path: Path, run_app) -> None:
    path = tmp_path / "truncated.h5"
    path.write_bytes(sample_h5.read_bytes()[: sample_h5.stat().st_size // 3])
    assert_one_line_error(run_app("info", str(path)), path)
