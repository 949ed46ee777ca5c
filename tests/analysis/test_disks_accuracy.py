"""Disk centres against the ground truth of the shared abTEM Si [001] test sets.

Ground truth: the disk centres are ``origin_px + h g1 + k g2`` with the g vectors of each
file's ``ground_truth`` (1/Å, divided by ``reciprocal_sampling_invA``; per Rx row for the
gradient file, per grain for the bicrystal). g1 = (220)/a and g2 = (2-20)/a, so integer
(h, k) give the (220), (400) and (440) families; the (200)-type half-integer points are
kinematically forbidden in diamond Si and the data agree: no correlation maximum above the
ringing lies on them (checked: none kept at any position of the unstrained file). "Inside the
detector" = the whole disk (radius 8.1 px) on the detector: 13 disks, the zero beam,
4 x (220), 4 x (400), 4 x (440). Found peaks are matched to the nearest truth point; a
match farther than 2 px counts as spurious, a truth point with no match as missed.

The template is the file's ``vacuum_probe`` ('flat' kernel) and the parameters are the
defaults of :class:`FindDisksParams`.
"""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.disks import (
    FLAG_LATTICE,
    DiskLatticeParams,
    FindDisksParams,
    find_disks_in_patterns,
)
from fourd_widgets.analysis.probe import probe_template

h5py = pytest.importorskip("h5py")

FILES = ["si_001_unstrained", "si_001_exx_1pct", "si_001_exx_gradient", "si_001_rot_10deg",
         "si_001_bicrystal_10deg"]
RADIUS = 8.1
MATCH = 2.0


def load(folder, name):
    with h5py.File(folder / f"{name}.h5", "r") as f:
        data = f["data"][()]
        vac = f["vacuum_probe"][()]
        dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
        o = np.asarray(f.attrs["origin_px"], float)
        gt = f["ground_truth"]
        Rx, Ry = data.shape[:2]
        lat = np.empty((Rx, Ry), dtype=object)
        keep = np.ones((Rx, Ry), bool)
        for i in range(Rx):
            for j in range(Ry):
                if "g1_invA_per_row" in gt:
                    g = [(gt["g1_invA_per_row"][i], gt["g2_invA_per_row"][i])]
                elif "g1_invA_grainA" in gt.attrs:
                    fb = gt["fraction_probe_on_grainB"][i, j]
                    # mixed positions hold two overlapping lattices; use the nearly pure ones
                    keep[i, j] = fb < 0.05 or fb > 0.95
                    s = "grainA" if fb < 0.5 else "grainB"
                    g = [(gt.attrs[f"g1_invA_{s}"], gt.attrs[f"g2_invA_{s}"])]
                else:
                    g = [(gt.attrs["g1_invA"], gt.attrs["g2_invA"])]
                pts = []
                for g1, g2 in g:
                    for h in range(-4, 5):
                        for k in range(-4, 5):
                            q = o + (h * np.asarray(g1) + k * np.asarray(g2)) / dk
                            if (q >= RADIUS).all() and (q <= data.shape[-1] - 1 - RADIUS).all():
                                pts.append(q)
                lat[i, j] = np.array(pts)
    return data, vac, lat, keep


def nearest_truth(table, lat, keep):
    """Per kept position (flat (N,) or (Rx, Ry) table): truth points, and each found disk's
    distance to the nearest one and its index."""
    for p, (i, j) in enumerate(np.ndindex(lat.shape)):
        if not keep[i, j]:
            continue
        a = table.at(*np.unravel_index(p, table.scan_shape))
        q = np.stack([a["qx"], a["qy"]], 1)
        d = np.hypot(*(q[:, None] - lat[i, j][None]).transpose(2, 0, 1)).reshape(len(q), -1)
        yield lat[i, j], d.min(1, initial=np.inf), d.argmin(1) if len(q) else np.zeros(0, int)


def score(table, lat, keep):
    errs, missed, spurious = [], 0, 0
    for truth, nn, which in nearest_truth(table, lat, keep):
        if len(nn) == 0:
            missed += len(truth)
            continue
        spurious += int((nn > MATCH).sum())
        missed += len(truth) - len(set(which[nn <= MATCH]))
        errs.extend(nn[nn <= MATCH])
    return np.asarray(errs), missed, spurious


@pytest.fixture(scope="module", params=FILES)
def dataset(request, shared_data):
    return (request.param,) + load(shared_data, request.param)


