"""Disk detection on hand-made patterns with known disk centres: filters, refinement, tables, errors."""

from __future__ import annotations


import numpy as np
import pytest

from fourd_widgets.analysis.disks import (FLAG_INVALID, FindDisksParams, NoPeaksWarning, PeakTable,
                                          bragg_vector_map, candidate_peaks, find_disks,
                                          find_disks_in_patterns)
from fourd_widgets.analysis.probe import probe_template, synthetic_disk
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError, ShapeError
from fourd_widgets.kernels import disks as K

R = 4.0
SHAPE = (64, 64)


def pattern(centres, weights=None, shape=SHAPE, radius=R):
    """Sum of anti-aliased hard-edged disks (4x4 supersampled) at sub-pixel centres."""
    weights = weights if weights is not None else [1.0] * len(centres)
    return sum(w * synthetic_disk(shape, radius, c, edge_width=0) for c, w in zip(centres, weights))


@pytest.fixture(scope="module")
def template():
    return probe_template(synthetic_disk(SHAPE, R, edge_width=0))


def found(table, *idx):
    a = table.at(*idx)
    return np.stack([a["qx"], a["qy"]], 1)


def nearest(q, truth):
    d = np.hypot(*(q[:, None, :] - np.asarray(truth)[None]).transpose(2, 0, 1))
    return d.min(axis=1)


@pytest.mark.parametrize("mode,tol", [("none", 0.5 + 1e-9), ("parabola", 0.12), ("dft", 0.03), ("disk", 0.05)])
def test_refinement_modes(template, mode, tol):
    # Same-shape disks: the cross-correlation peak is exactly at the centre, so the error is
    # the refinement's own: <= 0.5 px on the pixel grid (rounding), a few 0.1 px for a
    # parabola through a flat-topped peak, about 1/16 px grid / parabola on it for the DFT.
    # 'disk' (the default) masks each disk's window at 1.15-1.25 r: on these 4-px disks the
    # mask taper (0.4 px wide) cuts into the anti-aliased edge of an off-centre disk a little.
    rng = np.random.default_rng(3)
    truth = [(20 + rng.random(), 18 + rng.random()), (42 + rng.random(), 40 + rng.random()),
             (22 + rng.random(), 44 + rng.random())]
    t = find_disks_in_patterns(pattern(truth), template, FindDisksParams(subpixel=mode))
    q = found(t, 0)
    assert len(q) == 3
    assert nearest(q, truth).max() <= tol


def test_local_dft_matches_irfft_and_brute_force():
    import scipy.fft as sf
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(np.random.default_rng(0).random((32, 24)), 2, mode="wrap").astype(np.float32)
    S = sf.rfft2(a)
    re, im = np.ascontiguousarray(S.real, np.float32), np.ascontiguousarray(S.imag, np.float32)
    out = np.empty((3, 3))
    K.local_dft(re, im, 32, 24, 999, 4.0, 5.0, 1.0, 3, 3, out)
    np.testing.assert_allclose(out, a[4:7, 5:8], atol=1e-5 * a.max())  # float32 sums
    x, y = 10.3, 7.7
    u = np.fft.fftfreq(32)[:, None] * 32
    v = np.fft.fftfreq(24)[None, :] * 24
    brute = (sf.fft2(a) * np.exp(2j * np.pi * (u * x / 32 + v * y / 24))).sum().real / a.size
    K.local_dft(re, im, 32, 24, 999, x, y, 1.0, 1, 1, out[:1, :1])
    assert out[0, 0] == pytest.approx(brute, abs=float(1e-5 * a.max()))


