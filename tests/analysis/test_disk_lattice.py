"""Lattice-constrained disk positions (snap_to_lattice) on hand-made peak tables with known lattices."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.disk_lattice import snap_to_lattice
from fourd_widgets.analysis.disks import (
    FLAG_INVALID,
    FLAG_LATTICE,
    DiskLatticeParams,
    FindDisksParams,
    PeakTable,
    find_disks,
    find_disks_in_patterns,
)
from fourd_widgets.analysis.probe import probe_template, synthetic_disk
from fourd_widgets.analysis.strain import lattice_peaks
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError

G1, G2 = np.array([10.0, 1.0]), np.array([-1.5, 12.0])
ORIGIN = np.array([32.0, 32.0])
SCAN = (4, 5)


def heavy_zero(h, k):
    """Zero beam 1000, Bragg disks 10: the electrons of a thin crystal."""
    return np.where((h == 0) & (k == 0), 1000.0, 10.0)


def descan(shape=SCAN):
    """A per-position origin drift (px), as an uncorrected descan gives."""
    i, j = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return ORIGIN + np.stack([0.3 * i - 0.1 * j, 0.2 * j + 0.05 * i * j], -1)


def with_columns(t: PeakTable, qx=None, qy=None, intensity=None, flags=None) -> PeakTable:
    return PeakTable(t.scan_shape, t.offsets, t.qx if qx is None else qx, t.qy if qy is None else qy,
                     t.intensity if intensity is None else intensity, t.correlation,
                     t.flags if flags is None else flags)


def add_peaks(t: PeakTable, extra: dict[int, list[tuple[float, float, float]]]) -> PeakTable:
    """The table with extra (qx, qy, intensity) peaks appended at some flat positions."""
    rows = []
    for p in range(len(t.offsets) - 1):
        s = slice(t.offsets[p], t.offsets[p + 1])
        rows.append([(x, y, i) for x, y, i in zip(t.qx[s], t.qy[s], t.intensity[s])] + extra.get(p, []))
    counts = [len(r) for r in rows]
    flat = np.array([x for r in rows for x in r], float).reshape(-1, 3)
    return PeakTable(t.scan_shape, np.concatenate([[0], np.cumsum(counts)]), flat[:, 0], flat[:, 1], flat[:, 2],
                     np.ones(len(flat)), t.flags)


def is_lattice(q: np.ndarray, origin: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """Distance of each point from the nearest point of a lattice."""
    G = np.stack([g1, g2], 1)
    hk = np.rint(np.linalg.solve(G, (q - origin).T)).T
    return np.hypot(*(q - origin - hk @ G.T).T)


# --- exact lattices -------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, 1.0, 3.0])
def test_exact_lattice_with_descan_is_unchanged(sigma):
    t = lattice_peaks(SCAN, descan(), G1, G2, (64, 64), edge=4, intensity=heavy_zero)
    s = snap_to_lattice(t, g1=G1, g2=G2, scan_sigma=sigma)
    assert s.offsets.tolist() == t.offsets.tolist()
    np.testing.assert_allclose(s.qx, t.qx, atol=1e-9)
    np.testing.assert_allclose(s.qy, t.qy, atol=1e-9)
    np.testing.assert_array_equal(s.intensity, t.intensity)
    assert (s.flags == FLAG_LATTICE).all()


def test_affine_distortion_keeps_a_lattice():
    # an elliptic detector distortion (3 % along 30 degrees) applied to every vector
    c, si = np.cos(np.radians(30)), np.sin(np.radians(30))
    R = np.array([[c, -si], [si, c]])
    A = R @ np.diag([1.03, 1.0]) @ R.T
    t = lattice_peaks(SCAN, ORIGIN, A @ G1, A @ G2, (64, 64), edge=4, intensity=heavy_zero)
    s = snap_to_lattice(t, g1=G1, g2=G2)  # the undistorted basis is close enough for indexing
    np.testing.assert_allclose(np.stack([s.qx, s.qy]), np.stack([t.qx, t.qy]), atol=1e-9)


def test_linear_strain_gradient_is_unbiased_inside_the_scan():
    # g1 grows by 0.2 % per scan row: the neighbourhood's weighted mean of a linear
    # function is its centre value wherever the neighbourhood is whole
    shape = (9, 3)
    grow = 1 + 0.002 * np.arange(shape[0])[:, None, None] * np.ones(shape + (1,))
    t = lattice_peaks(shape, ORIGIN + 32, G1 * grow, np.broadcast_to(G2, shape + (2,)), (128, 128), edge=8,
                      hk_max=2, intensity=heavy_zero)
    assert (t.counts() == t.counts()[0, 0]).all()  # the same disks everywhere
    s = snap_to_lattice(t, g1=G1, g2=G2, scan_sigma=1.0)
    err = np.hypot(s.qx - t.qx, s.qy - t.qy)
    inside = np.isin(t.positions() // shape[1], np.arange(4, 5))  # rows >= 4 sigma from both edges
    assert err[inside].max() < 1e-9
    assert 0 < err.max() < 0.05  # one-sided at the scan edge (measured 0.021 px)


# --- noise, outliers, weights --------------------------------------------------------------
def test_perturbed_disks_move_onto_the_lattice_and_outliers_go():
    rng = np.random.default_rng(3)
    t = lattice_peaks(SCAN, descan(), G1, G2, (64, 64), edge=4, intensity=heavy_zero)
    zero = np.isin(np.arange(len(t)), t.offsets[:-1])
    noise = np.where(zero[:, None], 0.02, 0.4) * rng.standard_normal((len(t), 2))
    noisy = with_columns(t, qx=t.qx + noise[:, 0], qy=t.qy + noise[:, 1])
    # a noise maximum half way between lattice points at two positions, and a weak disk 1.5 px off
    o = descan()
    off = {3: [tuple(o[0, 3] + 0.5 * G1 + 0.5 * G2) + (30.0,)],
           11: [tuple(o[2, 1] - 0.5 * G2) + (30.0,)]}
    noisy = add_peaks(noisy, off)
    s = snap_to_lattice(noisy, g1=G1, g2=G2, scan_sigma=1.0)
    assert (s.counts() == t.counts()).all()  # the outliers dropped, every disk kept
    err_free = np.hypot(noise[:, 0], noise[:, 1])
    err = np.hypot(s.qx - t.qx, s.qy - t.qy)
    # 20 positions x ~25 disks at 0.4 px per axis: free median 0.48 px; the shared basis
    # leaves the zero beam's 0.02 px plus the basis scatter (measured 0.050 px)
    assert np.median(err[~zero]) < 0.25 * np.median(err_free[~zero])
    assert (s.flags & FLAG_LATTICE).all()


def test_heavy_zero_beam_pins_the_origin():
    # every Bragg disk is displaced by the same 0.5 px; only the zero beam is exact. The
    # weighted fit puts the origin where the electrons say: on the zero beam when it holds
    # 1000 of ~1080 electrons, half way with equal weights.
    t = lattice_peaks((1, 1), ORIGIN, G1, G2, (64, 64), edge=4, hk_max=1, intensity=heavy_zero)
    zero = np.arange(len(t)) == 0
    shifted = np.where(zero, t.qx, t.qx + 0.5)
    heavy = snap_to_lattice(with_columns(t, qx=shifted), g1=G1, g2=G2, scan_sigma=0)
    flat = snap_to_lattice(with_columns(t, qx=shifted, intensity=np.ones(len(t))), g1=G1, g2=G2, scan_sigma=0)
    n = len(t) - 1
    assert abs(heavy.qx[0] - ORIGIN[0]) == pytest.approx(0.5 * 10 * n / (1000 + 10 * n), abs=1e-9)
    assert abs(flat.qx[0] - ORIGIN[0]) == pytest.approx(0.5 * n / (1 + n), abs=1e-9)
    # the basis is untouched by a common shift of a symmetric set of disks
    np.testing.assert_allclose(heavy.qx[1:] - heavy.qx[0], t.qx[1:] - t.qx[0], atol=1e-9)


def test_two_peaks_on_one_site_keep_the_stronger():
    t = lattice_peaks((1, 1), ORIGIN, G1, G2, (64, 64), edge=4, hk_max=1, intensity=heavy_zero)
    site = ORIGIN + G1
    both = add_peaks(t, {0: [(site[0] + 1.0, site[1], 50.0)]})
    s = snap_to_lattice(both, g1=G1, g2=G2, scan_sigma=0, max_distance=1.5)
    assert len(s) == len(t)
    at = np.flatnonzero(np.hypot(s.qx - site[0], s.qy - site[1]) < 0.5)
    assert len(at) == 1 and s.intensity[at[0]] == 50.0


def test_positions_that_cannot_be_fitted_keep_free_estimates():
    t = lattice_peaks((1, 3), ORIGIN, G1, G2, (64, 64), edge=4, hk_max=1, intensity=heavy_zero)
    # lattice_peaks order: origin, then (h, k) = (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1) ...
    rows = [t.offsets[0] + np.array([0, 2, 7]), t.offsets[1] + np.array([0, 5]),
            np.arange(t.offsets[2], t.offsets[3])]
    keep = np.concatenate(rows)  # first position: 3 collinear disks, second: 2 disks
    counts = [len(r) for r in rows]
    sparse = PeakTable((1, 3), np.concatenate([[0], np.cumsum(counts)]), t.qx[keep] + 0.1, t.qy[keep],
                       t.intensity[keep], t.correlation[keep])
    s = snap_to_lattice(sparse, g1=G1, g2=G2, scan_sigma=0)
    assert s.flags.tolist() == [[0, 0, FLAG_LATTICE]]
    np.testing.assert_array_equal(s.qx[:5], sparse.qx[:5])  # untouched
    np.testing.assert_allclose(s.qx[5:], sparse.qx[5:], atol=1e-9)  # a common shift is the origin's
    # with a neighbourhood, its basis serves the sparse patterns too; min_disks still refuses them
    shared = snap_to_lattice(sparse, g1=G1, g2=G2, scan_sigma=2.0)
    assert (shared.flags == FLAG_LATTICE).all()
    np.testing.assert_allclose(shared.qx, sparse.qx, atol=1e-9)
    strict = snap_to_lattice(sparse, g1=G1, g2=G2, scan_sigma=2.0, min_disks=3)
    assert strict.flags.tolist() == [[FLAG_LATTICE, 0, FLAG_LATTICE]]


def test_invalid_patterns_and_empty_tables_pass_through():
    t = lattice_peaks(SCAN, ORIGIN, G1, G2, (64, 64), edge=4, intensity=heavy_zero)
    counts = t.counts().copy()
    counts[1, 2] = 0
    keep = ~np.isin(t.positions(), [1 * SCAN[1] + 2])
    flags = np.zeros(SCAN, np.uint8)
    flags[1, 2] = FLAG_INVALID
    holed = PeakTable(SCAN, np.concatenate([[0], np.cumsum(counts.ravel())]), t.qx[keep], t.qy[keep],
                      t.intensity[keep], t.correlation[keep], flags)
    s = snap_to_lattice(holed)
    assert s.flags[1, 2] == FLAG_INVALID and s.counts()[1, 2] == 0
    assert ((s.flags == FLAG_LATTICE) | (s.flags == FLAG_INVALID)).all()
    empty = PeakTable((2, 2), [0] * 5, [], [], [], [])
    assert snap_to_lattice(empty) is empty


def test_suggested_basis_gives_the_same_sites():
    rng = np.random.default_rng(5)
    t = lattice_peaks(SCAN, descan(), G1, G2, (64, 64), edge=4, intensity=heavy_zero)
    noisy = with_columns(t, qx=t.qx + 0.3 * rng.standard_normal(len(t)), qy=t.qy + 0.3 * rng.standard_normal(len(t)))
    given = snap_to_lattice(noisy, g1=G1, g2=G2)
    suggested = snap_to_lattice(noisy)
    assert suggested.offsets.tolist() == given.offsets.tolist()
    np.testing.assert_allclose(np.stack([suggested.qx, suggested.qy]), np.stack([given.qx, given.qy]), atol=1e-9)
    # the calibrated origin as the anchor instead of each pattern's strongest peak: same sites
    anchored = snap_to_lattice(noisy, calibration=Calibration(origin=(33.0, 31.0)))
    np.testing.assert_allclose(anchored.qx, given.qx, atol=1e-9)


def test_never_invents_disks_and_every_snapped_pattern_is_a_lattice():
    rng = np.random.default_rng(11)
    t = lattice_peaks(SCAN, descan(), G1, G2, (64, 64), edge=4, intensity=heavy_zero)
    drop = rng.random(len(t)) < 0.4
    drop[t.offsets[:-1]] = False  # keep the zero beams
    pos = t.positions()[~drop]
    counts = np.bincount(pos, minlength=len(t.offsets) - 1)
    q = np.stack([t.qx, t.qy], 1)[~drop] + 0.5 * rng.standard_normal((int(counts.sum()), 2))
    q[t.intensity[~drop] > 100] = np.stack([t.qx, t.qy], 1)[~drop][t.intensity[~drop] > 100]
    sparse = PeakTable(SCAN, np.concatenate([[0], np.cumsum(counts)]), q[:, 0], q[:, 1], t.intensity[~drop],
                       t.correlation[~drop])
    extra = {p: [(rng.uniform(6, 58), rng.uniform(6, 58), 10.0)] for p in range(0, 20, 3)}
    s = snap_to_lattice(add_peaks(sparse, extra))
    assert (s.counts() <= add_peaks(sparse, extra).counts()).all()
    for p, (i, j) in enumerate(np.ndindex(SCAN)):
        a = s.at(i, j)
        pts = np.stack([a["qx"], a["qy"]], 1)
        # snapped points lie on one lattice: the truth's, shifted by at most the fit's error
        assert is_lattice(pts, pts[0], G1, G2).max() < 0.5
        assert np.hypot(*(pts[0] - descan()[i, j])) < 0.05


# --- records, recipe, errors ---------------------------------------------------------------
def test_params_round_trip():
    lat = DiskLatticeParams(g1=(23.5, 23.5), g2=(23.5, -23.5), max_distance=3.0, scan_sigma=2.0, min_disks=2)
    assert DiskLatticeParams.from_dict(lat.to_dict()) == lat
    p = FindDisksParams(min_absolute_intensity=0.02, lattice=lat)
    d = json.loads(json.dumps(p.to_dict()))
    assert d["lattice"]["step"] == "disk_lattice" and d["schema_version"] == 2  # schema 2: probe_fit
    assert FindDisksParams.from_dict(d) == p
    back = fw.Recipe.from_json(fw.Recipe([p]).to_json()).steps[0]
    assert back == p and back.lattice.scan_sigma == 2.0
    # records written before the field existed load unchanged (a missing key takes the default)
    old = {k: v for k, v in FindDisksParams().to_dict().items() if k != "lattice"}
    assert FindDisksParams.from_dict(old).lattice is None
    assert FindDisksParams.from_dict(dict(old, lattice={"step": "disk_lattice"})).lattice == DiskLatticeParams()


def _lattice_cube():
    """3 x 4 scan of 64 x 64 patterns: disks of radius 4 on a lattice, with descan and noise."""
    rng = np.random.default_rng(2)
    shape = (3, 4)
    o = descan(shape)
    data = np.zeros(shape + (64, 64), np.float32)
    for i, j in np.ndindex(shape):
        pts = lattice_peaks((1, 1), o[i, j], (14.0, 1.0), (-1.0, 13.0), (64, 64), edge=6, hk_max=2)
        for x, y in zip(pts.qx, pts.qy):
            w = 1.0 if np.hypot(x - o[i, j, 0], y - o[i, j, 1]) < 1 else 0.1
            data[i, j] += w * synthetic_disk((64, 64), 4.0, (x, y), edge_width=0)
    data += 0.01 * rng.random(data.shape).astype(np.float32)
    return DataCube(data)


def test_recipe_run_equals_calling_the_function():
    cube = _lattice_cube()
    template = probe_template(synthetic_disk((64, 64), 4.0, edge_width=0))
    lat = DiskLatticeParams(scan_sigma=1.0)
    free = find_disks(cube, FindDisksParams(), template=template)
    direct = snap_to_lattice(free, lat)
    # the noise maxima that the default thresholds keep (~0.26 of a disk's 4.7) are dropped
    assert (direct.flags == FLAG_LATTICE).all() and (direct.counts() <= free.counts()).all()
    assert (direct.counts() >= 11).all()
    via_params = find_disks(cube, FindDisksParams(lattice=lat), template=template)
    assert via_params == direct
    # through fw.run, with the template made from the record (synthetic, measured from the data)
    rec = fw.Recipe.from_json(fw.Recipe([FindDisksParams(lattice=lat)], labels=["disks"]).to_json())
    replay = fw.run(rec, cube)["disks"]
    assert replay == snap_to_lattice(find_disks(cube, FindDisksParams()), lat)
    # a few patterns through find_disks_in_patterns: a 2-D leading shape is a scan grid
    pats = cube.to_numpy()
    assert find_disks_in_patterns(pats, template, FindDisksParams(lattice=lat)) == direct


def test_errors_name_the_field():
    with pytest.raises(ParameterError, match="collinear") as e:
        DiskLatticeParams(g1=(10, 0), g2=(-20, 0.5))
    assert e.value.field == "g2"
    with pytest.raises(ParameterError, match="zero length") as e:
        DiskLatticeParams(g1=(0, 0), g2=(0, 12))
    assert e.value.field == "g1"
    with pytest.raises(ParameterError, match="both g1 and g2") as e:
        DiskLatticeParams(g1=(10, 0))
    assert e.value.field == "g2"
    with pytest.raises(ParameterError, match="max_distance") as e:
        FindDisksParams.from_dict({"step": "find_disks", "lattice": {"step": "disk_lattice", "max_distance": 0}})
    assert e.value.field == "max_distance"
    with pytest.raises(ParameterError, match="scan_sigma"):
        DiskLatticeParams(scan_sigma=-1)
    with pytest.raises(ParameterError, match="unknown field 'sigma'"):
        snap_to_lattice(lattice_peaks(SCAN, ORIGIN, G1, G2, (64, 64)), sigma=1)
    # one disk per pattern: no lattice to find
    single = PeakTable((2, 2), [0, 1, 2, 3, 4], [32.0] * 4, [32.0] * 4, [1.0] * 4, [1.0] * 4)
    with pytest.raises(ParameterError, match="no lattice found") as e:
        snap_to_lattice(single)
    assert e.value.field == "g1"
    t = lattice_peaks(SCAN, ORIGIN, G1, G2, (64, 64))
    with pytest.raises(ParameterError, match="detector pixels") as e:
        snap_to_lattice(t.to_calibrated(Calibration(origin=(32, 32), reciprocal_step=0.01)))
    assert e.value.field == "peaks"
