"""PDF/RDF from Debye-equation patterns of a 3 nm Si crystal and an amorphous cluster."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from fourd_widgets.analysis.fem import radial_statistics
from fourd_widgets.analysis.pdf import PDFParams, pair_distribution
from fourd_widgets.analysis.polar import PolarParams
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.datasets.debye import (SI_LATTICE_A, amorphous_cluster, debye_intensity, debye_pattern,
                                          pair_distances, si_nanocrystal)

SI_R1 = SI_LATTICE_A * np.sqrt(3) / 4  # 2.352 Å, first neighbours of diamond-cubic Si
SI_R2 = SI_LATTICE_A / np.sqrt(2)  # 3.840 Å, second neighbours


def test_debye_structures_are_what_they_claim():
    xyz = si_nanocrystal(30.0)
    assert abs(np.linalg.norm(xyz, axis=1).max() - 15) < 1.0
    r = pair_distances(xyz)
    assert abs(r.min() - SI_R1) < 1e-9
    # diamond-cubic number density 8 / a³ = 0.0499 /Å³ inside the sphere
    assert abs(len(xyz) / (4 / 3 * np.pi * 15**3) / (8 / SI_LATTICE_A**3) - 1) < 0.1
    # for one atom, I(k) is f² (no pairs)
    k = np.array([0.5, 1.0])
    one = debye_intensity(xyz[:1], k)
    two = debye_intensity(np.array([[0, 0, 0], [2.0, 0, 0]]), k)
    # pair distances are binned to 1e-4 Å: a phase error of at most 2π k 5e-5
    np.testing.assert_allclose(two / one, 2 + 2 * np.sin(4 * np.pi * k) / (4 * np.pi * k), rtol=1e-3)


def test_si_crystal_pdf_peaks_from_the_2d_pattern():
    """Pattern on a 160 px detector (k_max 2.39 1/Å) -> polar transform -> PDF: first peaks at 2.352, 3.840 Å."""
    cube = debye_pattern(si_nanocrystal(30.0), (160, 160), 0.03)
    st = radial_statistics(cube, polar=PolarParams(q_step=1.0, n_theta=36), progress=False)
    assert st.k[-1] >= 2.0
    res = pair_distribution(st, k_min=0.2, r_max=8.0)
    first, second = res.peaks(2.0, 5.0)[:2]  # nothing in Si is closer than 2.35 Å
    assert abs(first - SI_R1) < 0.05 and abs(second - SI_R2) < 0.05


@pytest.mark.parametrize("k_max", [2.0, 2.5])
def test_si_crystal_pdf_peaks_from_the_profile(k_max):
    k = np.arange(0.02, k_max + 1e-9, 0.01)
    res = pair_distribution(debye_intensity(si_nanocrystal(30.0), k), k=k, k_min=0.2, r_max=8.0)
    first, second = res.peaks(2.0, 5.0)[:2]
    assert abs(first - SI_R1) < 0.05 and abs(second - SI_R2) < 0.05


def test_amorphous_cluster_pdf_peaks_match_its_pair_distances():
    """The reference is the cluster's own pair-distance distribution (weighted 1/r, as G is) seen
    through the same Lorch-windowed k range, i.e. convolved with that window's resolution kernel;
    its second shell is broad and split, so only the kernel fixes where a k-limited G peaks."""
    xyz = amorphous_cluster(30.0)
    k_max = 2.5
    k = np.arange(0.02, k_max + 1e-9, 0.01)
    res = pair_distribution(debye_intensity(xyz, k), k=k, k_min=0.2, r_max=8.0)
    got = res.peaks(2.0, 5.0)[:2]
    h, e = np.histogram(pair_distances(xyz), np.arange(0, 8, 0.005))
    rc = 0.5 * (e[1:] + e[:-1])
    kk = np.linspace(0, k_max, 500)
    dr = np.arange(-1.5, 1.5 + 1e-9, 0.005)
    kernel = (np.sinc(kk / k_max)[None, :] * np.cos(2 * np.pi * np.outer(dr, kk))).sum(axis=1)
    ref = np.convolve(h / rc, kernel, mode="same")
    inside = (rc > 2.0) & (rc < 5.0)
    i, _ = find_peaks(ref, prominence=0.1 * ref[inside].max())
    want = rc[i][(rc[i] > 2.0) & (rc[i] < 5.0)][:2]
    assert np.abs(got - want).max() < 0.05
    assert abs(want[0] - 2.35) < 0.1  # nearest neighbours settle near the bond length


def test_g_of_r_and_bad_input():
    k = np.arange(0.02, 2.0, 0.01)
    I = debye_intensity(si_nanocrystal(20.0), k)
    raw = pair_distribution(I, k=k, k_min=0.2, r_max=6.0, density=0.05)
    res = pair_distribution(I, k=k, k_min=0.2, r_max=6.0, density=0.05, r_cut=2.0)
    # below the first neighbour there are no pairs: without the low-k data g(r) is far from 0
    # there; corrected, it stays near 0 up to where the bond peak's resolution tail begins
    # (the Lorch kernel at k_max = 2 1/Å reaches about 0.5 Å from a peak)
    low = (res.r > 0.5) & (res.r < 1.6)
    assert np.abs(raw.g[low]).max() > 1
    assert np.abs(res.g[low]).max() < 0.2
    assert res.g[np.argmin(np.abs(res.r - SI_R1))] > 2
    assert abs(res.peaks(2.0, 5.0)[0] - SI_R1) < 0.05
    np.testing.assert_allclose(res.rdf, 4 * np.pi * res.r**2 * 0.05 * res.g)
    with pytest.raises(ParameterError, match="density"):
        PDFParams(density=0.0)
    with pytest.raises(ParameterError, match="density"):
        PDFParams(r_cut=2.0)
    with pytest.raises(ParameterError, match="outside the measured profile"):
        pair_distribution(I, k=k, k_max=3.0)
    with pytest.raises(ParameterError, match="no finite value"):
        pair_distribution(np.full_like(k, np.nan), k=k)


def test_results_round_trip_through_hdf5(tmp_path):
    import h5py

    from fourd_widgets.analysis.fem import fem_variance
    from fourd_widgets.analysis.fem_maps import FEMResult, fem
    from fourd_widgets.analysis.pdf import PDFResult

    cube = debye_pattern(si_nanocrystal(12.0), (48, 48), 0.05)
    st = radial_statistics(cube, polar=PolarParams(n_theta=12, mask=np.eye(48, dtype=bool)), progress=False)
    res = fem(st, k_ranges=((0.3, 0.6),))
    pdf = pair_distribution(st, k_min=0.2, r_max=5.0, density=0.05)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        st.to_h5(f.create_group("st"))
        res.to_h5(f.create_group("fem"))
        pdf.to_h5(f.create_group("pdf"))
    with h5py.File(tmp_path / "r.h5", "r") as f:
        st2 = type(st).from_h5(f["st"])
        res2 = FEMResult.from_h5(f["fem"])
        pdf2 = PDFResult.from_h5(f["pdf"])
    assert st2.params == st.params and st2.units == st.units and st2.symmetry is None
    np.testing.assert_array_equal(st2.annular_var, st.annular_var)
    np.testing.assert_array_equal(fem_variance(st2).V_ring, fem_variance(st).V_ring)
    np.testing.assert_array_equal(res2.variance.V_mean_of_variance, res.variance.V_mean_of_variance)
    assert res2.params == res.params
    np.testing.assert_array_equal(pdf2.g, pdf.g)
    assert pdf2.params == pdf.params


def test_the_first_argument_order_still_works_with_a_warning():
    k = np.arange(0.1, 2.5, 0.01)
    I = debye_intensity(si_nanocrystal(20.0), k)
    new = pair_distribution(I, PDFParams(k_min=0.2, r_max=5.0), k=k)
    with pytest.warns(DeprecationWarning, match="pair_distribution\\(profile, k, ...\\)"):
        old = pair_distribution(I, k, k_min=0.2, r_max=5.0)
    np.testing.assert_array_equal(old.G, new.G)
