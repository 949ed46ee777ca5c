"""The shared abTEM test sets: the loader, and agreement of the simulator's geometry with them."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.datasets import Grain, load_shared, shared_names, simulate
from fourd_widgets.errors import ParameterError

pytestmark = pytest.mark.shared_data


def test_load_shared_reads_data_calibration_and_truth(shared_data):
    cube, truth = load_shared("si_001_unstrained", root=shared_data)
    assert cube.shape == (16, 16, 128, 128) and cube.dtype == np.float32 and cube.in_memory
    cal = cube.calibration
    assert cal.reciprocal_step == 0.015625 and cal.real_step == 1.0 and cal.energy_eV == 300e3
    assert cal.convergence_semiangle_mrad == 2.5 and cal.origin == (64.0, 64.0)
    assert truth["vacuum_probe"].shape == (128, 128) and truth["scan_positions_A"].shape == (16, 16, 2)
    np.testing.assert_allclose(truth["g1_invA"], [2 / 5.431, 2 / 5.431])
    assert cube.metadata["shared_name"] == "si_001_unstrained"
    assert "si_001_unstrained" in shared_names(shared_data)
    _, poly = load_shared("si_polycrystal_4zones.h5", root=shared_data)
    assert poly["grain_id"].shape == (16, 16) and poly["orientation_matrices"].shape == (4, 3, 3)


def test_load_shared_unknown_name(shared_data):
    with pytest.raises(ParameterError) as err:
        load_shared("no_such_set", root=shared_data)
    assert "si_001_unstrained" in str(err.value)


def _si_like_shared(cube, **kw):
    cal = cube.calibration
    return simulate((1, 1), cube.detector_shape, reciprocal_step=cal.reciprocal_step, energy_eV=cal.energy_eV,
                    convergence_semiangle_mrad=cal.convergence_semiangle_mrad, origin=cal.origin, **kw)


@pytest.mark.parametrize("name, F", [("si_001_unstrained", np.eye(2)), ("si_001_exx_1pct", np.diag([1.01, 1.0]))])
def test_si_001_disk_positions_agree_with_abtem_truth(shared_data, name, F):
    ref, truth = load_shared(name, root=shared_data)
    cube, sim = _si_like_shared(ref, grains=[Grain.preset("Si", thickness_A=27.155)], strain=F)
    np.testing.assert_allclose(sim.g1_invA[0, 0], truth["g1_invA"], rtol=1e-9)
    np.testing.assert_allclose(sim.g2_invA[0, 0], truth["g2_invA"], rtol=1e-9)
    g1_px = np.asarray(ref.metadata["g1_px"]) if name == "si_001_unstrained" else truth["g1_invA"] / 0.015625
    np.testing.assert_allclose(sim.g1_px[0, 0], g1_px, rtol=1e-9)
    # the README's 8.1 px disk radius for 2.5 mrad at this sampling
    assert sim.disk_radius_px == pytest.approx(ref.calibration.convergence_semiangle_px, rel=1e-9)
    assert sim.disk_radius_px == pytest.approx(8.1, abs=0.05)
    # rendered disk centres (intensity centroids) sit at origin + n1 g1 + n2 g2 of the file's truth
    p = cube.pattern(0, 0).astype(np.float64)
    i, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    o = np.array(ref.calibration.origin)
    g1, g2 = truth["g1_invA"] / 0.015625, truth["g2_invA"] / 0.015625
    for n1, n2 in [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (1, -1)]:
        c = o + n1 * g1 + n2 * g2
        w = p * ((i - c[0]) ** 2 + (j - c[1]) ** 2 <= (sim.disk_radius_px + 3) ** 2)
        cx, cy = (w * i).sum() / w.sum(), (w * j).sum() / w.sum()
        # our disks are uniform, so their centroid is the geometric centre (to ~1e-4 px, see
        # test_simulate); the abTEM truth is geometric too. 0.005 px is 10x under the later 0.05 px tests.
        assert np.hypot(cx - c[0], cy - c[1]) < 5e-3


def test_orientation_convention_matches_shared_polycrystal(shared_data):
    _, truth = load_shared("si_polycrystal_4zones", root=shared_data)
    zones, xdirs, rots = truth["grain_zone_axes"], truth["grain_x_directions"], truth["grain_inplane_rotation_deg"]
    grains = [Grain.preset("Si", zone_axis=tuple(z), x_direction=tuple(x), rotation_deg=float(r))
              for z, x, r in zip(zones, xdirs, rots)]
    _, sim = simulate((2, 2), (32, 32), reciprocal_step=0.06, grains=grains, grain_map=np.array([[0, 1], [2, 3]]))
    np.testing.assert_allclose(sim.orientation_matrices, truth["orientation_matrices"], atol=1e-12)
    # the default in-plane reference (crystal a projected) agrees for the zones where a is in the plane
    default = [Grain.preset("Si", zone_axis=tuple(z), rotation_deg=float(r)) for z, r in zip(zones, rots)]
    _, sim2 = simulate((2, 2), (32, 32), reciprocal_step=0.06, grains=default, grain_map=np.array([[0, 1], [2, 3]]))
    for k in (0, 1, 3):
        np.testing.assert_allclose(sim2.orientation_matrices[k], truth["orientation_matrices"][k], atol=1e-12)