def test_filters(template):
    truth = [(20.0, 20.0), (20.0, 32.0), (40.0, 40.0), (30.0, 50.0), (6.0, 32.0)]
    w = [1.0, 0.5, 0.2, 0.01, 1.0]
    pat = pattern(truth, w)
    # 0.1 % of the strongest: above the correlation's ringing, below the 0.01 disk
    base = dict(min_relative_intensity=0.001, relative_to_peak=0, edge_boundary=0.0, min_peak_spacing=0.0)
    t = find_disks_in_patterns(pat, template, FindDisksParams(**base))
    assert len(t) == 5
    # edge: the disk at qx=6 is within 8 px of the edge
    assert len(find_disks_in_patterns(pat, template, FindDisksParams(**{**base, "edge_boundary": 8.0}))) == 4
    # spacing: (20, 29) is 12 px from the stronger (20, 20)
    q = found(find_disks_in_patterns(pat, template, FindDisksParams(**{**base, "min_peak_spacing": 13.0})), 0)
    assert len(q) == 4 and nearest(np.array([[20.0, 29.0]]), q)[0] > 5
    # relative to the strongest: 0.01 disk dropped at 5 %
    rel = FindDisksParams(**{**base, "min_relative_intensity": 0.05, "relative_to_peak": 0})
    assert len(find_disks_in_patterns(pat, template, rel)) == 4
    # relative to the 3rd strongest (0.2): 0.5 x 0.2 drops the 0.01 disk only; 0.6 x 0.5 drops 0.2 and 0.01
    rel2 = FindDisksParams(**{**base, "min_relative_intensity": 0.6, "relative_to_peak": 2})
    assert len(find_disks_in_patterns(pat, template, rel2)) == 3
    # absolute, on the correlation value
    c = t.correlation
    ab = FindDisksParams(**{**base, "min_absolute_intensity": float(np.sort(c)[2]) * 0.999})
    assert len(find_disks_in_patterns(pat, template, ab)) == 3
    # maximum number keeps the strongest
    q = found(find_disks_in_patterns(pat, template, FindDisksParams(**{**base, "max_num_peaks": 2})), 0)
    assert len(q) == 2 and nearest(q, [truth[0], truth[4]]).max() < 0.1


def test_intensity_column(template):
    t = find_disks_in_patterns(pattern([(20.0, 20.0), (40.0, 40.0)], [1.0, 0.25]), template)
    i = np.sort(t.intensity)
    assert i[0] / i[1] == pytest.approx(0.25, rel=1e-6)


def test_candidates_are_superset(template):
    pat = pattern([(20.0, 20.0), (40.0, 40.0), (30.0, 50.0)], [1.0, 0.3, 0.001])
    cand = candidate_peaks(pat, template)
    kept = find_disks_in_patterns(pat, template)
    assert cand.kept.sum() == len(kept) < len(cand.table)
    assert np.isnan(cand.table.intensity).all()
    # the histogram values are the correlation maxima, before any threshold
    assert cand.table.correlation.max() == pytest.approx(kept.correlation.max(), rel=1e-2)


def test_hybrid_and_phase_correlation(template):
    truth = [(20.3, 21.7), (41.1, 38.4)]
    for cp in (0.0, 0.5, 1.0):
        # phase correlation rings; 30 % of the strongest is above the ringing
        p = FindDisksParams(corr_power=cp, min_relative_intensity=0.3, relative_to_peak=0)
        q = found(find_disks_in_patterns(pattern(truth), template, p), 0)
        assert len(q) == 2 and nearest(q, truth).max() < 0.05  # identical disk shapes: unbiased


def test_log_and_radial_background(template):
    truth = [(32.2, 32.1), (15.4, 20.5), (48.6, 44.3)]
    X, Y = np.indices(SHAPE)
    halo = 0.05 * np.exp(-np.hypot(X - 32.2, Y - 32.1) / 15)
    pat = pattern(truth, [1.0, 0.05, 0.05]) + halo
    p = FindDisksParams(radial_background=True, log=True)
    q = found(find_disks_in_patterns(pat, template, p, origins=np.array([[32.2, 32.1]])), 0)
    # the ring medians remove everything round about the origin, the zero-beam disk included;
    # the off-axis disks stay, with the halo gone (residue limits accuracy to ~0.1 px)
    assert nearest(np.array(truth[1:]), q).max() < 0.2
    with pytest.raises(ParameterError, match="origin"):
        find_disks_in_patterns(pat, template, p)


def test_whole_cube_nan_flag_and_table(template):
    rng = np.random.default_rng(0)
    truth = {}
    data = np.zeros((3, 4) + SHAPE, np.float32)
    for rx in range(3):
        for ry in range(4):
            c = [(20 + rng.random(), 20 + rng.random()), (40 + rng.random(), 42 + rng.random())]
            truth[rx, ry] = c
            data[rx, ry] = pattern(c)
    data[1, 2, 5, 5] = np.nan
    cube = DataCube(data, Calibration(reciprocal_step=0.1, reciprocal_units="1/Å", origin=(32.0, 32.0)))
    t = find_disks(cube, template=template, chunk_bytes=3 * data[0, 0].nbytes, progress=False)
    counts = t.counts()
    assert counts[1, 2] == 0 and t.flags[1, 2] & FLAG_INVALID
    assert (np.delete(counts.ravel(), 6) == 2).all()
    for (rx, ry), c in truth.items():
        if (rx, ry) != (1, 2):
            assert nearest(found(t, rx, ry), c).max() < 0.05  # default subpixel='disk', see above
    cal = t.to_calibrated(cube.calibration)
    np.testing.assert_allclose(cal.qx, (t.qx - 32) * 0.1)
    assert cal.units == "1/Å" and cal != t and t == PeakTable(t.scan_shape, t.offsets, t.qx, t.qy, t.intensity,
                                                            t.correlation, t.flags)
    # a per-position origin map is applied per position
    om = np.zeros((3, 4, 2)); om[..., 0] = np.arange(3)[:, None]
    cal2 = t.to_calibrated(Calibration(reciprocal_step=1.0, origin_map=om))
    np.testing.assert_allclose(cal2.qx, t.qx - np.repeat(om[..., 0].ravel(), counts.ravel()))


