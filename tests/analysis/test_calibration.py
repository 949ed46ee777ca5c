"""Calibration against the simulator's known descan, distortion, pixel size and rotation.

Tolerances: the simulator draws disks with a 0.6 px Gaussian edge, whose centroid is exact
to ~1e-4 px, so the centre of mass of a clean, unobstructed central disk is good to a few
0.01 px; with a beam stop only the Friedel method sees the origin, and its parabola
refinement of the normalised correlation is good to ~0.1 px (0.19 px worst case measured
with Poisson noise, 0.05 px median). The plane fit averages those errors down over the scan.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.calibration import (
    EllipseParams,
    OriginFitParams,
    OriginParams,
    PixelSizeParams,
    QRRotationParams,
    calibrated_peaks,
    centre_of_mass_maps,
    corrected_vectors,
    distortion_matrix,
    fit_ellipse,
    fit_ellipse_points,
    fit_origin,
    measure_origin,
    measure_pixel_size,
    measure_qr_rotation,
    pixel_size_from_spacing,
    reciprocal_length,
    undistort_patterns,
)
from fourd_widgets.analysis.disks import FindDisksParams, PeakTable
from fourd_widgets.analysis.strain import StrainMap, StrainMapParams
from fourd_widgets.core import Calibration
from fourd_widgets.core.errors import MissingCalibrationError, ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

DESCAN = [[0.25, -0.15, 0.4], [0.1, 0.2, -0.3]]  # px per scan step, px offset


def truth_table(truth) -> PeakTable:
    return PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                     truth.peak_intensity)


@pytest.fixture(scope="module")
def vacuum():
    return fw.datasets.simulate((6, 5), (64, 64), grains=[], descan=DESCAN, reciprocal_step=0.02)


@pytest.mark.parametrize("method", ["com", "template"])
def test_origin_without_beam_stop(vacuum, method):
    cube, truth = vacuum
    o = measure_origin(cube, method=method)
    assert np.abs(o - truth.origin_map).max() < 0.03


def test_origin_friedel_with_beam_stop_and_plane_fit():
    cube, truth = fw.datasets.simulate((8, 8), (96, 96), descan=DESCAN, beam_stop=True, reciprocal_step=0.02,
                                       convergence_semiangle_mrad=1.5, dose=2e6, seed=1)
    # the central disk is hidden: centre of mass cannot see it
    com = measure_origin(cube, method="com")
    assert np.median(np.abs(com - truth.origin_map)) > 1.0
    o = measure_origin(cube, OriginParams(method="friedel", mask=truth.beam_stop_mask))
    assert np.median(np.hypot(*(o - truth.origin_map).reshape(-1, 2).T)) < 0.1
    fit = fit_origin(o, OriginFitParams(model="plane"))
    assert np.abs(fit.fitted - truth.origin_map).max() < 0.05


@pytest.mark.parametrize("model, degree", [("constant", 0), ("plane", 1), ("parabola", 2), ("bezier", 2)])
def test_origin_fit_models_reproduce_their_own_surfaces(model, degree):
    rx, ry = np.meshgrid(np.arange(9.0), np.arange(7.0), indexing="ij")
    terms = {0: 0.0 * rx, 1: 0.3 * rx - 0.2 * ry, 2: 0.3 * rx - 0.2 * ry + 0.01 * rx**2 - 0.02 * rx * ry + 0.015 * ry**2}
    m = np.stack([40 + terms[degree], 41 - 0.5 * terms[degree]], -1)
    noisy = m.copy()
    noisy[2, 5] += (8.0, -6.0)
    noisy[7, 1] = np.nan
    f = fit_origin(noisy, OriginFitParams(model=model))
    np.testing.assert_allclose(f.fitted, m, atol=1e-8)
    assert not f.inliers[2, 5] and not f.inliers[7, 1]
    # without robust rejection the outlier drags the fit
    assert np.abs(fit_origin(noisy, model=model, robust=False).fitted - m).max() > 0.05
    with pytest.raises(ParameterError, match="needs at least"):
        fit_origin(np.full((2, 2, 2), 1.0), model="parabola")


def test_ellipse_from_amorphous_ring():
    ell = (1.04, 0.97, 30.0)
    cube, _ = fw.datasets.simulate((3, 3), (128, 128), grains=[], amorphous=1.0, amorphous_strength=0.5,
                                       ellipse=ell, reciprocal_step=0.008)
    f = fit_ellipse(cube.mean_pattern(), cube.calibration, EllipseParams(source="amorphous", r_inner=25, r_outer=55))
    # centroid of a Gaussian ring on a sloping background: ratio to 0.3 %, angle to 0.2 deg
    assert f.a / f.b == pytest.approx(ell[0] / ell[1], rel=3e-3)
    assert f.theta_deg == pytest.approx(ell[2], abs=0.2)


def test_ellipse_from_bragg_peaks_needs_two_rings():
    ell = (1.03, 0.98, -20.0)
    cube, truth = fw.datasets.simulate((3, 3), (128, 128), ellipse=ell, descan=DESCAN)
    cal = cube.calibration.replace(origin_map=truth.origin_map)
    peaks = truth_table(truth)
    r = float(np.hypot(*truth.g1_px[0, 0]))
    with pytest.raises(ParameterError, match="too few directions"):
        fit_ellipse(peaks, cal, EllipseParams(r_inner=0.8 * r, r_outer=1.2 * r))  # the four (220) only
    f = fit_ellipse(peaks, cal, EllipseParams(r_inner=0.8 * r, r_outer=1.6 * r))  # + the (400)
    assert f.a / f.b == pytest.approx(ell[0] / ell[1], abs=1e-9)
    assert f.theta_deg == pytest.approx(ell[2] % 180, abs=1e-6)
    # applied to the peaks, the normalised ellipse leaves only a scale: a square lattice again
    v = corrected_vectors(peaks, cal.replace(ellipse=f.ellipse))
    p0 = slice(int(truth.peak_offsets[0]), int(truth.peak_offsets[1]))
    hkl = truth.peak_hkl[p0]
    g220 = v[p0][(np.abs(hkl[:, 0]) == 2) & (np.abs(hkl[:, 1]) == 2) & (hkl[:, 2] == 0)]
    assert np.ptp(np.hypot(g220[:, 0], g220[:, 1])) < 1e-9


def test_fit_ellipse_points_free_centre():
    t = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    xy = distortion_matrix((1.2, 0.8, 60.0)) @ np.stack([10 * np.cos(t), 10 * np.sin(t)]) + np.array([[3.0], [-2.0]])
    f = fit_ellipse_points(xy[0], xy[1], fix_centre=False)
    assert (f.a, f.b, f.theta_deg) == pytest.approx((12.0, 8.0, 60.0), abs=1e-9)
    np.testing.assert_allclose(f.centre, [3.0, -2.0], atol=1e-9)


def test_pixel_size_lattice_spacing_and_ring():
    cube, truth = fw.datasets.simulate((2, 2), (128, 128), reciprocal_step=0.0156)
    peaks = truth_table(truth)
    cal = cube.calibration.replace(reciprocal_step=None)
    dk = truth.reciprocal_step
    assert measure_pixel_size(peaks, cal, PixelSizeParams(method="lattice", zone_axis=(0, 0, 1))) == pytest.approx(dk, rel=1e-9)
    d220 = 1 / reciprocal_length((2, 2, 0), (5.431,) * 3)
    assert measure_pixel_size(peaks, cal, method="spacing", d_spacing_A=d220) == pytest.approx(dk, rel=1e-9)
    r = d220 ** -1 / dk
    got = measure_pixel_size(peaks, cal, method="ring", d_spacing_A=d220 / np.sqrt(2), r_inner=1.2 * r,
                             r_outer=1.6 * r)  # the four (400) disks
    assert got == pytest.approx(dk, rel=1e-9)
    assert pixel_size_from_spacing(10.0, 2.0) == 0.05
    c = Calibration(reciprocal_step=dk, energy_eV=300e3)
    assert c.reciprocal_step_in("mrad") == pytest.approx(dk * 0.0196875 * 1e3, rel=1e-4)
    with pytest.raises(ParameterError, match="not in the zone"):
        PixelSizeParams(zone_axis=(1, 1, 1))
    with pytest.raises(ParameterError, match="needs d_spacing_A"):
        PixelSizeParams(method="spacing")


def _potential(shape=(32, 32)):
    rx, ry = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    rng = np.random.default_rng(3)
    V = np.zeros(shape)
    for cx, cy in rng.uniform(3, 29, (12, 2)):
        V += np.exp(-((rx - cx) ** 2 + (ry - cy) ** 2) / 3.0)
    return np.gradient(V)


@pytest.mark.parametrize("rot", [-140.0, -3.0, 0.0, 47.5, 170.0])
@pytest.mark.parametrize("flip", [False, True])
def test_qr_rotation_from_curl(rot, flip):
    gx, gy = _potential()
    # detector vector = R(rot) S v_scan
    if flip:
        gx, gy = gy, gx
    t = np.radians(rot)
    cx, cy = np.cos(t) * gx - np.sin(t) * gy, np.sin(t) * gx + np.cos(t) * gy
    r = measure_qr_rotation(cx + 5.0, cy - 2.0)
    assert r.flip == flip
    assert r.rotation_deg == pytest.approx(rot, abs=1e-6)  # includes the 180 deg choice by divergence
    assert r.curl[flip] < 1e-6 < r.curl[not flip]


def test_qr_rotation_shared_dpc_file(shared_data):
    cube, _ = fw.datasets.load_shared("sto_001_ptycho_20mrad", root=shared_data)
    r = measure_qr_rotation(*centre_of_mass_maps(cube))
    # README convention: scan x = detector x, no flip
    assert r.flip is False
    assert r.rotation_deg == pytest.approx(0.0, abs=0.5)
    assert r.curl[False] < 0.5 * r.curl[True]


def test_calibrated_peaks_and_undistort():
    t = PeakTable((1,), [0, 2], qx=[42.0, 30.0], qy=[30.0, 30.0], intensity=[1.0, 1.0], correlation=[1.0, 1.0])
    cal = Calibration(origin=(30, 30), ellipse=(1.2, 1.0, 0.0), reciprocal_step=0.5, rotation_deg=90.0)
    c = calibrated_peaks(t, cal)
    assert c.units == "1/Å" and c.qx.tolist() == pytest.approx([5.0, 0.0]) and c.qy.tolist() == pytest.approx([0.0, 0.0])
    s = calibrated_peaks(t, cal, scan_frame=True)
    assert s.qx[0] == pytest.approx(0.0, abs=1e-12) and s.qy[0] == pytest.approx(-5.0)
    with pytest.raises(MissingCalibrationError, match="reciprocal_step"):
        calibrated_peaks(t, Calibration(origin=(30, 30)))
    with pytest.raises(MissingCalibrationError, match="origin"):
        corrected_vectors(t, Calibration())
    img = np.zeros((61, 61))
    img[30 + 12, 30] = 1.0  # a point 12 px along x on a 1.2-stretched detector is 10 px in truth
    out = undistort_patterns(img, (30, 30), (1.2, 1.0, 0.0))
    assert np.unravel_index(np.argmax(out), out.shape) == (40, 30)


def test_recipe_replays_calibration_then_strain(tmp_path):
    """load -> disks -> origin -> origin_fit -> ellipse -> pixel_size -> qr_rotation -> strain, headless."""
    rx, _ = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    ell = (1.02, 0.99, 35.0)
    cube, truth = fw.datasets.simulate((6, 6), (96, 96), strain={"exx": 0.004 * rx}, reciprocal_step=0.02,
                                       convergence_semiangle_mrad=1.5, descan=DESCAN, ellipse=ell)
    cube = cube.with_calibration(cube.calibration.replace(reciprocal_step=None))
    region = np.zeros((6, 6), bool)
    region[0] = True
    r = float(np.hypot(*truth.g1_px[0, 0]))
    recipe = Recipe(steps=(
        FindDisksParams(), OriginParams(method="com"), OriginFitParams(model="plane"),
        EllipseParams(r_inner=0.8 * r, r_outer=1.6 * r, region=region), PixelSizeParams(method="lattice", region=region),
        QRRotationParams(method="manual", rotation_deg=0.0), StrainMapParams(reference_region=region)))
    res = fw.run(recipe, cube)
    cal = res["qr_rotation"]
    assert isinstance(cal, Calibration)
    assert np.abs(cal.origin_map - truth.origin_map).max() < 0.05
    # calibrated on the unstrained row; detected (kinematic, uniform) disks are good to ~0.02 px over ~25 px
    assert cal.ellipse[0] / cal.ellipse[1] == pytest.approx(ell[0] / ell[1], abs=2e-3)
    assert cal.ellipse[2] == pytest.approx(ell[2], abs=1.0)
    # the normalised ellipse leaves its scale sqrt(ab) in the pixel size
    assert cal.reciprocal_step == pytest.approx(0.02 / np.sqrt(ell[0] * ell[1]), rel=2e-3)
    # the lattice fit sees a strained lattice (up to 2 %) in the other rows; the reference rows set the scale
    sm = res["strain_map"]
    assert isinstance(sm, StrainMap) and not sm.mask.any()
    assert np.abs(sm.exx - truth.strain_exx).max() < 2.5e-3
    back = Results.load(res.save(tmp_path / "r.h5"))
    assert back["ellipse"] == res["ellipse"]
    np.testing.assert_array_equal(back["strain_map"].exx, sm.exx)
    again = fw.run(Recipe.from_json(back.recipe.to_json()), cube)
    np.testing.assert_array_equal(again["strain_map"].exx, sm.exx)


def test_steps_say_what_is_missing():
    from fourd_widgets.analysis.calibration import _origin_fit_step, _pixel_size_step
    from fourd_widgets.analysis.steps import RunContext

    cube = fw.DataCube(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(MissingCalibrationError, match="origin_map.*'origin'"):
        _origin_fit_step(cube, OriginFitParams(), RunContext())
    with pytest.raises(ParameterError, match="needs the peak table of an earlier step labelled 'find_disks'"):
        _pixel_size_step(cube, PixelSizeParams(), RunContext())


def test_params_round_trip_json():
    for p in (OriginParams(method="friedel", mask=np.eye(4, dtype=bool)), OriginFitParams(model="bezier"),
              EllipseParams(source="amorphous", r_inner=3, r_outer=9), PixelSizeParams(method="ring", d_spacing_A=2.0),
              QRRotationParams(method="manual", rotation_deg=12.0, flip=True)):
        assert type(p).from_dict(p.to_dict()) == p


def test_gold_nanoparticles_calibration_scene():
    """Beam stop, descan, ellipse, Au disks and amorphous rings, Poisson noise: origin and ellipse."""
    cube, truth = fw.datasets.sample("gold_nanoparticles", scan_shape=(12, 12))
    o = measure_origin(cube, method="friedel", mask=truth.beam_stop_mask)
    fit = fit_origin(o, model="plane")
    assert np.abs(fit.fitted - truth.origin_map).max() < 0.05
    cal = cube.calibration.replace(origin_map=fit.fitted, origin=tuple(fit.fitted.reshape(-1, 2).mean(0)))
    r0 = AU_RING_INVA / truth.reciprocal_step
    e = fit_ellipse(cube.median_pattern(), cal, EllipseParams(source="amorphous", r_inner=r0 - 10, r_outer=r0 + 10,
                                                              mask=truth.beam_stop_mask))
    # measured: ratio 1.0402 for 1.0408, angle 29.8 deg; disks and noise limit it to ~0.1 % and ~0.5 deg
    assert e.a / e.b == pytest.approx(truth.ellipse[0] / truth.ellipse[1], abs=2e-3)
    assert e.theta_deg == pytest.approx(truth.ellipse[2], abs=1.0)


AU_RING_INVA = 0.47  # first amorphous ring of the gold_nanoparticles scene (datasets/scenes.py)


def test_undistort_cube_removes_the_simulated_ellipse():
    """Resampled lazily, the distorted cube's disks return to where the undistorted simulation has them."""
    import fourd_widgets as fw
    from fourd_widgets.analysis.calibration import undistort_cube, undistort_patterns

    kw = dict(scan_shape=(2, 3), detector_shape=(96, 96), seed=4)
    clean, truth = fw.datasets.simulate(**kw)
    bent, _ = fw.datasets.simulate(ellipse=(1.04, 0.96, 25.0), **kw)
    cube = bent.with_calibration(bent.calibration.replace(ellipse=(1.04, 0.96, 25.0)))
    fixed = undistort_cube(cube)
    assert fixed.calibration.ellipse is None and fixed.shape == cube.shape
    block = fixed.read((0, 2), (1, 3), (10, 80), (5, 90))
    assert np.allclose(block, undistort_patterns(cube.read((0, 2), (1, 3)), cube.calibration.origin,
                                                 (1.04, 0.96, 25.0))[..., 10:80, 5:90])
    qx, qy = np.meshgrid(np.arange(96.0), np.arange(96.0), indexing="ij")

    def centroid(p, c, r):
        m = (qx - c[0]) ** 2 + (qy - c[1]) ** 2 < r * r
        w = p * m
        return np.array([(w * qx).sum(), (w * qy).sum()]) / w.sum()

    r = truth.disk_radius_px + 2
    pk = truth.peaks_at(0, 0)
    order = np.argsort(-pk["intensity"][1:]) + 1  # strongest diffracted disks (the central one does not move)
    inside = [i for i in order if r < pk["qx"][i] < 96 - r and r < pk["qy"][i] < 96 - r][:4]
    assert len(inside) == 4
    for i in inside:
        c = (pk["qx"][i], pk["qy"][i])
        # the distortion moves a disk by ~0.04 * |g|; undistorted it is back within 0.1 px
        assert np.linalg.norm(centroid(fixed.pattern(0, 0), c, r) - centroid(clean.pattern(0, 0), c, r)) < 0.1
        assert np.linalg.norm(centroid(bent.pattern(0, 0), c, r) - centroid(clean.pattern(0, 0), c, r)) > 0.3