def test_clean(dataset):
    # Target of the issue: median <= 0.05 px, none missed, none spurious, at the defaults
    # (subpixel='disk': each disk correlated on its own with the probe, then the probe fit). Measured
    # 0.010-0.014 px on the single-crystal files (p95 <= 0.033; 0.014-0.018 px and 0.04 without the probe
    # fit) and 0.048 on the bicrystal (0.047 without), whose kept positions still hold 1.7-4.5 % of the
    # other grain (rotated disks overlapping; the fit passes over most of those disks).
    name, data, vac, lat, keep = dataset
    t = find_disks_in_patterns(data.reshape((-1,) + data.shape[2:]), probe_template(vac), FindDisksParams())
    errs, missed, spurious = score(t, lat, keep)
    print(f"{name}: clean median {np.median(errs):.4f} px p95 {np.percentile(errs, 95):.4f} "
          f"missed {missed} spurious {spurious}")
    assert missed == 0 and spurious == 0
    assert np.median(errs) <= 0.05
    if name != "si_001_bicrystal_10deg":
        assert np.median(errs) <= 0.03 and np.percentile(errs, 95) <= 0.06


def test_whole_pattern_bias_is_what_disk_refinement_removes(dataset):
    # subpixel='dft' on the whole-pattern correlation: 0.13-0.17 px, pulled towards the zero beam
    # by the dynamical intensity inside each disk (../shared/data/README.md).
    _, data, vac, lat, keep = dataset
    t = find_disks_in_patterns(data.reshape((-1,) + data.shape[2:]), probe_template(vac),
                               FindDisksParams(subpixel="dft"))
    assert np.median(score(t, lat, keep)[0]) > 0.1


def noisy_table(data, vac, lattice=None):
    """Peaks of the data with Poisson noise at 2000 e/probe (seeded), matched-filter settings.

    Without ``lattice`` a flat (Rx * Ry,) table of free estimates; with it, an (Rx, Ry) table
    (the scan grid the lattice constraint's neighbourhood needs) of lattice-snapped disks.
    """
    counts = np.random.default_rng(7).poisson(data.astype(np.float64) * 2000).astype(np.float32)
    # With the 'flat' kernel (unit sum) a disk of N electrons correlates to about N / (pi r^2);
    # threshold: 5 electrons in a disk; everything else at the defaults.
    tmpl = probe_template(vac)
    p = FindDisksParams(min_absolute_intensity=5 / (np.pi * tmpl.radius ** 2), lattice=lattice)
    return find_disks_in_patterns(counts if lattice else counts.reshape((-1,) + data.shape[2:]), tmpl, p)


def test_noisy(dataset):
    # Issue target: median <= 0.3 px and no spurious disk at 2000 e/probe. NOT reached; the
    # counting statistics put it at or below the physical limit. Electrons per disk (data x 2000,
    # summed inside r = 8.1 px): zero beam 1910, (220) 11.6, (400) 4.0, (440) 1.0. The
    # Cramer-Rao bound for a disk centre, computed with the actual (220) disk of these files
    # (its edge is blurred and its intensity not uniform), is 0.31-0.41 px per axis, i.e. a
    # median distance of 0.37-0.49 px for an unbiased estimator (0.51-0.61 px per axis for the
    # (400)); with the zero beams (~0.05 px) making up a quarter of the found disks, even a
    # bound-achieving estimator would give a median over all found disks of about 0.33-0.4 px.
    # "Spurious" here are mostly (220) and (400) disks with 6-13 electrons found 2-6 px off
    # (farther than MATCH), not noise maxima. Measured at the defaults: median 0.56-0.60 px on
    # the single crystals and 0.71 on the bicrystal (mixed positions), zero beam 0.07 px,
    # 0.86-0.93 spurious per pattern (bicrystal 1.03); the whole-pattern 'dft' refinement gave
    # 0.90-0.95 px and 1.05 per pattern. (disk_corr_power=1, disk_sigma=1 trades median for
    # fewer spurious: 0.75-0.82 px, 0.58-0.68 per pattern.) The bounds leave ~10 % over the worst.
    name, data, vac, lat, keep = dataset
    t = noisy_table(data, vac)
    errs, missed, spurious = score(t, lat, keep)
    zero = np.array([np.hypot(t.at(k)["qx"][0] - 64, t.at(k)["qy"][0] - 64) for k in range(len(t.counts()))])
    print(f"{name}: noisy median {np.median(errs):.4f} px zero-beam median {np.median(zero):.4f} "
          f"missed {missed} spurious {spurious} found {len(errs)}")
    assert np.median(zero) <= 0.1
    assert np.median(errs) <= 0.8
    assert spurious <= 1.15 * keep.sum()


def family_errors(table, lat, keep):
    """Distance to the nearest truth point per reflection family ('000', '220', '400', '440')."""
    out = {}
    for truth, nn, which in nearest_truth(table, lat, keep):
        length = np.hypot(*(truth[which] - 64).T) / 16.65  # in units of |(220)| / 2
        for e, n in zip(nn, np.rint(length).astype(int)):
            out.setdefault({0: "000", 2: "220", 3: "400", 4: "440"}.get(n, str(n)), []).append(e)
    return {k: np.asarray(v) for k, v in out.items()}