def test_results_round_trip(tmp_path, template):
    from fourd_widgets.core.recipe import Recipe
    from fourd_widgets.io.results import Results

    t = find_disks_in_patterns(np.stack([pattern([(20.0, 20.0)]), pattern([(30.5, 31.0), (10.0, 50.0)])]),
                               template, FindDisksParams(edge_boundary=0.0))
    path = Results({"peaks": t}, Recipe([FindDisksParams()])).save(tmp_path / "r.h5")
    back = Results.load(path)["peaks"]
    assert back == t and isinstance(back, PeakTable)


def test_params_round_trip():
    p = FindDisksParams(corr_power=0.3, subpixel="parabola", min_peak_spacing=5.0)
    assert FindDisksParams.from_dict(p.to_dict()) == p
    with pytest.raises(ParameterError, match="corr_power"):
        FindDisksParams(corr_power=1.5)
    with pytest.raises(ParameterError, match="subpixel"):
        FindDisksParams.from_dict({"step": "find_disks", "subpixel": "multicorr"})


def test_recipe_step_runs():
    from fourd_widgets.analysis.run import run

    data = np.stack([np.stack([pattern([(32.0, 32.0), (20.0, 44.0)], [1.0, 0.3])] * 2)] * 2).astype(np.float32)
    res = run(FindDisksParams(), DataCube(data))
    table = next(iter(res.values()))
    assert isinstance(table, PeakTable) and (table.counts() == 2).all()


def test_bad_input(template):
    pat = pattern([(20.0, 20.0)])
    with pytest.raises(ShapeError, match="template has shape"):
        find_disks_in_patterns(np.zeros((2, 32, 32)), template)
    with pytest.raises(ParameterError, match="all zero"):
        find_disks_in_patterns(pat, np.zeros(SHAPE))
    with pytest.warns(NoPeaksWarning, match="rejected every peak"):
        t = find_disks(DataCube(pat[None, None].astype(np.float32)), template=template,
                       params=FindDisksParams(min_absolute_intensity=1e9))
    assert len(t) == 0 and t.counts().shape == (1, 1)
    with pytest.raises(ParameterError):
        FindDisksParams(max_num_peaks=0)


def test_bragg_vector_map():
    t = PeakTable((2, 1), [0, 1, 2], qx=[10.25, 12.25], qy=[20.5, 20.5], intensity=[2.0, 2.0],
                  correlation=[1.0, 1.0])
    m = bragg_vector_map(t, (32, 32), weights=None)
    assert m.sum() == pytest.approx(2.0)
    assert m[10, 20] == pytest.approx(0.75 * 0.5) and m[11, 21] == pytest.approx(0.25 * 0.5)
    # origin-centred: per-position origins (10, 20) and (12, 20) move both peaks to the centre (16, 16)
    om = np.array([[[10.0, 20.0]], [[12.0, 20.0]]])
    mc = bragg_vector_map(t, (32, 32), weights="intensity", origin=om)
    assert mc[16, 16] == pytest.approx(4 * 0.75 * 0.5) and mc.sum() == pytest.approx(4.0)
    assert bragg_vector_map(t, (32, 32), weights=None, sampling=2).shape == (64, 64)


@pytest.mark.parametrize("dtype", [">f4", ">u2", "bool"])
def test_any_byte_order_and_bool_patterns(template, dtype):
    """Big-endian detector data (MIB, raw) and boolean frames give the native result;
    complex patterns are refused by name."""
    pat = pattern([(20.3, 30.6), (40.0, 21.2)]) * (1 if dtype == "bool" else 1000)
    data = (pat > 0.5) if dtype == "bool" else pat.astype(np.dtype(dtype).newbyteorder("="))
    got = find_disks_in_patterns(data.astype(dtype)[None], template)
    assert got == find_disks_in_patterns(data.astype(np.dtype(dtype).newbyteorder("="))[None], template)
    assert len(got) == 2
    with pytest.raises(ShapeError, match="real-valued"):
        find_disks_in_patterns(pat.astype(np.complex64)[None], template)