def test_peak_table_to_calibrated_removes_the_ellipse_like_calibrated_peaks():
    from fourd_widgets.analysis.calibration import calibrated_peaks
    from fourd_widgets.analysis.disks import PeakTable

    t = PeakTable((1, 2), [0, 1, 3], qx=[14.0, 10, 7], qy=[10.0, 13, 10], intensity=[1.0, 1, 1],
                  correlation=[1.0, 1, 1])
    cal = Calibration(origin=(10, 10), ellipse=(2.0, 1.0, 0.0), reciprocal_step=0.5)
    got = t.to_calibrated(cal)
    assert got == calibrated_peaks(t, cal)
    assert got.qx[0] == 1.0  # 4 px along the stretched axis (a = 2) is 2 px undistorted, times 0.5
    assert t.to_calibrated(cal, origin=False).qx[0] == 7.0


def test_fit_ellipse_refuses_one_symmetric_ring_by_geometry():
    """Issue 12 item 17: four symmetric disks with realistic scatter (a detection's 0.02 px) passed the
    old numeric guard and gave a wrong ellipse; the geometric rule refuses them and names the ring."""
    rng = np.random.default_rng(3)
    g = 23.57 * np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], float)  # the {220} of Si [001], 2 directions
    pts = np.concatenate([g + rng.normal(0, 0.02, g.shape) for _ in range(64)])  # 64 scan positions
    with pytest.raises(ParameterError, match=r"too few directions.*r = 33\.3 px along 2 directions") as err:
        fit_ellipse_points(pts[:, 0], pts[:, 1])
    assert "Add 1 more" in str(err.value)
    # the {400} beside it (two more directions) is enough: a circle again
    g400 = 47.14 * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], float)
    both = np.concatenate([pts, np.concatenate([g400 + rng.normal(0, 0.02, g.shape) for _ in range(64)])])
    rings = np.repeat([0, 1], len(pts))
    f = fit_ellipse_points(both[:, 0], both[:, 1], rings=rings)
    assert f.a / f.b == pytest.approx(1.0, abs=2e-3)  # 0.02 px scatter on 33-47 px radii: ~1e-3


