"""The crystal model: structure, symmetry from orix, electron structure factors, excitation errors, spots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fourd_widgets.analysis.crystal import Crystal, excitation_error, simulate_spots, zone_axis_matrix
from fourd_widgets.analysis.electron_scattering import electron_scattering_factor
from fourd_widgets.core.errors import FileFormatError, ParameterError
from fourd_widgets.datasets.crystal import Grain, orientation_matrix


def si() -> Crystal:
    return Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)], debye_waller_A2=0.0, name="Si")


def gaas() -> Crystal:
    return Crystal.from_parameters(5.653, 216, [("Ga", 0, 0, 0), ("As", .25, .25, .25)], debye_waller_A2=0.0,
                                   name="GaAs")


def _hkl_set(refl):
    return {tuple(h) for h in refl.hkl.tolist()}


def test_space_group_expansion_and_symmetry_from_orix():
    c = si()
    assert len(c.numbers) == 8  # diamond: 8 atoms in the cubic cell
    assert c.point_group.name == "m-3m" and c.laue_group.name == "m-3m"
    g = gaas()
    assert sorted(g.numbers.tolist()) == [31] * 4 + [33] * 4
    assert g.point_group.name == "-43m" and g.laue_group.name == "m-3m"


def test_diamond_structure_factors_follow_the_selection_rules():
    """Diamond: F = 8 f for h+k+l = 4n, 4 f (1 -+ i) for odd, 0 for h+k+l = 4n+2 (all even)."""
    c = si()
    r = c.reflections(1.2)
    hkl = _hkl_set(r)
    assert (2, 0, 0) not in hkl and (2, 2, 2) not in hkl and (1, 0, 0) not in hkl and (2, 1, 0) not in hkl
    for h in [(1, 1, 1), (2, 2, 0), (3, 1, 1), (4, 0, 0)]:
        assert h in hkl
    a = 5.431
    for h, factor in [((1, 1, 1), 32.0), ((2, 2, 0), 64.0), ((4, 0, 0), 64.0)]:
        g = math.sqrt(sum(v * v for v in h)) / a
        F2 = float(np.abs(c.structure_factor([h])[0]) ** 2)
        assert F2 == pytest.approx(factor * float(electron_scattering_factor(14, g)) ** 2, rel=1e-9)


def test_zinc_blende_200_is_weak_but_allowed_and_debye_waller_damps():
    g = gaas()
    F2 = {h: float(np.abs(g.structure_factor([h])[0]) ** 2) for h in [(1, 1, 1), (2, 0, 0), (2, 2, 0)]}
    # F(200) = 4 (f_Ga - f_As): small next to F(220) = 4 (f_Ga + f_As)
    assert 0 < F2[(2, 0, 0)] < 0.01 * F2[(2, 2, 0)]
    hot = Crystal(g.lattice, g.numbers, g.positions, None, 1.0, 216)
    gg = math.sqrt(8) / 5.653
    ratio = float(np.abs(hot.structure_factor([(2, 2, 0)])[0]) ** 2) / F2[(2, 2, 0)]
    assert ratio == pytest.approx(math.exp(-2 * 1.0 * gg * gg / 4), rel=1e-9)  # |exp(-B g^2 / 4)|^2


@pytest.mark.parametrize("Z", [14, 31, 79])
def test_scattering_factor_meets_the_mott_bethe_limit(Z):
    """At large s = g/2 the X-ray factor vanishes: f_e -> 0.023934 Z / s^2 Å (Mott-Bethe).

    At s = 10 1/Å the X-ray factor of these atoms is below 2-3 % of Z, so 4 % tolerance."""
    s = 10.0
    assert float(electron_scattering_factor(Z, 2 * s)) == pytest.approx(0.023934 * Z / s ** 2, rel=0.04)
    # and f_e decreases monotonically with g
    g = np.linspace(0, 3, 50)
    assert np.all(np.diff(electron_scattering_factor(Z, g)) < 0)


def test_zone_axis_matrix_matches_the_built_in_simulator():
    c = si()
    for za, rot in [((0, 0, 1), 0.0), ((0, 1, 1), 10.0), ((1, 1, 1), -25.0), ((1, 2, 3), 40.0)]:
        U = zone_axis_matrix(c, za, rot)
        np.testing.assert_allclose(U, orientation_matrix(Grain.preset("Si", zone_axis=za, rotation_deg=rot)),
                                   atol=1e-12)


def test_excitation_error_is_zero_on_the_ewald_sphere():
    lam = 0.0197
    k = 1 / lam
    gx = 0.8
    gz = -k + math.sqrt(k * k - gx * gx)  # |k + g| = k
    s = excitation_error(np.array([[gx, 0.0, gz], [gx, 0.0, 0.0]]), lam)
    assert abs(s[0]) < 1e-12
    assert s[1] == pytest.approx(-lam * gx * gx / 2, rel=1e-12)


def test_spots_at_001_are_the_hk0_reflections_turned_in_plane():
    c = si()
    U = zone_axis_matrix(c, (0, 0, 1), 30.0)
    p = simulate_spots(c, U, g_max=0.8)
    assert np.all(p.hkl[:, 2] == 0)
    assert {tuple(sorted(abs(v) for v in h)) for h in p.hkl.tolist()} == {(0, 2, 2), (0, 0, 4)}
    g220 = p.g[[i for i, h in enumerate(p.hkl.tolist()) if h == [2, 2, 0]][0]]
    assert math.degrees(math.atan2(g220[1], g220[0])) == pytest.approx(45 + 30, abs=1e-9)
    assert np.linalg.norm(g220) == pytest.approx(math.sqrt(8) / 5.431, rel=1e-12)


CIF = """data_test
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
x,y+1/2,z+1/2
x+1/2,y,z+1/2
x+1/2,y+1/2,z
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Au1 Au 0 0 0 0.75
Cu1 Cu 0 0 0 0.25
"""


def test_cif_with_partial_occupancies(tmp_path):
    path = tmp_path / "aucu.cif"
    path.write_text(CIF)
    c = Crystal.from_cif(path)
    assert c.lattice == (4.0, 4.0, 4.0, 90.0, 90.0, 90.0)
    assert c.space_group == 225 and c.point_group.name == "m-3m"
    assert sorted(c.numbers.tolist()) == [29] * 4 + [79] * 4
    assert sorted(set(np.round(c.occupancies, 6).tolist())) == [0.25, 0.75]
    # a disordered fcc site: F(200) = 4 (0.75 f_Au + 0.25 f_Cu) exp(-B g^2/4)
    g = 2 / 4.0
    F = abs(Crystal.from_cif(path, debye_waller_A2=0.0).structure_factor([(2, 0, 0)])[0])
    assert F == pytest.approx(4 * (0.75 * electron_scattering_factor(79, g) + 0.25 * electron_scattering_factor(29, g)),
                              rel=1e-9)


def test_a_cif_that_does_not_parse_says_so(tmp_path):
    path = tmp_path / "bad.cif"
    path.write_text("this is not a CIF\n_cell_length_a\n")
    with pytest.raises(FileFormatError, match="CIF"):
        Crystal.from_cif(path)


def test_no_reflection_inside_the_detector_is_a_clear_error():
    with pytest.raises(ParameterError, match="detector does not reach"):
        si().reflections(0.1)


def test_from_ase():
    ase_build = pytest.importorskip("ase.build")
    atoms = ase_build.bulk("Si", "diamond", a=5.431, cubic=True)
    c = Crystal.from_ase(atoms, space_group=227)
    assert len(c.numbers) == 8 and c.lattice[0] == pytest.approx(5.431)
    ref = si()
    np.testing.assert_allclose(np.abs(c.structure_factor([(2, 2, 0), (1, 1, 1)])) ** 2 * 1.0,
                               np.abs(Crystal(ref.lattice, ref.numbers, ref.positions, None, 0.5, 227)
                                      .structure_factor([(2, 2, 0), (1, 1, 1)])) ** 2, rtol=1e-9)


def test_dict_round_trip():
    c = gaas()
    assert Crystal.from_dict(c.to_dict()) == c


def test_precession_excites_reflections_far_from_the_ewald_sphere():
    """A ZOLZ reflection at |g| = 2 1/Å sits at s = -lambda g^2 / 2 = -0.039 1/Å at 300 kV (two sigma of the
    shape function); precessing the beam by 1 deg sweeps s over +-|g| sin(1 deg) = +-0.035 1/Å, through the
    Bragg condition, so it is brighter on average."""
    c = si()
    U = zone_axis_matrix(c, (0, 0, 1))
    still = simulate_spots(c, U, g_max=2.1, min_intensity=0.0)
    prec = simulate_spots(c, U, g_max=2.1, min_intensity=0.0, precession_angle_deg=1.0)
    far = lambda p: {tuple(h): i for h, i in zip(p.hkl.tolist(), p.intensity) if np.linalg.norm(  # noqa: E731
        np.asarray(h) @ c.reciprocal_matrix) > 1.9}
    a, b = far(still), far(prec)
    assert a and set(a) <= set(b)
    r = c.reflections(2.2)
    F2 = {tuple(h): f for h, f in zip(r.hkl.tolist(), r.F2)}
    for h in a:  # relative to |F|^2: the shape-function factor alone
        assert b[h] / F2[h] > 1.5 * a[h] / F2[h]
    # and a vanishing angle is no precession
    tiny = simulate_spots(c, U, g_max=2.1, min_intensity=0.0, precession_angle_deg=1e-9)
    np.testing.assert_allclose(tiny.intensity, still.intensity, rtol=1e-6)
