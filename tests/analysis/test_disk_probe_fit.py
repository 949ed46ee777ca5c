"""The per-disk probe fit (``FindDisksParams.probe_fit``, analysis/disk_probe_fit.py).

Disks are drawn here independently of the code under test: the amplitude of a soft-edged aperture
sampled on the pixel grid, moved by a sub-pixel amount with an FFT phase ramp on a larger periodic grid
(what a multislice simulation does to a diffracted beam whose g is not a multiple of the grid), squared,
times a linear intensity ramp, on a flat background.
"""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.disk_probe_fit import FIT_MAX_MISFIT, fit_disks_to_probe
from fourd_widgets.analysis.disk_refine import refine_disks
from fourd_widgets.analysis.disks import FindDisksParams, find_disks_in_patterns
from fourd_widgets.analysis.probe import probe_template, synthetic_disk

N = 96
RADIUS = 8.0
CENTRE = (48.0, 48.0)


def aperture_amplitude(shape=(N, N), centre=CENTRE, radius=RADIUS):
    """A soft aperture: amplitude 1 inside, a linear ramp one pixel wide at the rim (abTEM's soft edge)."""
    X, Y = np.indices(shape)
    r = np.hypot(X - centre[0], Y - centre[1])
    return np.clip(radius + 0.5 - r, 0.0, 1.0)


def shifted(amplitude, shift, pad=256):
    """The amplitude moved by ``shift`` px with an FFT phase ramp on a ``pad``-periodic grid."""
    big = np.zeros((pad, pad))
    big[:amplitude.shape[0], :amplitude.shape[1]] = amplitude
    k = np.fft.fftfreq(pad)
    ramp = np.exp(-2j * np.pi * (k[:, None] * shift[0] + k[None, :] * shift[1]))
    return np.fft.ifft2(np.fft.fft2(big) * ramp)[:amplitude.shape[0], :amplitude.shape[1]]


def draw(shift, ramp=(0.0, 0.0), background=0.0, scale=0.05):
    """A diffracted disk centred at CENTRE + shift: |moved amplitude|^2 x (1 + ramp . offset / R) + b."""
    amp = np.abs(shifted(aperture_amplitude(), shift)) ** 2
    X, Y = np.indices(amp.shape)
    c = np.add(CENTRE, shift)
    gain = 1 + ramp[0] * (X - c[0]) / RADIUS + ramp[1] * (Y - c[1]) / RADIUS
    return (scale * amp * gain + background).astype(np.float32)


