"""DPC / iDPC: accuracy against simulated truth, rotation handling, bad input, replay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fourd_widgets.analysis.phase_common import phase_agreement
from fourd_widgets.analysis.phase_dpc import DPCParams, dpc, integrate_gradient
from fourd_widgets.core.errors import CalibrationError, MissingCalibrationError, ShapeError
from fourd_widgets.core.params import Params
from fourd_widgets.datasets.phase import simulate_phase


@pytest.fixture(scope="module")
def weak():
    """Issue 16's weak-phase case: SrTiO3 [001] scaled to 0.3 rad, 20 mrad, 1 mrad/px, 32x32 x 96x96,
    scan rotated by 30° (recorded in the calibration)."""
    return simulate_phase(scan_shape=(32, 32), scan_step_A=0.244, scan_rotation_deg=30.0, workers=2)


def test_integrate_gradient_recovers_a_non_periodic_phase():
    x, y = np.meshgrid(np.arange(40.0), np.arange(30.0), indexing="ij")
    phi = 0.02 * x + 0.5 * np.exp(-((x - 30) ** 2 + (y - 5) ** 2) / 30)  # ramp + bump at the edge
    gx = np.gradient(phi, axis=0)
    gy = np.gradient(phi, axis=1)
    got = integrate_gradient(np.stack([gx, gy], -1), boundary="mirror")
    err = (got - got.mean()) - (phi - phi.mean())
    assert np.abs(err).max() < 0.02  # central differences, not the integrator, limit this
    periodic = integrate_gradient(np.stack([gx, gy], -1), boundary="periodic")
    assert np.abs((periodic - periodic.mean()) - (phi - phi.mean())).max() > 0.1  # why mirror is the default


def test_idpc_matches_the_weak_phase_truth(weak):
    cube, truth = weak
    raw = dpc(cube, progress=False)
    assert raw.rotation_deg == 30.0 and raw.flip is False
    r, slope = phase_agreement(raw.phase, truth.phase_on_scan, truth.real_step_A)
    # iDPC is |P|² ⊛ φ: the probe blur (0.5 Å FWHM) lowers the slope to ~0.66 but not the correlation
    assert r > 0.97 and 0.5 < slope < 0.8
    dec = dpc(cube, probe_deconvolution=1e-3, progress=False)
    r, slope = phase_agreement(dec.phase, truth.phase_on_scan, truth.real_step_A)
    assert r >= 0.9 and 0.9 <= slope <= 1.1  # issue 16's target (measured 0.9999 and 0.975)


def test_com_is_the_phase_gradient_over_two_pi(weak):
    """The scan-frame CoM (1/Å) against the truth gradient seen through the probe intensity."""
    cube, truth = weak
    res = dpc(cube, progress=False)
    P2 = np.abs(truth.probe_real) ** 2
    P2 /= P2.sum()
    # truth phase on a 4x finer scan grid, blurred by the probe (window pixel ≈ scan step / 1.2)
    fine = 4
    step = truth.real_step_A / fine
    pos_i = np.arange(32 * fine) * step
    M = np.array([[np.cos(np.radians(30)), -np.sin(np.radians(30))], [np.sin(np.radians(30)), np.cos(np.radians(30))]])
    I, J = np.meshgrid(pos_i, pos_i, indexing="ij")
    lab = np.stack([I, J], -1) @ M.T
    co = ndimage.spline_filter(truth.object_phase, 3, mode="grid-wrap")
    phi = ndimage.map_coordinates(co, [lab[..., 0] / truth.object_pixel_A, lab[..., 1] / truth.object_pixel_A],
                                  order=3, mode="grid-wrap", prefilter=False)
    gi, gj = np.gradient(phi, step)
    sigma = 0.21 / step  # Gaussian with the probe intensity's rms width (0.21 Å at 20 mrad, 300 kV)
    pred = np.stack([ndimage.gaussian_filter(g, sigma, mode="wrap")[::fine, ::fine] for g in (gi, gj)], -1)
    pred /= 2 * np.pi
    slope = np.sum(res.com * pred) / np.sum(pred * pred)
    assert np.corrcoef(res.com.ravel(), pred.ravel())[0, 1] > 0.9
    assert slope == pytest.approx(1.0, abs=0.15)  # a Gaussian stands in for the Airy probe


def test_sto_multislice_idpc(shared_data):
    """abTEM multislice SrTiO3 (up to 4.3 rad), the truth sampled on the scan grid before the low-pass:
    that folds the atom cores' frequencies above the scan's Nyquist limit into the lattice frequencies,
    which caps the slope (measured: deconvolved 0.87, raw 0.61; an exact projection-approximation CoM
    gives 0.84). The issue's target, with the truth low-passed first, is the test below."""
    from fourd_widgets.datasets import load_shared

    cube, t = load_shared("sto_001_ptycho_20mrad", shared_data)
    ps = t["projected_potential_sampling_A"]
    pos = t["scan_positions_A"]
    truth = ndimage.map_coordinates(t["phase_rad"], [pos[..., 0] / ps[0], pos[..., 1] / ps[1]], order=3,
                                    mode="grid-wrap")
    step = cube.calibration.real_step
    raw = dpc(cube, boundary="periodic", progress=False)  # the scan covers exactly 2x2 unit cells
    r, slope = phase_agreement(raw.phase, truth, step)
    assert r >= 0.9 and 0.5 < slope < 0.7
    dec = dpc(cube, boundary="periodic", probe_deconvolution=1e-3, progress=False)
    r, slope = phase_agreement(dec.phase, truth, step)
    assert r >= 0.99 and 0.8 < slope < 1.1


