"""Lattice basis, indexing, per-position fits and strain maps on synthetic and simulated peaks.

Synthetic tables come from :func:`lattice_peaks` (exact lattice points), so the fit must
return the lattice to round-off (tolerances 1e-9). The simulator's own ground-truth peak
table (kinematic disk centres, including descan and elliptic distortion) checks the whole
correction chain: origin map, ellipse, strain.
"""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.disks import FindDisksParams, PeakTable, bragg_vector_map
from fourd_widgets.analysis.steps import RunContext
from fourd_widgets.analysis.strain import (
    FIT_COLLINEAR,
    FIT_TOO_FEW_PEAKS,
    LatticeFit,
    StrainMap,
    StrainMapParams,
    fit_lattice,
    index_peaks,
    lattice_peaks,
    reference_lattice,
    strain_from_lattice,
    strain_map,
    suggest_basis,
)
from fourd_widgets.core import Calibration
from fourd_widgets.core.errors import MissingCalibrationError, ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

G1 = np.array([14.0, 3.0])
G2 = np.array([2.0, 15.0])
ORIGIN = (64.0, 64.0)


def strained(F: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g' = F^-T g for (..., 2, 2) F."""
    return np.einsum("...ij,j->...i", np.swapaxes(np.linalg.inv(F), -1, -2), g)


def test_exact_lattice_gives_the_applied_strain_and_rotation():
    rng = np.random.default_rng(0)
    shape = (5, 4)
    exx = rng.uniform(-0.03, 0.03, shape)
    eyy = rng.uniform(-0.03, 0.03, shape)
    exy = rng.uniform(-0.02, 0.02, shape)
    th = np.radians(rng.uniform(-4, 4, shape))
    U = np.stack([np.stack([1 + exx, exy], -1), np.stack([exy, 1 + eyy], -1)], -2)
    R = np.stack([np.stack([np.cos(th), -np.sin(th)], -1), np.stack([np.sin(th), np.cos(th)], -1)], -2)
    F = R @ U
    t = lattice_peaks(shape, ORIGIN, strained(F, G1), strained(F, G2), (128, 128), edge=4)
    sm = strain_map(t, StrainMapParams(g1=tuple(G1), g2=tuple(G2), reference_g1=tuple(G1), reference_g2=tuple(G2)),
                    Calibration(origin=ORIGIN))
    assert not sm.mask.any()
    np.testing.assert_allclose(sm.exx, exx, atol=1e-9)
    np.testing.assert_allclose(sm.eyy, eyy, atol=1e-9)
    np.testing.assert_allclose(sm.exy, exy, atol=1e-9)
    np.testing.assert_allclose(sm.theta_deg, np.degrees(th), atol=1e-7)


def test_strain_frame_rotates_the_tensor_and_keeps_theta():
    F = np.array([[1.02, 0.0], [0.0, 0.99]])
    r = strain_from_lattice(strained(F, G1), strained(F, G2), G1, G2, frame_deg=30.0)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    E = np.diag([0.02, -0.01])
    Rf = np.array([[c, -s], [s, c]])
    Ef = Rf.T @ E @ Rf
    assert float(r["exx"]) == pytest.approx(Ef[0, 0], abs=1e-12)
    assert float(r["eyy"]) == pytest.approx(Ef[1, 1], abs=1e-12)
    assert float(r["exy"]) == pytest.approx(Ef[0, 1], abs=1e-12)
    assert float(r["theta_deg"]) == pytest.approx(0.0, abs=1e-12)


def test_detector_rotation_and_flip_map_strain_into_the_scan_frame():
    # the strain is along scan x; the detector is rotated by 90 degrees, so the
    # diffraction pattern shows it along detector y
    F = np.array([[1.01, 0.0], [0.0, 1.0]])
    Rd = np.array([[0.0, -1.0], [1.0, 0.0]])
    r = strain_from_lattice(Rd @ strained(F, G1), Rd @ strained(F, G2), Rd @ G1, Rd @ G2, rotation_deg=90.0)
    assert float(r["exx"]) == pytest.approx(0.01, abs=1e-12)
    assert float(r["eyy"]) == pytest.approx(0.0, abs=1e-12)
    S = np.array([[0.0, 1.0], [1.0, 0.0]])
    r = strain_from_lattice(S @ strained(F, G1), S @ strained(F, G2), S @ G1, S @ G2, flip=True)
    assert float(r["exx"]) == pytest.approx(0.01, abs=1e-12)


def test_suggest_basis_from_map_and_from_peaks_agree():
    t = lattice_peaks((3, 3), ORIGIN, G1, G2, (128, 128), edge=4)
    b = suggest_basis(t, Calibration(origin=ORIGIN))
    bvm = bragg_vector_map(t, (128, 128))
    b2 = suggest_basis(bvm)
    for basis in (b, b2):
        # G1 is the shortest and closest to +x; G2 the shortest non-collinear one
        np.testing.assert_allclose(basis.g1, G1, atol=0.05)
        np.testing.assert_allclose(basis.g2, G2, atol=0.05)
    # a user's click: other candidates, and matching a reference
    i = int(np.argmin(np.hypot(*(b.candidates + G1).T)))
    picked = b.pick(i, b.index_g2)
    np.testing.assert_allclose(picked.g1, -G1, atol=0.05)
    np.testing.assert_allclose(picked.match(G1, G2).g1, G1, atol=0.05)
    assert picked.params().g1 == pytest.approx(tuple(-G1), abs=0.05)


def test_suggest_basis_refuses_a_single_row_of_disks():
    t = PeakTable((1,), [0, 3], qx=[64.0, 74.0, 54.0], qy=[64.0, 64.0, 64.0], intensity=[5.0, 1, 1],
                  correlation=[1.0, 1, 1])
    with pytest.raises(ParameterError, match="collinear with g1"):
        suggest_basis(t, Calibration(origin=ORIGIN))


def test_index_peaks_rejects_far_peaks_and_uses_per_peak_bases():
    v = np.array([[14.2, 3.1], [7.0, 8.0], [2.1, 14.8]])
    h, k, ok = index_peaks(v, G1, G2, 1.0)
    assert h.tolist() == [1, 0, 0] and k.tolist() == [0, 0, 1] and ok.tolist() == [True, False, True]
    h, k, ok = index_peaks(v[:1], G1[None] * 2, G2[None], 1.0)
    assert not ok[0]


def test_failed_positions_are_masked_not_filled():
    t = lattice_peaks((2, 3), ORIGIN, G1, G2, (128, 128), edge=4)
    # position (0, 1): keep 3 peaks only; position (1, 2): keep a single row h = 0..2, k = 0
    keep = np.ones(len(t), bool)
    pos = t.positions()
    p01 = np.flatnonzero(pos == 1)
    keep[p01[3:]] = False
    p12 = np.flatnonzero(pos == 5)
    v = np.stack([t.qx[p12] - ORIGIN[0], t.qy[p12] - ORIGIN[1]], -1)
    _, kk, _ = index_peaks(v, G1, G2, 0.1)
    keep[p12[kk != 0]] = False
    counts = np.bincount(pos[keep], minlength=6)
    sub = PeakTable((2, 3), np.concatenate([[0], np.cumsum(counts)]), t.qx[keep], t.qy[keep], t.intensity[keep],
                    t.correlation[keep])
    sm = strain_map(sub, StrainMapParams(g1=tuple(G1), g2=tuple(G2), min_num_peaks=4), Calibration(origin=ORIGIN))
    assert sm.mask.tolist() == [[False, True, False], [False, False, True]]
    assert sm.failure[0, 1] & FIT_TOO_FEW_PEAKS and sm.failure[1, 2] & FIT_COLLINEAR
    for name in ("exx", "eyy", "exy", "theta_deg"):
        assert np.isnan(getattr(sm, name)[sm.mask]).all()
        assert np.isfinite(getattr(sm, name)[~sm.mask]).all()
        assert sm.masked(name).mask.tolist() == sm.mask.tolist()
    assert np.isnan(sm.g1[0, 1]).all()


def test_reference_region_without_valid_fits_says_why():
    t = lattice_peaks((2, 2), ORIGIN, G1, G2, (128, 128), edge=4)
    fit = fit_lattice(t, G1, G2, Calibration(origin=ORIGIN), min_num_peaks=1000)
    assert not fit.valid.any()
    region = np.zeros((2, 2), bool)
    region[0] = True
    with pytest.raises(ParameterError, match=r"reference region \(2 positions\) holds no valid.*too few indexed"):
        reference_lattice(fit, region)
    with pytest.raises(ParameterError, match="no position could be fitted"):
        strain_map(t, StrainMapParams(g1=tuple(G1), g2=tuple(G2), min_num_peaks=1000), Calibration(origin=ORIGIN))


def test_bad_inputs_name_what_is_missing():
    t = lattice_peaks((1, 1), ORIGIN, G1, G2, (128, 128))
    with pytest.raises(MissingCalibrationError, match="origin"):
        strain_map(t, StrainMapParams(g1=tuple(G1), g2=tuple(G2)))
    with pytest.raises(MissingCalibrationError, match="origin"):
        strain_map(t, StrainMapParams(g1=tuple(G1), g2=tuple(G2)), Calibration())
    with pytest.raises(ParameterError, match="collinear"):
        StrainMapParams(g1=(10.0, 0.0), g2=(-20.0, 0.5))
    with pytest.raises(ParameterError, match="give both g1 and g2"):
        StrainMapParams(g1=(10.0, 0.0))
    with pytest.raises(ParameterError, match="bool mask"):
        StrainMapParams(reference_region=np.ones((2, 2)))
    empty = PeakTable((1, 1), [0, 0], [], [], [], [])
    with pytest.raises(ParameterError, match="peak table is empty"):
        strain_map(empty, None, Calibration(origin=ORIGIN))
    with pytest.raises(ParameterError, match="strain_map needs the peak table"):
        from fourd_widgets.analysis.strain import _step

        _step(fw.DataCube(np.zeros((1, 1, 4, 4))), StrainMapParams(), RunContext())


def test_params_round_trip_json():
    p = StrainMapParams(g1=(1.5, 2.0), g2=(-2.0, 1.0), reference_region=np.eye(3, dtype=bool), frame_deg=12.5,
                        weights="uniform")
    q = StrainMapParams.from_dict(p.to_dict())
    assert q == p and q.reference_region.dtype == bool


def test_simulated_descan_and_ellipse_are_corrected(tmp_path):
    """Kinematic truth peaks with descan + ellipse: calibrated fit recovers the strain exactly."""
    shape = (6, 5)
    rx, ry = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    cube, truth = fw.datasets.simulate(shape, (96, 96), strain={"exx": 0.002 * rx, "eyy": -0.001 * ry,
                                                                "exy": 0.0005, "rotation_deg": 0.1 * rx},
                                       descan=[[0.3, -0.2, 0.5], [0.1, 0.25, -0.3]], ellipse=(1.03, 0.98, 25.0),
                                       reciprocal_step=0.02, convergence_semiangle_mrad=1.0)
    peaks = PeakTable(shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                      truth.peak_intensity)
    cal = cube.calibration.replace(origin_map=truth.origin_map, ellipse=truth.ellipse)
    ref = (truth.g1_ref_invA[0] / truth.reciprocal_step, truth.g2_ref_invA[0] / truth.reciprocal_step)
    sm = strain_map(peaks, StrainMapParams(min_num_peaks=5), cal, reference=ref)
    assert not sm.mask.any()
    for ours, true in ((sm.exx, truth.strain_exx), (sm.eyy, truth.strain_eyy), (sm.exy, truth.strain_exy),
                       (sm.theta_deg, truth.rotation_deg)):
        np.testing.assert_allclose(ours, true, atol=1e-9)
    # without the ellipse calibration the strain is wrong by about the distortion (a check that it matters)
    bad = strain_map(peaks, StrainMapParams(), cal.replace(ellipse=None), reference=ref)
    assert np.nanmax(np.abs(bad.exx - truth.strain_exx)) > 0.01


def test_strain_map_container_exports(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    t = lattice_peaks((3, 2), ORIGIN, G1, G2, (128, 128), edge=4)
    sm = strain_map(t, StrainMapParams(g1=tuple(G1), g2=tuple(G2), frame_deg=5.0), Calibration(origin=ORIGIN,
                    reciprocal_step=0.01))
    back = StrainMap.load_hdf5(sm.save_hdf5(tmp_path / "s.h5"))
    for n in ("exx", "theta_deg", "mask", "g1", "g1_ref", "num_peaks"):
        np.testing.assert_array_equal(getattr(back, n), getattr(sm, n))
    assert back.frame_deg == 5.0 and back.reciprocal_step == 0.01
    files = sm.save_tiff(tmp_path / "s")
    assert len(files) == 5
    np.testing.assert_array_equal(tifffile.imread(files[0]), sm.exx.astype(np.float32))
    s = sm.summary()
    assert s["exx"]["count"] == 6 and abs(s["exx"]["mean"]) < 1e-12


def test_recipe_replays_disks_then_strain(tmp_path):
    """fw.run: find_disks -> strain_map on a simulated strained crystal; results file round trip."""
    rx, _ = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    cube, truth = fw.datasets.simulate((6, 6), (96, 96), strain={"exx": 0.004 * rx}, reciprocal_step=0.02,
                                       convergence_semiangle_mrad=1.5)
    region = np.zeros((6, 6), bool)
    region[0] = True
    recipe = Recipe(steps=(FindDisksParams(), StrainMapParams(reference_region=region)))
    res = fw.run(recipe, cube)
    sm = res["strain_map"]
    assert isinstance(sm, StrainMap) and not sm.mask.any()
    # kinematic uniform disks: correlation centres are unbiased to ~0.02 px over ~20 px vectors
    assert np.abs(sm.exx - truth.strain_exx).max() < 2e-3
    assert np.nanmedian(sm.exx[-1]) == pytest.approx(0.02, abs=1e-3)
    path = res.save(tmp_path / "r.h5")
    back = Results.load(path)
    np.testing.assert_array_equal(back["strain_map"].exx, sm.exx)
    again = fw.run(Recipe.from_json(back.recipe.to_json()), cube)
    np.testing.assert_array_equal(again["strain_map"].exx, sm.exx)


def test_lattice_fit_origin_fixed_matches_free_on_exact_data():
    t = lattice_peaks((2, 2), ORIGIN, G1, G2, (128, 128), edge=4)
    for fo in (True, False):
        fit = fit_lattice(t, G1 + 0.5, G2 - 0.5, Calibration(origin=ORIGIN), fit_origin=fo)
        assert isinstance(fit, LatticeFit) and fit.valid.all()
        np.testing.assert_allclose(fit.g1, np.broadcast_to(G1, (2, 2, 2)), atol=1e-9)
        np.testing.assert_allclose(fit.residual_px, 0, atol=1e-9)


def test_changing_the_reference_reuses_the_fit():
    """strain_map_from_fit (what a widget calls when the region is redrawn) equals a full strain_map."""
    from fourd_widgets.analysis.strain import strain_map_from_fit

    rx, _ = np.meshgrid(np.arange(4), np.arange(3), indexing="ij")
    F = np.zeros((4, 3, 2, 2))
    F[..., 0, 0] = 1 + 0.01 * rx
    F[..., 1, 1] = 1.0
    t = lattice_peaks((4, 3), ORIGIN, strained(F, G1), strained(F, G2), (128, 128), edge=4)
    region = np.zeros((4, 3), bool)
    region[2] = True
    cal = Calibration(origin=ORIGIN, rotation_deg=0.0)
    full = strain_map(t, StrainMapParams(g1=tuple(G1), g2=tuple(G2), reference_region=region, frame_deg=20.0), cal)
    fit = fit_lattice(t, G1, G2, cal)
    quick = strain_map_from_fit(fit, cal, reference_region=region, frame_deg=20.0)
    for n in ("exx", "eyy", "exy", "theta_deg"):
        np.testing.assert_array_equal(getattr(quick, n), getattr(full, n))
    # relative to row 2 (exx = 2 %): row 0 is compressed by 1/1.02 - 1 along x, seen in a 20 deg frame
    e = 1 / 1.02 - 1
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    np.testing.assert_allclose(quick.exx[0], e * c * c, atol=1e-12)
    np.testing.assert_allclose(quick.eyy[0], e * s * s, atol=1e-12)