def test_ellipse_directions_count_clusters_modulo_180():
    from fourd_widgets.analysis.calibration import _directions

    t = np.radians([44.0, 45.0, 46.0, 134.5, 135.5, 224.9, 315.2, 179.5, 0.5])
    assert len(_directions(np.cos(t), np.sin(t))) == 3  # 45°, 135° and 0°/180° (wrapping)


def test_friedel_says_when_the_detector_edge_cuts_the_beam():
    """Issue 12 item 22: a beam cut by the detector edge has no Friedel partner on the detector."""
    from fourd_widgets.analysis.calibration import OriginWarning

    kw = dict(reciprocal_step=0.02, convergence_semiangle_mrad=1.5, dose=2e6, seed=1)
    cube, _ = fw.datasets.simulate((2, 2), (96, 96), **kw)  # beam in the middle: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error", OriginWarning)
        measure_origin(cube, method="friedel")
    cut, _ = fw.datasets.simulate((2, 2), (96, 96), origin=(48.0, 2.0), **kw)  # half the disk off the detector
    with pytest.warns(OriginWarning, match=r"cannot see the whole beam at 4 of 4 positions \(\[0, 0\]"):
        measure_origin(cut, method="friedel")


def test_friedel_far_from_the_beam_is_flagged_on_the_real_merlin_file(shared_data):
    """The Merlin beam is at about (102-108, 25-30) px, cut by the edge at qy = 0; Friedel symmetry gave
    (127.5, 191.5) px without a word. The other methods land within the beam's radius (~34 px) of it."""
    from fourd_widgets.analysis.calibration import OriginWarning

    cube = fw.load(shared_data / "real" / "merlin_4x2x256x256_6bit.mib")
    with pytest.warns(OriginWarning) as record:
        o = measure_origin(cube, method="friedel")
    text = " ".join(str(w.message) for w in record)
    assert "cannot see the whole beam" in text and "[0, 0]" in text
    far = [str(w.message) for w in record if "more than its radius" in str(w.message)]
    assert far and "at [0, 0] it gives" in far[0]
    beam = np.array([104.0, 27.0])  # the half-maximum circle fit: (102-108, 27-30)
    assert np.hypot(*(o[0, 0] - beam)) > 34  # what is flagged really is off by more than the radius
    for method in ("com", "template"):  # and the other methods are not flagged: they see the beam
        with warnings.catch_warnings():
            warnings.simplefilter("error", OriginWarning)
            assert np.hypot(*(measure_origin(cube, method=method)[0, 0] - beam)) < 15