def test_sto_multislice_idpc_meets_the_issue_target(shared_data):
    """Issue 16: iDPC on sto_001_ptycho_20mrad against phase_rad, Pearson ≥ 0.9 and slope 0.9-1.1, after the
    same Gaussian low-pass (σ = 0.3 Å) and interpolation onto the scan grid, in that order for the truth
    (on its own 0.076 Å grid; see truth_on_scan)."""
    from fourd_widgets.analysis.phase_common import truth_on_scan
    from fourd_widgets.datasets import load_shared

    cube, t = load_shared("sto_001_ptycho_20mrad", shared_data)
    truth = truth_on_scan(t["phase_rad"], tuple(t["projected_potential_sampling_A"]), t["scan_positions_A"], 0.3)
    step = cube.calibration.real_step
    dec = dpc(cube, boundary="periodic", probe_deconvolution=1e-3, progress=False)
    r, slope = phase_agreement(dec.phase, truth, step, truth_low_passed=True)
    # measured 0.9999 / 1.05: the CoM of an 11.7 Å crystal is 4 % above the projection approximation's
    assert r >= 0.9 and 0.9 <= slope <= 1.1
    raw = dpc(cube, boundary="periodic", progress=False)
    r, slope = phase_agreement(raw.phase, truth, step, truth_low_passed=True)
    # without deconvolution iDPC is the phase seen through the probe: slope 0.74 measured
    assert r >= 0.9 and slope < 0.9


def test_rotation_modes_and_uncalibrated_scan(weak):
    cube, truth = weak
    bare = cube.with_calibration(cube.calibration.replace(rotation_deg=0.0))
    with pytest.raises(CalibrationError, match="no \\(or a wrong\\) rotation calibration"):
        dpc(bare, progress=False)
    measured = dpc(bare, rotation="curl", progress=False)
    assert abs(measured.rotation_deg - 30.0) < 1.0 and measured.flip is False
    manual = dpc(bare, rotation="manual", rotation_deg=30.0, progress=False)
    np.testing.assert_array_equal(manual.phase, dpc(cube, progress=False).phase)


def test_bad_calibrations(weak):
    cube, _ = weak
    with pytest.raises(MissingCalibrationError, match="convergence_semiangle_mrad"):
        dpc(cube.with_calibration(cube.calibration.replace(convergence_semiangle_mrad=None)),
            detector="bright_field", progress=False)
    with pytest.raises(ShapeError, match="does not fit"):
        dpc(cube.with_calibration(cube.calibration.replace(origin=(10.0, 48.0))), detector="bright_field",
            progress=False)


