"""The simulator's data agree with its own ground truth, and with the physics it claims."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfcinv

from fourd_widgets.core.calibration import electron_wavelength_A
from fourd_widgets.datasets import Grain, GroundTruth, simulate
from fourd_widgets.errors import ParameterError

SI_A = 5.431


def _centroid(pattern: np.ndarray, qx: float, qy: float, radius: float) -> tuple[float, float, float]:
    """Total and intensity centroid inside a circle of ``radius`` around (qx, qy)."""
    i, j = np.meshgrid(np.arange(pattern.shape[0]), np.arange(pattern.shape[1]), indexing="ij")
    w = pattern * ((i - qx) ** 2 + (j - qy) ** 2 <= radius**2)
    s = w.sum()
    return s, (w * i).sum() / s, (w * j).sum() / s


def _isolated_inside(truth: GroundTruth, rx: int, ry: int, margin: float) -> list[int]:
    """Indices (within the position's peaks) of disks whose window lies on the detector."""
    pk = truth.peaks_at(rx, ry)
    Qx, Qy = truth.detector_shape
    ok = (pk["qx"] > margin) & (pk["qx"] < Qx - 1 - margin) & (pk["qy"] > margin) & (pk["qy"] < Qy - 1 - margin)
    return list(np.flatnonzero(ok & (pk["intensity"] > 1e-6)))


def test_disk_centroids_and_intensities_match_truth():
    rng = np.random.default_rng(0)
    cube, truth = simulate(
        (3, 3), (128, 128), descan=rng.uniform(-3, 3, (3, 3, 2)),
        strain={"exx": 0.013, "eyy": -0.004, "exy": 0.002, "rotation_deg": 7.0},
    )
    R = truth.disk_radius_px
    window = R + 6 * truth.disk_edge_px  # the whole soft edge; Si [001] disks are > 30 px apart
    checked = 0
    for rx in range(3):
        for ry in range(3):
            p = cube.pattern(rx, ry).astype(np.float64)
            pk = truth.peaks_at(rx, ry)
            for k in _isolated_inside(truth, rx, ry, window + 1):
                s, cx, cy = _centroid(p, pk["qx"][k], pk["qy"][k], window)
                # pixel sampling of the Gaussian-edged disk biases the centroid by < 1e-4 px (Poisson
                # summation, see kernels/render.py); float32 storage adds ~1e-6. 1e-3 px leaves margin
                # and is 50x tighter than the 0.05 px later disk-detection tests rely on.
                assert abs(cx - pk["qx"][k]) < 1e-3 and abs(cy - pk["qy"][k]) < 1e-3
                # integrated intensity: same sampling argument, relative error < 1e-4
                assert s == pytest.approx(pk["intensity"][k], rel=3e-4, abs=1e-7)
                checked += 1
    assert checked >= 9 * 9  # central beam + 8 inner Si [001] disks per position


def test_disk_radius_follows_convergence_angle():
    dk, sigma = 0.0156, 0.6
    areas = []
    for alpha in (1.0, 2.0, 3.5):
        cube, truth = simulate((1, 1), (96, 96), grains=[], convergence_semiangle_mrad=alpha,
                               reciprocal_step=dk, origin=(47.0, 48.6), disk_edge_px=sigma)
        expected = alpha / (1000 * electron_wavelength_A(300e3) * dk)
        assert truth.disk_radius_px == pytest.approx(expected, rel=1e-12)
        assert cube.calibration.convergence_semiangle_px == pytest.approx(expected, rel=1e-9)
        # measure the edge along the row through the centre: each edge sample v = top erfc((r - R) /
        # (sqrt 2 sigma)) / 2 gives R exactly; float32 storage limits this to ~1e-5 px
        p = cube.pattern(0, 0).astype(np.float64)
        line = p[47]
        top = line[int(round(48.6))]
        r = np.abs(np.arange(96) - 48.6)
        edge = (line > 0.1 * top) & (line < 0.9 * top)
        assert edge.sum() >= 2
        radii = r[edge] - np.sqrt(2) * sigma * erfcinv(2 * line[edge] / top)
        np.testing.assert_allclose(radii, expected, atol=1e-3)
        areas.append(p.sum() / top)
    # model-free: the disk area grows as alpha^2 (area = pi (R^2 + sigma^2) for a Gaussian edge)
    r_from_area = np.sqrt(np.array(areas) / np.pi - sigma**2)
    np.testing.assert_allclose(r_from_area / r_from_area[0], [1.0, 2.0, 3.5], rtol=1e-3)


def test_total_intensity_per_pattern_matches_model():
    cube, truth = simulate((2, 2), (160, 160), amorphous=np.array([[0.0, 0.5], [1.0, 0.25]]),
                           amorphous_strength=0.3)
    R = truth.disk_radius_px
    ext = R + 6 * truth.disk_edge_px
    Qx, Qy = truth.detector_shape
    for rx in range(2):
        for ry in range(2):
            pk = truth.peaks_at(rx, ry)
            ring = truth.amorphous_intensity[rx, ry]
            assert ring == pytest.approx(0.3 * truth.amorphous[rx, ry])
            inside = (pk["qx"] > ext) & (pk["qx"] < Qx - 1 - ext) & (pk["qy"] > ext) & (pk["qy"] < Qy - 1 - ext)
            lower = pk["intensity"][inside].sum() + ring
            upper = pk["intensity"].sum() + ring
            # rings (0.32, 0.56 1/Å = 21, 36 px) lie fully on this detector; disks straddling its edge add
            # between 0 and their intensity; 2e-4 covers sampling of the soft edges and float32 sums
            total = float(cube.pattern(rx, ry).astype(np.float64).sum())
            assert lower - 2e-4 <= total <= upper + 2e-4
            # the probe is conserved: what reaches the table is what the model scattered, the rest is
            # weak high-order reflections off this detector (< 1 % of the probe)
            assert 0.99 < upper <= 1.0 + 1e-12


def test_amorphous_only_pattern_sums_to_one():
    cube, truth = simulate((1, 1), (128, 128), grains=[], amorphous=1.0, amorphous_strength=0.6)
    # no Bragg scattering: central disk (0.4) + rings (0.6) all on the detector; ring sampling (width
    # >= 2.2 px) integrates to 1e-5
    assert float(cube.pattern(0, 0).astype(np.float64).sum()) == pytest.approx(1.0, abs=1e-4)
    assert truth.peaks_at(0, 0)["intensity"].tolist() == pytest.approx([0.4])


def test_poisson_noise_at_dose():
    dose = 200.0
    kw = dict(grains=[], amorphous=1.0, amorphous_strength=0.5, background=0.1)
    expected, _ = simulate((1, 1), (48, 48), reciprocal_step=0.03, **kw)
    counts, truth = simulate((40, 40), (48, 48), reciprocal_step=0.03, dose=dose, seed=5, **kw)
    assert counts.dtype == np.uint16 and truth.dose == dose
    lam = expected.pattern(0, 0).astype(np.float64) * dose
    data = counts.to_numpy().reshape(-1, 48, 48).astype(np.float64)
    n = data.shape[0]
    # total counts per pattern: mean of n Poisson(L) totals has sd sqrt(L / n); allow 5 sd
    L = lam.sum()
    assert abs(data.sum(axis=(1, 2)).mean() - L) < 5 * np.sqrt(L / n)
    # per pixel mean: standardised residuals of the n-sample means are ~N(0, 1) over pixels
    sel = lam > 0.5
    z = (data.mean(0)[sel] - lam[sel]) / np.sqrt(lam[sel] / n)
    assert abs(z.mean()) < 5 / np.sqrt(sel.sum()) and 0.85 < z.std() < 1.15
    # variance equals mean: pooled variance/mean ratio over pixels; its sd is about sqrt(2 / (n m))
    ratio = data.var(0, ddof=1)[sel].sum() / lam[sel].sum()
    assert abs(ratio - 1) < 5 * np.sqrt(2 / (n * sel.sum())) + 0.01


def test_strained_g_vectors_follow_inverse_transpose():
    F = np.array([[1.012, 0.004], [-0.006, 0.995]])
    cube, truth = simulate((2, 2), (128, 128), strain=F, descan=[[0.3, 0.1, 0.2], [-0.2, 0.4, -0.1]])
    FinvT = np.linalg.inv(F).T
    g1_ref = np.array([2, 2]) / SI_A  # (220) of Si [001] with crystal x along lab x
    g2_ref = np.array([2, -2]) / SI_A
    np.testing.assert_allclose(truth.g1_ref_invA[0], g1_ref, rtol=1e-12)
    np.testing.assert_allclose(truth.g2_ref_invA[0], g2_ref, rtol=1e-12)
    np.testing.assert_allclose(truth.g1_invA, np.broadcast_to(FinvT @ g1_ref, (2, 2, 2)), rtol=1e-12)
    np.testing.assert_allclose(truth.g2_px, np.broadcast_to(FinvT @ g2_ref / 0.0156, (2, 2, 2)), rtol=1e-12)
    # strain maps are the polar decomposition F = R (I + E)
    t = np.radians(truth.rotation_deg[0, 0])
    Rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    E = np.array([[truth.strain_exx[0, 0], truth.strain_exy[0, 0]], [truth.strain_exy[0, 0], truth.strain_eyy[0, 0]]])
    np.testing.assert_allclose(Rot @ (np.eye(2) + E), F, atol=1e-12)
    # each rendered disk sits at origin + F^-T (h, k)/a / dk
    R = truth.disk_radius_px
    for rx, ry in [(0, 0), (1, 1)]:
        pk = truth.peaks_at(rx, ry)
        p = cube.pattern(rx, ry).astype(np.float64)
        o = truth.origin_map[rx, ry]
        for k in _isolated_inside(truth, rx, ry, R + 5):
            h, kk, l = pk["hkl"][k]
            assert l == 0
            pred = o + FinvT @ (np.array([h, kk]) / SI_A) / 0.0156
            _, cx, cy = _centroid(p, pk["qx"][k], pk["qy"][k], R + 3)
            assert np.hypot(cx - pred[0], cy - pred[1]) < 3e-3  # see the centroid test for the budget


def test_strain_dict_gives_its_own_maps():
    exx = np.linspace(0, 0.01, 4)[:, None] * np.ones((4, 3))
    _, truth = simulate((4, 3), (64, 64), reciprocal_step=0.03, strain={"exx": exx, "rotation_deg": 2.0})
    np.testing.assert_allclose(truth.strain_exx, exx, atol=1e-12)
    np.testing.assert_allclose(truth.strain_eyy, 0, atol=1e-12)
    np.testing.assert_allclose(truth.rotation_deg, 2.0, atol=1e-12)
    _, by_call = simulate((4, 3), (64, 64), reciprocal_step=0.03,
                          strain=lambda rx, ry: {"exx": 0.01 * rx / 3, "rotation_deg": 2.0 + 0 * ry})
    np.testing.assert_allclose(by_call.deformation, truth.deformation, atol=1e-15)


def test_descan_moves_the_central_disk():
    shift = np.random.default_rng(2).uniform(-4, 4, (3, 4, 2))
    cube, truth = simulate((3, 4), (64, 64), grains=[], descan=shift, origin=(31.7, 32.2))
    np.testing.assert_allclose(truth.origin_map, np.array([31.7, 32.2]) + shift)
    assert cube.calibration.origin == pytest.approx(tuple(truth.origin_map.reshape(-1, 2).mean(0)))
    for rx in range(3):
        for ry in range(4):
            _, cx, cy = _centroid(cube.pattern(rx, ry).astype(np.float64), *truth.origin_map[rx, ry], 12)
            assert np.hypot(cx - truth.origin_map[rx, ry, 0], cy - truth.origin_map[rx, ry, 1]) < 2e-3


def test_linear_descan_matrix():
    M = [[0.1, -0.05, 1.0], [0.02, 0.2, -0.5]]
    _, truth = simulate((5, 6), (32, 32), grains=[], descan=M, reciprocal_step=0.05)
    rx, ry = 4, 5
    np.testing.assert_allclose(truth.origin_map[rx, ry], [16 + 0.1 * 4 - 0.05 * 5 + 1, 16 + 0.02 * 4 + 0.2 * 5 - 0.5])


def test_ellipse_maps_a_ring_to_the_given_ellipse():
    a, b, theta = 1.06, 0.95, 30.0
    kw = dict(grains=[], amorphous=1.0, amorphous_strength=0.9, amorphous_rings=((0.4, 0.03, 1.0),),
              origin=(64.0, 64.0))
    cube, truth = simulate((1, 1), (128, 128), ellipse=(a, b, theta), **kw)
    assert truth.ellipse == (a, b, theta)
    p = cube.pattern(0, 0).astype(np.float64)
    i, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    ring = p * (np.hypot(i - 64, j - 64) > 14)  # drop the central disk (radius 6.5 px, also distorted)
    dx, dy = i - 64.0, j - 64.0
    M = np.array([[(ring * dx * dx).sum(), (ring * dx * dy).sum()], [(ring * dx * dy).sum(), (ring * dy * dy).sum()]])
    evals, evecs = np.linalg.eigh(M)
    # a distorted circle's second moments are D M0 D^T with M0 isotropic: eigenvalues (a r)^2, (b r)^2
    assert np.sqrt(evals[1] / evals[0]) == pytest.approx(a / b, rel=2e-3)
    major = np.degrees(np.arctan2(evecs[1, 1], evecs[0, 1])) % 180
    assert major == pytest.approx(theta, abs=0.2)
    # and the ring radius along the major axis is a * r0: the profile maximum along theta
    r0 = 0.4 / 0.0156
    t = np.radians(theta)
    s = np.arange(15, 40, 0.01)
    from scipy.ndimage import map_coordinates

    prof = map_coordinates(p, [64 + s * np.cos(t), 64 + s * np.sin(t)], order=3)
    # bicubic interpolation of a 1.9 px wide ring locates its ridge to ~0.05 px
    assert s[np.argmax(prof)] == pytest.approx(a * r0, abs=0.08)
    prof = map_coordinates(p, [64 - s * np.sin(t), 64 + s * np.cos(t)], order=3)
    assert s[np.argmax(prof)] == pytest.approx(b * r0, abs=0.08)
    # the ring total is unchanged by the distortion (the profile is renormalised by det D)
    plain, _ = simulate((1, 1), (128, 128), **kw)
    assert p.sum() == pytest.approx(float(plain.pattern(0, 0).astype(np.float64).sum()), rel=1e-4)


def test_forbidden_reflections_absent():
    cube, truth = simulate((1, 1), (128, 128))
    hkl = truth.peaks_at(0, 0)["hkl"]
    h = np.abs(hkl)
    # diamond: all odd, or all even with h + k + l = 4n; [001] zone: l = 0
    assert np.all(hkl[:, 2] == 0)
    assert np.all(((h % 2 == 0).all(1) & (hkl.sum(1) % 4 == 0)) | (h % 2 == 1).all(1))
    assert [2, 0, 0] not in hkl.tolist() and [2, 2, 0] in hkl.tolist() and [4, 0, 0] in hkl.tolist()
    # and nothing is drawn where (200) and (110) would be
    p = cube.pattern(0, 0)
    for g in ([2, 0], [0, 2], [1, 1], [-2, 0]):
        q = np.array([64.0, 64.0]) + np.array(g) / SI_A / 0.0156
        assert p[int(round(q[0])), int(round(q[1]))] == 0
    # fcc Au [001]: (200) allowed, (110) forbidden
    _, tau = simulate((1, 1), (128, 128), grains=[Grain.preset("Au")])
    au = tau.peaks_at(0, 0)["hkl"].tolist()
    assert [2, 0, 0] in au and [1, 1, 0] not in au


def test_reproducible_with_seed():
    kw = dict(grains=[Grain.preset("Si"), Grain.preset("Si", zone_axis=(0, 1, 1))], amorphous=0.3, dose=1e4)
    a, ta = simulate((6, 5), (48, 48), reciprocal_step=0.03, seed=11, **kw)
    b, tb = simulate((6, 5), (48, 48), reciprocal_step=0.03, seed=11, workers=1, **kw)
    c, tc = simulate((6, 5), (48, 48), reciprocal_step=0.03, seed=12, **kw)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())  # independent of the thread count too
    np.testing.assert_array_equal(ta.grain_map, tb.grain_map)
    assert not np.array_equal(a.to_numpy(), c.to_numpy())


