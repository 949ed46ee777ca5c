"""Calibration: validation, unit conversions against physics, JSON round trip, clear errors."""

import json

import numpy as np
import pytest

from fourd_widgets.core.calibration import Calibration, electron_wavelength_A
from fourd_widgets.errors import CalibrationError, MissingCalibrationError, ParameterError


@pytest.mark.parametrize("kv,lam_pm", [(80, 4.1757), (200, 2.5079), (300, 1.9687)])
def test_wavelength_matches_tabulated_values(kv, lam_pm):
    # Tabulated relativistic wavelengths (Williams & Carter, Table 1.2), 4 decimals in pm.
    assert electron_wavelength_A(kv * 1e3) * 100 == pytest.approx(lam_pm, abs=2e-4)


def test_reciprocal_conversions_agree_with_shared_data_readme():
    # The shared Si files state 0.015625 1/Å per px = 0.3076 mrad per px at 300 kV.
    cal = Calibration(reciprocal_step=0.015625, reciprocal_units="1/Å", energy_eV=300e3)
    assert cal.reciprocal_step_in("mrad") == pytest.approx(0.3076, abs=5e-5)
    assert cal.reciprocal_step_in("1/nm") == pytest.approx(0.15625)
    back = Calibration(reciprocal_step=cal.reciprocal_step_in("mrad"), reciprocal_units="mrad", energy_eV=300e3)
    assert back.reciprocal_step_in("1/Å") == pytest.approx(0.015625, rel=1e-12)


def test_real_step_units_and_aliases():
    cal = Calibration(real_step=1.5, real_units="nm")
    assert cal.real_step_in("Å") == pytest.approx(15.0)
    assert Calibration(real_step=1, real_units="angstrom").real_units == "Å"
    assert Calibration(reciprocal_step=1, reciprocal_units="A^-1").reciprocal_units == "1/Å"


def test_detector_px_conversion_round_trip():
    cal = Calibration(reciprocal_step=0.02, energy_eV=200e3)
    assert cal.detector_to_px(cal.px_to_detector(12.5, "mrad"), "mrad") == pytest.approx(12.5)
    assert cal.px_to_detector(10, "1/Å") == pytest.approx(0.2)


def test_convergence_semiangle_in_px():
    cal = Calibration(reciprocal_step=0.015625, energy_eV=300e3, convergence_semiangle_mrad=2.5)
    # 2.5 mrad / 0.3076 mrad/px = 8.13 px: the shared README's "8.1 px disk radius".
    assert cal.convergence_semiangle_px == pytest.approx(8.13, abs=0.01)


def test_missing_calibration_says_which_and_how():
    cal = Calibration(reciprocal_step=0.01)
    with pytest.raises(MissingCalibrationError) as exc:
        cal.reciprocal_step_in("mrad")
    assert "energy_eV" in str(exc.value) and "replace(energy_eV" in str(exc.value)
    with pytest.raises(MissingCalibrationError, match="real_step"):
        Calibration().real_step_in("nm")


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(real_step=-1), "real_step"),
        (dict(reciprocal_step=0), "reciprocal_step"),
        (dict(energy_eV=float("nan")), "energy_eV"),
        (dict(real_units="furlong"), "furlong"),
        (dict(reciprocal_units="1/parsec"), "1/parsec"),
        (dict(origin=(1, 2, 3)), "origin"),
        (dict(ellipse=(1, -1, 0)), "ellipse"),
        (dict(origin_map=np.zeros((3, 3))), "origin_map"),
        (dict(flip="yes"), "flip"),
    ],
)
def test_invalid_values_are_refused_by_name(kwargs, word):
    with pytest.raises(CalibrationError, match=word):
        Calibration(**kwargs)


def test_json_round_trip_with_origin_map():
    m = np.random.default_rng(0).normal(64, 0.3, size=(4, 5, 2))
    cal = Calibration(real_step=0.5, real_units="nm", reciprocal_step=0.3, reciprocal_units="mrad",
                      energy_eV=200e3, convergence_semiangle_mrad=1.2, origin=(63.5, 64.25),
                      origin_map=m, ellipse=(1.0, 0.98, 12.0), rotation_deg=-3.5, flip=True)
    text = json.dumps(cal.to_dict())
    back = Calibration.from_dict(json.loads(text))
    assert back == cal
    assert np.array_equal(back.origin_map, m)
    assert back.origin_at(2, 3) == (m[2, 3, 0], m[2, 3, 1])
    assert back != cal.replace(flip=False)


def test_frozen_and_replace_validates():
    cal = Calibration(real_step=1.0)
    with pytest.raises(Exception):
        cal.real_step = 2.0  # type: ignore[misc]
    with pytest.raises(ParameterError, match="no field 'pixel'"):
        cal.replace(pixel=3)
    with pytest.raises(CalibrationError):
        cal.replace(real_step=-3)
    assert cal.replace(real_step=2.0).real_step == 2.0 and cal.real_step == 1.0


def test_from_dict_refuses_unknown_and_newer():
    d = Calibration().to_dict()
    with pytest.raises(ParameterError, match="unknown calibration field 'colour'"):
        Calibration.from_dict({**d, "colour": "red"})
    with pytest.raises(ParameterError, match="newer"):
        Calibration.from_dict({**d, "schema_version": 99})
    with pytest.raises(ParameterError, match="calibration record"):
        Calibration.from_dict({**d, "type": "recipe"})


def test_repr_shows_an_origin_map_by_its_size():
    # An origin map is an array; comparing it with the default None used to raise in repr.
    cal = Calibration(origin_map=np.zeros((3, 4, 2)), energy_eV=200e3)
    text = repr(cal)
    assert "origin_map=<map 3x4>" in text
    assert "energy_eV=200000.0" in text