def test_record_replay_and_engines(weak):
    cube, _ = weak
    p = DPCParams(boundary="mirror", q_highpass=0.05, q_lowpass=1.5, probe_deconvolution=0.01)
    again = Params.from_dict(p.to_dict())
    assert again == p
    a = dpc(cube, p, progress=False)
    b = dpc(cube, again, scheduler="sync", workers=1, progress=False)
    np.testing.assert_array_equal(a.phase, b.phase)  # chunk-ordered merge: bit-identical
    c = dpc(cube, p, q_lowpass=0.8, progress=False)
    assert c.params.q_lowpass == 0.8 and not np.array_equal(a.phase, c.phase)


def test_descan_is_removed_with_the_calibrated_origin_map(weak):
    """Patterns moved by a known descan (a ramp of whole pixels over the scan): with that origin map
    in the calibration, DPC gives back the phase of the undisturbed scan."""
    from fourd_widgets.core.datacube import DataCube

    cube, truth = weak
    data = np.asarray(cube.array)
    Rx, Ry = cube.scan_shape
    shift = np.stack(np.meshgrid(np.arange(Rx) // 8, -(np.arange(Ry) // 11), indexing="ij"), -1)  # 0..3, 0..-2 px
    moved = np.empty_like(data)
    for i in range(Rx):
        for j in range(Ry):
            moved[i, j] = np.roll(data[i, j], tuple(shift[i, j]), axis=(0, 1))
    origin_map = np.asarray(cube.calibration.origin) + shift
    ref = dpc(cube, progress=False).phase
    bare = DataCube(moved, cube.calibration)
    uncorrected = dpc(bare, rotation="manual", rotation_deg=30.0, progress=False).phase
    fixed = dpc(DataCube(moved, cube.calibration.replace(origin_map=origin_map)), progress=False).phase
    # np.roll wraps the faint dark-field tail to the far edge of the detector, which moves the CoM a
    # little (measured up to 6e-3 of the phase range); a descan left in is ~100 % of it
    np.testing.assert_allclose(fixed, ref, atol=1e-2 * np.ptp(ref))
    assert np.abs(uncorrected - ref).max() > 0.5 * np.ptp(ref)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64, np.int32])
def test_one_read_centre_of_mass_equals_the_definition(dtype):
    """The one-read moments kernel (data in its own dtype, a row-run mask) against the CoM computed here in
    float64 from its definition, for the whole detector, a disk, a mask with gaps (the GEMM route) and
    non-contiguous blocks (chunks narrower than a scan row)."""
    from fourd_widgets.analysis.phase_common import center_of_mass
    from fourd_widgets.core import Calibration, DataCube

    rng = np.random.default_rng(1)
    data = rng.poisson(30.0, size=(5, 7, 20, 24)).astype(dtype)
    data[1, 2] = 0  # an empty pattern: no centre of mass (NaN), as the definition gives
    cube = DataCube(data, Calibration(origin=(9.5, 11.0)))
    qx, qy = np.meshgrid(np.arange(20.0), np.arange(24.0), indexing="ij")
    disk = (np.hypot(qx - 9.5, qy - 11.0) <= 7.0).astype(float)
    gaps = disk.copy()
    gaps[:, ::3] = 0  # not one run per row
    for weights in (np.ones((20, 24)), disk, gaps):
        d = data.astype(np.float64) * weights
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.stack([(d * qx).sum((2, 3)), (d * qy).sum((2, 3))], -1) / d.sum((2, 3))[..., None]
        want -= (9.5, 11.0)
        for chunk in (None, 20 * 24 * 3 * data.itemsize):  # whole scan rows, then 3 patterns per block
            got = center_of_mass(cube, weights, progress=False, chunk_bytes=chunk)
            assert np.isnan(got[1, 2]).all()
            # integer counts are summed exactly; float32 sums of 20-24 terms carry ~1e-7 relative error
            # (the float32 GEMM route for 'gaps' too)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, equal_nan=True)