def test_beam_stop_blocks_its_mask():
    cube, truth = simulate((2, 2), (64, 64), reciprocal_step=0.03, beam_stop={"angle_deg": 90, "arm_width_px": 4},
                           amorphous=1.0, background=0.05)
    m = truth.beam_stop_mask
    assert m.shape == (64, 64) and m[32, 32] and m[32, 60] and not m[32, 4] and not m[60, 32]
    data = cube.to_numpy()
    assert np.all(data[:, :, m] == 0)
    assert np.all(data[:, :, ~m] > 0)  # the diffuse background reaches every other pixel


def test_grain_orientation_ground_truth():
    zones = [(0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2)]
    grains = [Grain.preset("Si", zone_axis=z, rotation_deg=15.0 * i) for i, z in enumerate(zones)]
    _, truth = simulate((8, 8), (64, 64), reciprocal_step=0.03, grains=grains, seed=4)
    assert set(np.unique(truth.grain_map)) <= {0, 1, 2, 3}
    for R, z in zip(truth.orientation_matrices, zones):
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        zl = R @ (np.array(z) / np.linalg.norm(z))
        np.testing.assert_allclose(zl, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(truth.grain_rotation_deg, [0, 15, 30, 45])
    # every listed reflection lies in its zone (Weiss zone law h u + k v + l w = 0)
    for k in range(len(truth.peak_hkl)):
        gi = truth.peak_grain[k]
        if gi >= 0:
            assert truth.peak_hkl[k] @ np.array(zones[gi]) == 0


def test_truth_access_and_immutability():
    _, truth = simulate((2, 3), (32, 32), reciprocal_step=0.06)
    d = truth.to_dict()
    assert d["scan_shape"] == (2, 3) and d["grains"][0]["name"] == "Si"
    assert len(truth.peak_offsets) == 2 * 3 + 1 and truth.peak_offsets[-1] == len(truth.peak_qx)
    with pytest.raises(ValueError):
        truth.origin_map[0, 0, 0] = 1.0
    pk = truth.peaks_at(1, 2)
    assert pk["hkl"][0].tolist() == [0, 0, 0] and pk["grain"][0] == -1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(dose=-5), "dose"),
        (dict(dose=float("nan")), "dose"),
        (dict(scan_shape=(0, 4)), "scan_shape"),
        (dict(scan_shape=(4,)), "scan_shape"),
        (dict(detector_shape=(2, 64)), "detector_shape"),
        (dict(convergence_semiangle_mrad=0), "convergence_semiangle_mrad"),
        (dict(amorphous=1.5), "amorphous"),
        (dict(ellipse=(1.0, -1.0, 0.0)), "ellipse"),
        (dict(dtype="uint16"), "dtype"),
        (dict(strain={"ezz": 0.1}), "strain"),
        (dict(grain_map=np.zeros((3, 3), int)), "grain_map"),
        (dict(descan=np.zeros((2, 2))), "descan"),
        (dict(beam_stop={"radius": 3}), "beam_stop"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    kwargs = {"scan_shape": (2, 2), "detector_shape": (32, 32), **kwargs}
    with pytest.raises(ParameterError) as err:
        simulate(**kwargs)
    assert err.value.field == field
    assert field.split("_")[0] in str(err.value)


def test_elliptic_distortion_moves_disks_to_D_g():
    a, b, theta = 1.04, 0.97, -20.0
    cube, truth = simulate((1, 1), (128, 128), ellipse=(a, b, theta), origin=(63.4, 64.7))
    t = np.radians(theta)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    D = R @ np.diag([a, b]) @ R.T
    np.testing.assert_allclose(truth.distortion, D, atol=1e-15)
    pk = truth.peaks_at(0, 0)
    g = pk["hkl"][:, :2] / SI_A / 0.0156
    np.testing.assert_allclose(np.c_[pk["qx"], pk["qy"]], np.array([63.4, 64.7]) + g @ D.T, atol=1e-9)
    np.testing.assert_allclose(truth.g1_px[0, 0], D @ truth.g1_invA[0, 0] / 0.0156, atol=1e-12)
    p = cube.pattern(0, 0).astype(np.float64)
    ext = truth.disk_radius_px * a + 6 * truth.disk_edge_px
    for k in _isolated_inside(truth, 0, 0, ext + 1):
        s, cx, cy = _centroid(p, pk["qx"][k], pk["qy"][k], ext)
        # an elliptic disk is an affine image of a round one: its centroid is still the centre
        assert np.hypot(cx - pk["qx"][k], cy - pk["qy"][k]) < 1e-3
        assert s == pytest.approx(pk["intensity"][k], rel=3e-4, abs=1e-7)  # D preserves the total


def test_virtual_bright_field_is_the_central_beam():
    from fourd_widgets.datasets import sample

    cube, truth = sample("strained_crystal", scan_shape=(6, 5), dose=None)
    data = cube.to_numpy().astype(np.float64)
    i, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    r_bf = truth.disk_radius_px + 6 * truth.disk_edge_px
    for rx in range(6):
        for ry in range(5):
            ox, oy = truth.origin_map[rx, ry]
            bf = data[rx, ry][(i - ox) ** 2 + (j - oy) ** 2 <= r_bf**2].sum()
            # a BF detector that follows the descan collects exactly the central beam (no other disk
            # within 30 px); sampling of the soft edge: < 1e-4 relative
            assert bf == pytest.approx(truth.peaks_at(rx, ry)["intensity"][0], rel=3e-4)


def test_vacuum_probe_template_matches_the_rendered_probe():
    cube, truth = simulate((2, 2), (64, 64), grains=[], reciprocal_step=0.03, ellipse=(1.03, 0.98, 40.0),
                           descan=[[0.5, 0.2, 0.0], [-0.3, 0.4, 0.0]])
    for rx, ry in [(0, 0), (1, 1)]:
        probe = truth.vacuum_probe(tuple(truth.origin_map[rx, ry]))
        np.testing.assert_allclose(cube.pattern(rx, ry), probe, atol=1e-7)  # float32 storage
    assert truth.vacuum_probe().sum() == pytest.approx(1.0, abs=1e-4)  # soft-edge sampling, see above
