"""Ptychography: accuracy against simulated truth, resume/replay bit for bit, memory, bad input."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

import fourd_widgets as fw
from fourd_widgets.analysis import ptychography as pty
from fourd_widgets.analysis.phase_common import phase_agreement
from fourd_widgets.analysis.ptychography import (PtychographyDivergedError, PtychographyParams,
                                                 PtychographyResult, reconstruct_ptychography)
from fourd_widgets.core.errors import CancelledError, ParameterError, ShapeError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.datasets.phase import simulate_phase
from fourd_widgets.engine.checkpoint import CheckpointError
from fourd_widgets.io.results import Results


@pytest.fixture(scope="module")
def small():
    """A 16x16 scan of the weak-phase SrTiO3 object on a 48x48 detector (2 mrad/px, 0.2 Å object pixels)."""
    return simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(48, 48), reciprocal_step_mrad=2.0,
                          workers=2)


def lowpass_on_scan(image: np.ndarray, pixel_A: float, positions_px: np.ndarray, sigma_A: float = 0.3) -> np.ndarray:
    """Issue 17's measure: a Gaussian low-pass of σ = 0.3 Å on the image's own grid, then interpolation
    onto the scan positions (low-passing after the interpolation would alias the truth's fine grid)."""
    smooth = ndimage.gaussian_filter(np.asarray(image, float), sigma_A / pixel_A, mode="wrap")
    return ndimage.map_coordinates(smooth, [positions_px[..., 0], positions_px[..., 1]], order=3, mode="grid-wrap")


@pytest.mark.shared_data
def test_strontium_titanate_single_slice_within_twenty_iterations(shared_data):
    """abTEM multislice SrTiO3 (11.7 Å, phase up to 4.3 rad) as one potential slice. Measured: r = 0.994,
    slope 1.01 after 20 iterations (r 0.984, slope 0.91 after 10); the issue asks r >= 0.95 and a slope of
    0.9-1.1 within 50 iterations. The phase does not wrap: a 'potential' object."""
    from fourd_widgets.datasets import load_shared

    cube, t = load_shared("sto_001_ptycho_20mrad", shared_data)
    ps = t["projected_potential_sampling_A"]
    truth = lowpass_on_scan(t["phase_rad"], ps[0], t["scan_positions_A"] / ps[0])
    res = reconstruct_ptychography(cube, iterations=20, step_size=1.0, batch_size=256, workers=2, progress=False)
    ours = lowpass_on_scan(res.phase, res.pixel_A[0], res.positions_px)
    r, slope = phase_agreement(ours, truth, cube.calibration.real_step, sigma_A=0.0)  # already low-passed
    assert r >= 0.95 and 0.9 <= slope <= 1.1, (r, slope)
    # the error curve falls: the normalised Fourier-amplitude error drops tenfold
    assert res.errors.shape == (20,) and res.errors[-1] < res.errors[0] / 10
    assert np.all(np.diff(res.errors) < 0)


def test_weak_phase_object_and_probe_refinement(small):
    cube, truth = small
    res = reconstruct_ptychography(cube, iterations=10, step_size=1.0, batch_size=64, progress=False)
    assert isinstance(res, PtychographyResult) and res.object.dtype == np.float32
    # a 16x16 scan of 0.3 rad peaks, scored away from the less overlapped edge; measured r = 0.994 and
    # slope 1.01 after 10 iterations (r 0.985, slope 0.88 after 5): the 0.9-1.1 band
    r, slope = phase_agreement(res.phase_on_scan()[2:-2, 2:-2], truth.phase_on_scan[2:-2, 2:-2], 0.3, sigma_A=0.3)
    assert r > 0.98 and 0.9 <= slope <= 1.1, (r, slope)
    # the probe stays normalised to the patterns' intensity (~1) and centred on its window
    assert res.probe.shape == (1, 48, 48)
    assert np.sum(np.abs(res.probe) ** 2) == pytest.approx(1.0, rel=0.05)
    w = np.abs(res.probe[0]) ** 2
    com = [float((w.sum(1 - a) * np.arange(48)).sum() / w.sum()) for a in (0, 1)]
    np.testing.assert_allclose(com, [24, 24], atol=0.05)


def test_poisson_noise_at_ten_thousand_electrons():
    cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(48, 48),
                                 reciprocal_step_mrad=2.0, dose=1e4, workers=2)
    res = reconstruct_ptychography(cube, iterations=10, step_size=1.0, batch_size=64, progress=False)
    # issue 17: single-slice r >= 0.9 at 1e4 electrons per pattern; measured 0.944
    r, _ = phase_agreement(res.phase_on_scan()[2:-2, 2:-2], truth.phase_on_scan[2:-2, 2:-2], 0.3)
    assert r >= 0.9, r