def grid_shifts(n=25, seed=0):
    """Sub-pixel phases spread over the pixel, plus whole-pixel moves."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(-12, 13, n) + rng.uniform(-0.5, 0.5, n),
                            rng.integers(-12, 13, n) + rng.uniform(-0.5, 0.5, n)])


def refine(patterns, starts, probe):
    pidx = np.arange(len(patterns))
    return fit_disks_to_probe(patterns, pidx, starts[:, 0], starts[:, 1], probe, CENTRE, RADIUS)


def test_sinc_moved_disks_are_placed_without_pixel_grid_bias():
    """On band-limited moved disks with dynamical-like ramps (+-30 %), the fit is exact to 0.002 px
    (the drawing's periodic FFT differs from the fit's sinc by far less), where the window correlation
    alone is several times further off at the same phases."""
    shifts = grid_shifts()
    rng = np.random.default_rng(1)
    ramps = rng.uniform(-0.3, 0.3, (len(shifts), 2))
    pats = np.stack([draw(s, r, background=1e-3) for s, r in zip(shifts, ramps)])
    truth = np.add(CENTRE, shifts)
    starts = truth + rng.uniform(-0.3, 0.3, truth.shape)
    probe = aperture_amplitude() ** 2
    qx, qy, misfit = refine(pats, starts, probe)
    err = np.hypot(qx - truth[:, 0], qy - truth[:, 1])
    assert err.max() < 2e-3, err
    assert np.all(misfit < 0.01)  # the model is the drawing: nothing left but the drawing's own rounding
    template = probe_template(probe)
    cx, cy, _ = refine_disks(pats, np.arange(len(pats)), starts[:, 0], starts[:, 1], template)
    corr_err = np.hypot(cx - truth[:, 0], cy - truth[:, 1])
    assert np.median(err) * 3 < np.median(corr_err)


def test_pixel_integrated_hard_disks_with_ramps():
    """Real detectors record band-limited, not sinc-moved, disks: a logistic-edged disk (the synthetic
    template's shape) with a +-60 % ramp, fitted with the centred disk of the same shape, lands within
    0.02 px (the window correlation's bound for such disks is 0.1 px, tests/analysis/test_disk_refine.py)."""
    shifts = grid_shifts(12, seed=3)
    truth = np.add(CENTRE, shifts)
    X, Y = np.indices((N, N))
    pats = []
    for (cx, cy), sign in zip(truth, np.resize([1, -1], len(truth))):
        d = synthetic_disk((N, N), RADIUS, (cx, cy), 0.5)
        pats.append(d * (1 + sign * 0.6 * (X - cx) / RADIUS))
    pats = np.stack(pats).astype(np.float32)
    probe = synthetic_disk((N, N), RADIUS, CENTRE, 0.5)
    qx, qy, _ = refine(pats, truth + 0.2, probe)
    assert np.hypot(qx - truth[:, 0], qy - truth[:, 1]).max() < 0.02


def test_a_disk_the_recorded_probe_does_not_describe_keeps_its_start():
    """A disk overlapped coherently by another grain's disk (amplitude 0.5, so a quarter of the intensity,
    and their interference: a grain boundary) leaves a structured misfit above the threshold: the start
    (the window correlation's estimate) is kept unchanged, not replaced by a pulled fit."""
    own = shifted(aperture_amplitude(), (10.3, -7.6))
    other = 0.5 * np.exp(0.7j) * shifted(aperture_amplitude(), (15.3, -4.6))
    pats = np.stack([0.05 * np.abs(own + other) ** 2, draw((10.3, -7.6))]).astype(np.float32)
    starts = np.array([[58.35, 40.45], [58.35, 40.45]])
    qx, qy, misfit = refine(pats, starts, aperture_amplitude() ** 2)
    assert misfit[0] > FIT_MAX_MISFIT > misfit[1]
    assert (qx[0], qy[0]) == (starts[0, 0], starts[0, 1])
    assert np.hypot(qx[1] - 58.3, qy[1] - 40.4) < 2e-3


def test_white_noise_is_not_counted_as_misfit():
    """Pixel noise of 10 % of the disk's height leaves the structured misfit small, so every fit is used,
    and over 40 noisy disks the fit lands closer than the window correlation (measured median 0.029 px
    against 0.034 px)."""
    rng = np.random.default_rng(5)
    shifts = grid_shifts(40, seed=6)
    clean = [draw(s) for s in shifts]
    pats = np.stack([c + rng.normal(0, 0.1 * c.max(), c.shape) for c in clean]).astype(np.float32)
    truth = np.add(CENTRE, shifts)
    starts = truth + 0.1
    qx, qy, misfit = refine(pats, starts, aperture_amplitude() ** 2)
    assert np.all(misfit < FIT_MAX_MISFIT)
    cx, cy, _ = refine_disks(pats, np.arange(len(pats)), starts[:, 0], starts[:, 1],
                             probe_template(aperture_amplitude() ** 2))
    fit_err = np.median(np.hypot(qx - truth[:, 0], qy - truth[:, 1]))
    assert fit_err < np.median(np.hypot(cx - truth[:, 0], cy - truth[:, 1]))


def test_empty_windows_and_missing_starts():
    pats = np.zeros((2, N, N), np.float32)
    qx, qy, misfit = refine(pats, np.array([[40.0, 40.0], [np.nan, 50.0]]), aperture_amplitude() ** 2)
    assert (qx[0], qy[0]) == (40.0, 40.0) and np.isnan(qx[1]) and np.isnan(misfit).all()


def test_find_disks_uses_it_by_default_and_old_records_replay_without_it():
    assert FindDisksParams().probe_fit is True
    old = {k: v for k, v in FindDisksParams().to_dict().items() if k != "probe_fit"}
    old["schema_version"] = 1
    assert FindDisksParams.from_dict(old).probe_fit is False


@pytest.mark.parametrize("probe_fit", [True, False])
def test_find_disks_on_moved_disks(probe_fit):
    """Through find_disks: a central disk and four sinc-moved disks; the fit brings every disk within
    0.002 px, the window correlation alone within its 0.05 px bound (tests/analysis/test_disks.py)."""
    g1, g2 = np.array([23.37, 4.61]), np.array([-5.13, 22.84])
    pat = (aperture_amplitude() ** 2).astype(np.float32)
    for s in (g1, -g1, g2, -g2):
        pat = pat + draw(s, scale=0.1)
    t = find_disks_in_patterns(pat[None], probe_template(aperture_amplitude() ** 2),
                               FindDisksParams(probe_fit=probe_fit))
    found = np.stack([t.qx, t.qy], 1)
    truth = np.add(CENTRE, [(0, 0), g1, -g1, g2, -g2])
    d = np.hypot(*(found[:, None] - truth[None]).transpose(2, 0, 1)).min(1)
    assert len(found) == 5
    assert d.max() < (2e-3 if probe_fit else 0.05)


def test_the_template_keeps_the_recorded_disk_through_pickle_and_results_files(tmp_path):
    """A cluster run pickles the template and a results file stores it: the recorded disk the fit uses
    must survive both, or a replay would fit with the synthetic disk instead."""
    import pickle

    import fourd_widgets as fw

    cube, _ = fw.datasets.sample("strained_crystal", small=True)
    t = probe_template(cube)
    assert t.recorded is not t.probe  # synthetic template: the recorded disk is the mean pattern
    back = pickle.loads(pickle.dumps(t))
    np.testing.assert_array_equal(back.recorded, t.recorded)
    assert back.recorded_center == t.recorded_center
    res = fw.run(fw.Recipe([fw.ProbeTemplateParams()]), cube)
    res.save(tmp_path / "t.results.h5")
    loaded = fw.Results.load(tmp_path / "t.results.h5")["probe_template"]
    np.testing.assert_array_equal(loaded.recorded, t.recorded)
    assert loaded.recorded_center == t.recorded_center