def both_grains(folder, name):
    """Truth points of both grains at every position (for the bicrystal's mixed patterns)."""
    with h5py.File(folder / f"{name}.h5", "r") as f:
        dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
        o = np.asarray(f.attrs["origin_px"], float)
        n = f["data"].shape[-1]
        gt = f["ground_truth"].attrs
        pts = [o + (h * np.asarray(gt[f"g1_invA_{s}"]) + k * np.asarray(gt[f"g2_invA_{s}"])) / dk
               for s in ("grainA", "grainB") for h in range(-4, 5) for k in range(-4, 5)]
    return np.array([q for q in pts if (q >= RADIUS).all() and (q <= n - 1 - RADIUS).all()])


def test_noisy_lattice(dataset, shared_data):
    # Issue target at 2000 e/probe: median <= 0.3 px, no spurious disk. The free estimates
    # cannot reach it (test_noisy); the lattice constraint does: every found disk is
    # reported at its site of the pattern's lattice, fitted with the origin per pattern
    # (the zero beam's ~1900 electrons pin it to 0.07 px) and g1, g2 shared by a Gaussian
    # neighbourhood of scan_sigma = 1 step (the default), weighted by electrons per disk.
    # Measured (median / p95 over all matched disks, spurious, missed, found):
    #   unstrained 0.223 / 0.61, 0, 2355, 973     exx_1pct  0.200 / 0.59, 0, 2352, 976
    #   gradient   0.191 / 0.58, 0, 2336, 992     rot_10deg 0.190 / 0.51, 0, 2340, 988
    #   bicrystal (pure positions) 0.235 / 0.73, 0, 1358, 514
    # per family: zero beam 0.07, (220) 0.24-0.32, (400) 0.37-0.56 (free: (220) 0.80-1.06,
    # (400) 1.1-1.4 including the ones > 2 px off). scan_sigma = 2 gives 0.12-0.21 median
    # ((220) 0.14-0.27, (400) 0.20-0.38); scan_sigma = 0 (one fit per pattern: ~4.6 disks
    # found per pattern, nearly exactly determined) stays at 0.55-0.70 with ~0.4 spurious
    # per pattern. The snap drops the disks farther than max_distance = 2 px from their site
    # but moves the ones found 1-2 px off onto it, so it matches slightly more truth points
    # than the free estimates (missed 2355 vs 2386 on the unstrained file; both mostly the
    # (400) and (440) disks with 1-4 electrons, which the issue accepts).
    name, data, vac, lat, keep = dataset
    free = noisy_table(data, vac)
    t = noisy_table(data, vac, DiskLatticeParams())
    assert t.scan_shape == data.shape[:2] and (t.flags & FLAG_LATTICE).all()
    # the snap never adds a disk: at most the free estimates' count at every position
    assert (t.counts().reshape(-1) <= free.counts()).all()
    errs, missed, spurious = score(t, lat, keep)
    fam = family_errors(t, lat, keep)
    print(f"{name}: lattice median {np.median(errs):.4f} px p95 {np.percentile(errs, 95):.4f} missed {missed} "
          f"spurious {spurious} found {len(errs)}; " + ", ".join(
              f"{k} {np.median(v):.3f} (n={len(v)})" for k, v in sorted(fam.items())))
    assert spurious == 0
    assert np.median(errs) <= 0.3  # measured 0.19-0.235: a 0.065 px margin on the worst (bicrystal)
    assert np.percentile(errs, 95) <= 0.9  # measured 0.51-0.73
    assert np.median(fam["000"]) <= 0.1 and np.median(fam["220"]) <= 0.4  # measured 0.07; 0.24-0.32
    if name == "si_001_bicrystal_10deg":
        # The mixed patterns (5-95 % of the probe on grain B, scan rows 5-11) hold two
        # overlapping lattices, which breaks the one-lattice assumption: a disk of the minor
        # grain within max_distance of a site of the fitted (majority-like) lattice is moved
        # onto it. Against the points of either grain, 7 of the 277 disks kept there end more
        # than 2 px from both (free estimates: 144 of 418); none is added.
        both = np.empty(lat.shape, dtype=object)
        points = both_grains(shared_data, name)
        for i, j in np.ndindex(lat.shape):
            both[i, j] = points
        e_mixed, _, spurious_mixed = score(t, both, ~keep)
        print(f"  mixed positions: median {np.median(e_mixed):.3f} px, {spurious_mixed} of "
              f"{len(e_mixed) + spurious_mixed} more than 2 px from both grains")
        assert spurious_mixed <= 12 and np.median(e_mixed) <= 0.3