def test_mixed_state_probe_fits_a_partially_coherent_source_better():
    """A Gaussian source of 0.3 Å rms (the scan step): four probe modes reach a lower Fourier error than one
    and correlate at least as well with the truth (measured: error 6.2e-5 against 8.5e-5 after 10
    iterations, r 0.962 against 0.959)."""
    cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(48, 48),
                                 reciprocal_step_mrad=2.0, source_size_A=0.3, workers=2)
    out = {}
    for k in (1, 4):
        res = reconstruct_ptychography(cube, iterations=10, step_size=1.0, batch_size=64, probe_modes=k,
                                       progress=False)
        r, _ = phase_agreement(res.phase_on_scan()[2:-2, 2:-2], truth.phase_on_scan[2:-2, 2:-2], 0.3)
        out[k] = (res.errors[-1], r, res.probe)
    assert out[4][0] < 0.9 * out[1][0] and out[4][1] >= out[1][1] - 0.002, out
    power = np.sum(np.abs(out[4][2]) ** 2, axis=(1, 2))
    assert np.all(np.diff(power) <= 0) and power[1] > 0  # strongest first, the others used


def rms_without_common_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Rms distance (Å) of two sets of positions ``(Rx, Ry, 2)`` after removing their mean offset: a common
    shift of all positions is a shift of the object, which the patterns cannot see (and the reconstruction's
    object frame starts where the scan does), so only the positions relative to each other are measurable."""
    d = (a - a.reshape(-1, 2).mean(0)) - (b - b.reshape(-1, 2).mean(0))
    return float(np.sqrt(np.mean(np.sum(d ** 2, -1))))


def perturbed(true: np.ndarray, rms_A: float, seed: int = 1) -> np.ndarray:
    """``true`` plus random offsets of exactly ``rms_A`` rms and zero mean (a common shift is not measurable)."""
    noise = np.random.default_rng(seed).normal(size=true.shape)
    noise -= noise.reshape(-1, 2).mean(0)
    return true + noise * rms_A / np.sqrt(np.mean(np.sum(noise ** 2, -1)))


def test_position_correction_recovers_positions_perturbed_by_a_third_of_an_angstrom():
    """Issue 17: positions perturbed by 0.3 Å rms (1.5 object px, as large as the scan step) come back to
    <= 0.05 Å rms, refined jointly with the object and probe, against the simulator's true positions.

    The probe is defocused by 100 Å (C10, a 4 Å disc at 20 mrad), as position correction is run in
    practice: its patterns hold a shadow image of several atoms that moves with the position, so each
    position's misfit has one minimum within reach. Measured 0.014 Å after 15 iterations (seeds 1-4 of the
    perturbation: 0.011-0.016 Å; seed 1: 0.024 after 10, 0.011 after 20, 0.008 after 30), so the 0.05 Å
    bound holds with a margin of 3. With the focused probe of the test below, the misfit
    of a probe over a centrosymmetric crystal has local minima a few tenths of an Å away: even with the
    exact object and probe, the Gauss-Newton steps leave 14 of 256 positions stuck there (0.12 Å rms, a
    misfit 10³-10⁶ times that at the truth), and the joint run ends at 0.23 Å. A grid search of ±2 px per
    position before the Gauss-Newton step frees them with the exact object (0.0005 Å) but not jointly (0.27 Å
    after 24 iterations): the object rebuilt from the wrong positions is distorted to fit them."""
    cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(48, 48),
                                 reciprocal_step_mrad=2.0, C10=100.0, workers=2)
    true = truth.scan_positions_A
    start = perturbed(true, 0.3)
    res = reconstruct_ptychography(cube, positions_A=start, C10=100.0, iterations=15, step_size=1.0,
                                   batch_size=64, refine_positions=True, position_step_size=1.0,
                                   position_fixed_iterations=2, progress=False)
    assert rms_without_common_shift(start, true) == pytest.approx(0.3)
    assert rms_without_common_shift(res.positions_px * res.pixel_A, true) <= 0.05
    # the refined positions are a better explanation of the patterns: the error keeps falling
    assert res.errors[-1] < res.errors[2] / 5


def test_position_correction_recovers_perturbed_positions(small):
    """Start from positions perturbed by 0.1 Å rms (0.5 object px) with the focused probe: refined jointly
    with the object and probe they come back to 0.037 Å rms (measured, 30 iterations; 0.022 Å away from the
    scan edge). From 0.3 Å a focused probe leaves positions in local minima (see the test above)."""
    cube, truth = small
    true = truth.scan_positions_A
    start = true + np.random.default_rng(1).normal(scale=0.1 / np.sqrt(2), size=true.shape)
    rms = rms_without_common_shift
    res = reconstruct_ptychography(cube, positions_A=start, iterations=30, step_size=1.0, batch_size=64,
                                   refine_positions=True, position_step_size=1.0, position_fixed_iterations=2,
                                   progress=False)
    assert rms(start, true) > 0.09
    assert rms(res.positions_px * res.pixel_A, true) <= 0.05


def two_slice_scan(dz: float, seed: int = 0):
    """A 16x16 scan (2-pixel steps) of two phase slices ``dz`` apart, each 60 random 'atoms' (Gaussians of
    0.35 Å, 0.4 rad peak), simulated here with numpy's FFTs: ψ = P O1, propagated by exp(−iπλΔz k²), times O2.
    Returns the calibrated cube, the two truth slices on the reconstruction's object grid, and its pixel (Å)."""
    from fourd_widgets.analysis.aberrations import Aberrations, probe_fourier
    from fourd_widgets.core.calibration import Calibration, electron_wavelength_A
    from fourd_widgets.core.datacube import DataCube

    lam = electron_wavelength_A(300e3)
    q, step, pad = 48, 2, 8
    dk = 2e-3 / lam
    px = 1 / (q * dk)
    m = 15 * step + q + 2 * pad + 1  # the object grid reconstruct_ptychography builds for this scan
    rng = np.random.default_rng(seed)
    slices = []
    for _ in range(2):
        img = np.zeros((m, m))
        xy = rng.uniform(24, m - 24, size=(60, 2)).astype(int)
        img[xy[:, 0], xy[:, 1]] = 1
        img = ndimage.gaussian_filter(img, 0.35 / px)
        slices.append(0.4 * img / img.max())
    pk = probe_fourier((q, q), (q // 2, q // 2), dk, lam, 20.0, Aberrations())
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pk), norm="ortho"))
    k = np.fft.fftfreq(q, d=px)
    prop = np.exp(-1j * np.pi * lam * dz * (k[:, None] ** 2 + k[None, :] ** 2))
    o1, o2 = np.exp(1j * slices[0]), np.exp(1j * slices[1])
    data = np.empty((16, 16, q, q), np.float32)
    for i in range(16):
        for j in range(16):
            a, b = step * i + pad, step * j + pad
            psi = np.fft.ifft2(np.fft.fft2(probe * o1[a:a + q, b:b + q]) * prop) * o2[a:a + q, b:b + q]
            data[i, j] = np.fft.fftshift(np.abs(np.fft.fft2(psi, norm="ortho")) ** 2)
    cal = Calibration(real_step=step * px, reciprocal_step=2.0, reciprocal_units="mrad", energy_eV=300e3,
                      convergence_semiangle_mrad=20.0, origin=(q // 2, q // 2))
    return DataCube(data, cal), np.stack(slices), px


def test_two_slice_object_recovers_each_slice():
    """Slices 100 Å apart (twice the depth of field λ/α² of 20 mrad): each reconstructed slice matches its
    own truth (measured r = 0.96 and 0.99 after 8 iterations, 0.99 and 0.995 after 20), not the other."""
    cube, truth, px = two_slice_scan(100.0)
    res = reconstruct_ptychography(cube, slices=2, slice_thickness_A=100.0, iterations=8, step_size=1.0,
                                   batch_size=64, progress=False)
    assert res.object.shape == (2,) + truth.shape[1:]
    scanned = (slice(34, 60), slice(34, 60))  # under the probe centres, away from the scan edge

    def r(a, b):
        a = ndimage.gaussian_filter(a, 0.3 / px)[scanned].ravel()
        b = ndimage.gaussian_filter(b, 0.3 / px)[scanned].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    for s in (0, 1):
        assert r(res.phase[s], truth[s]) >= 0.9, s
        assert r(res.phase[s], truth[s]) > r(res.phase[s], truth[1 - s]) + 0.5, s
    with pytest.raises(ParameterError, match="slice_thickness_A"):
        reconstruct_ptychography(cube, slices=2, progress=False)


def test_checkpoint_resume_equals_an_uninterrupted_run(small, tmp_path):
    cube, _ = small
    kw = dict(iterations=4, batch_size=64, probe_fixed_iterations=1, progress=False)
    want = reconstruct_ptychography(cube, **kw)
    ck = tmp_path / "ptycho.npz"
    token = threading.Event()
    painted = []

    def stop(i, preview):
        painted.append((i, preview["phase"].shape, len(preview["errors"])))
        if i == 2:
            token.set()

    with pytest.raises(CancelledError, match="after iteration 2") as info:
        reconstruct_ptychography(cube, **kw, cancel=token, on_iteration=stop, checkpoint=ck)
    assert info.value.iteration == 2 and painted == [(1, want.object.shape, 1), (2, want.object.shape, 2)]
    seen = []
    got = reconstruct_ptychography(cube, **kw, checkpoint=ck, on_iteration=lambda i, p: seen.append(i))
    assert seen == [3, 4]
    for name in ("object", "probe", "errors", "positions_px"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    with pytest.raises(CheckpointError, match="recipe differ"):
        reconstruct_ptychography(cube, **{**kw, "batch_size": 32}, checkpoint=ck)


def test_replay_through_fw_run_and_results_file_bit_for_bit(small, tmp_path):
    cube, _ = small
    p = PtychographyParams(iterations=3, batch_size=100, probe_modes=2, object_type="complex")
    direct = reconstruct_ptychography(cube, p, workers=2, progress=False)
    replay = fw.run(Recipe((p,)), cube, workers=1, scheduler="sync")["ptychography"]
    np.testing.assert_array_equal(replay.object, direct.object)  # blocks do not depend on the workers
    np.testing.assert_array_equal(replay.probe, direct.probe)
    back = PtychographyResult.load_hdf5 if hasattr(PtychographyResult, "load_hdf5") else None
    path = direct.save_hdf5(tmp_path / "ptycho.h5")
    res = Results.load(path)
    again = res["ptychography"]
    assert again.params == p and res.recipe.steps[0] == p
    for name in ("object", "probe", "positions_px", "pixel_A", "errors"):
        np.testing.assert_array_equal(getattr(again, name), getattr(direct, name), err_msg=name)
    assert back is None or back(path).params == p
    # two modes, orthogonal, strongest first
    m = direct.probe.reshape(2, -1)
    overlap = abs(np.vdot(m[0], m[1])) / np.sqrt(np.vdot(m[0], m[0]).real * np.vdot(m[1], m[1]).real)
    assert overlap < 1e-3 and np.vdot(m[0], m[0]).real > np.vdot(m[1], m[1]).real


@pytest.mark.slow
def test_dask_gives_the_threads_result_bit_for_bit(small, dask_cluster):
    _, client = dask_cluster
    cube, _ = small
    kw = dict(iterations=2, batch_size=64, progress=False)
    want = reconstruct_ptychography(cube, workers=2, **kw)
    got = reconstruct_ptychography(cube, scheduler=client, **kw)
    np.testing.assert_array_equal(got.object, want.object)
    np.testing.assert_array_equal(got.probe, want.probe)


def test_memory_grows_by_less_than_the_added_patterns():
    """Two iterations on 16x16 and 32x32 scans of the same patterns: the traced peak grows by less than
    the 768 added raw patterns (the object grows a little; nothing scales with the scan but position lists)."""
    cube, _ = simulate_phase(scan_shape=(32, 32), scan_step_A=0.3, detector_shape=(48, 48),
                             reciprocal_step_mrad=2.0, workers=2)
    small = cube.crop(rx=(0, 16), ry=(0, 16))
    peaks = []
    for c in (small, cube):
        reconstruct_ptychography(c, iterations=0, progress=False)  # warm imports and caches outside the trace
        tracemalloc.start()
        reconstruct_ptychography(c, iterations=2, batch_size=64, workers=1, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    added = (32 * 32 - 16 * 16) * cube.pattern_nbytes
    # measured: 8.8 MB and 9.1 MB (the block's working set), 7.1 MB of patterns added
    assert peaks[1] - peaks[0] < added, (peaks, added)


def test_bad_input_is_refused(small, monkeypatch):
    cube, _ = small
    with pytest.raises(ShapeError, match=r"probe must be \(Qx, Qy\) = \(48, 48\)"):
        reconstruct_ptychography(cube, probe=np.ones((32, 32), complex), progress=False)
    with pytest.raises(ShapeError, match="outside the object"):
        reconstruct_ptychography(cube, initial_object=np.zeros((60, 60), np.float32), progress=False)
    with pytest.raises(ShapeError, match="positions_A must have shape"):
        reconstruct_ptychography(cube, positions_A=np.zeros((4, 4, 2)), progress=False)
    monkeypatch.setattr(pty, "_available_memory", lambda: 2**20)
    with pytest.raises(ParameterError, match="batch_size") as info:
        reconstruct_ptychography(cube, batch_size=4096, progress=False)
    assert info.value.field == "batch_size"
    monkeypatch.undo()
    with pytest.raises(PtychographyDivergedError, match="diverged at iteration") as info:
        reconstruct_ptychography(cube, iterations=10, step_size=40.0, batch_size=16, progress=False)
    assert 1 <= info.value.iteration <= 10 and len(info.value.errors) == info.value.iteration
    with pytest.raises(ParameterError, match="object_type"):
        PtychographyParams(object_type="multislice")
