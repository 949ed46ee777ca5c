"""rosettasciio-backed formats: signal choice, axes calibration, TIFF stacks."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, MissingOptionError
from fourd_widgets.io.rosetta import _pick_signal, calibration_from_axes


def _sig(shape, title=""):
    return {"data": np.zeros(shape), "metadata": {"General": {"title": title}}}


def test_signal_choice_prefers_4d_and_lists_choices_when_ambiguous():
    signals = [_sig((8, 8), "HAADF"), _sig((2, 3, 4, 4), "4D"), _sig((5, 4, 4), "stack")]
    assert _pick_signal("f.emd", signals, None) == 1
    assert _pick_signal("f.emd", signals, "HAADF") == 0
    assert _pick_signal("f.emd", signals, -1) == 2
    two = [_sig((8, 8), "A"), _sig((8, 8), "B")]
    with pytest.raises(FileFormatError) as info:
        _pick_signal("f.emd", two, None)
    msg = str(info.value)
    assert "f.emd" in msg and "'A'" in msg and "'B'" in msg and "signal=" in msg
    with pytest.raises(FileFormatError, match="no signal 'C'.*'A'"):
        _pick_signal("f.emd", two, "C")
    with pytest.raises(FileFormatError, match="no diffraction data"):
        _pick_signal("f.emd", [_sig((7,))], None)


@pytest.mark.parametrize("units,expected", [("nm", "nm"), ("A", "Å"), ("Å", "Å"), ("<undefined>", None),
                                            ("", None), ("px", None)])
def test_real_units_from_axes(units, expected):
    axes = [dict(scale=0.5, units=units)] * 2 + [dict(scale=1.0, units="")] * 2
    cal = calibration_from_axes(axes)
    assert cal.get("real_units") == expected
    assert ("real_step" in cal) == (expected is not None)


@pytest.mark.parametrize("units,expected", [("1 / nm", "1/nm"), ("$A^{-1}$", "1/Å"), ("nm^-1", "1/nm"),
                                            ("mrad", "mrad"), ("cm", None), ("1/Å", "1/Å")])
def test_reciprocal_units_from_axes(units, expected):
    cal = calibration_from_axes([dict(scale=0.02, units=units, size=10)] * 2)
    assert cal.get("reciprocal_units") == expected


def test_axes_that_disagree_or_are_absurd_give_no_calibration():
    nav = [dict(scale=1.0, units="nm"), dict(scale=2.0, units="nm")]
    sig = [dict(scale=7.8e-20, units="1 / nm", size=8)] * 2
    cal = calibration_from_axes(nav + sig, {"Acquisition_instrument": {"TEM": {"beam_energy": "n/a"}}})
    assert cal == {}


def test_energy_and_convergence_from_metadata():
    md = {"Acquisition_instrument": {"TEM": {"beam_energy": 300.0, "convergence_angle": 1.2}}}
    cal = calibration_from_axes([dict(scale=1.0, units="")] * 2, md)
    assert cal == {"energy_eV": 300e3, "convergence_semiangle_mrad": 1.2}


def test_tiff_pattern_and_stack(tmp_path, rng):
    one = rng.random((16, 12), dtype=np.float32)
    tifffile.imwrite(tmp_path / "one.tif", one)
    cube = fw.load(tmp_path / "one.tif")
    assert cube.shape == (1, 1, 16, 12)
    np.testing.assert_array_equal(cube.pattern(0, 0), one)

    stack = rng.integers(0, 255, size=(6, 16, 12), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tiff", stack)
    with pytest.raises(MissingOptionError, match="6 diffraction frames"):
        fw.load(tmp_path / "stack.tiff")
    cube = fw.load(tmp_path / "stack.tiff", scan_shape=(2, 3))
    np.testing.assert_array_equal(cube.to_numpy(), stack.reshape(2, 3, 16, 12))


def test_mib_header_alone_points_at_missing_frames(tmp_path):
    (tmp_path / "x.hdr").write_text("HDR,\nEnd\t\n")
    with pytest.raises(FileFormatError, match="x.mib"):
        fw.load(tmp_path / "x.hdr")


def test_hspy_4d_round_trip_with_calibration(tmp_path):
    from rsciio.hspy import file_writer

    data = np.arange(3 * 4 * 5 * 6, dtype=np.uint16).reshape(3, 4, 5, 6)
    axes = [dict(name="x", size=3, scale=2.0, offset=0.0, units="nm", navigate=True),
            dict(name="y", size=4, scale=2.0, offset=0.0, units="nm", navigate=True),
            dict(name="kx", size=5, scale=0.1, offset=-0.2, units="1/nm", navigate=False),
            dict(name="ky", size=6, scale=0.1, offset=-0.3, units="1/nm", navigate=False)]
    md = {"General": {"title": "scan"}, "Signal": {"signal_type": "electron_diffraction"},
          "Acquisition_instrument": {"TEM": {"beam_energy": 200.0, "convergence_angle": 1.5}}}
    file_writer(str(tmp_path / "t.hspy"), dict(
        data=data, axes=axes, metadata=md, original_metadata={}, attributes={"_lazy": False},
        tmp_parameters={}, package_info={"name": "test", "version": "0"}, learning_results={}, models={}))
    cube = fw.load(tmp_path / "t.hspy")
    assert cube.source["format"] == "hspy"
    np.testing.assert_array_equal(cube.to_numpy(), data)  # axis order kept, no transpose
    cal = cube.calibration
    assert (cal.real_step, cal.real_units) == (2.0, "nm")
    assert (cal.reciprocal_step, cal.reciprocal_units) == (0.1, "1/nm")
    assert cal.energy_eV == 200e3 and cal.convergence_semiangle_mrad == 1.5
    assert cal.origin == pytest.approx((2.0, 3.0))
