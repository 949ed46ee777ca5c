"""One calling convention: ``fn(data, params=None, *, engine options, **overrides)``; one spelling
(``center``); one argument order (data, record, calibration). Old forms warn and give the same result."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.calibration import (EllipseParams, PixelSizeParams, QRRotationParams, center_of_mass_maps,
                                                centre_of_mass_maps, fit_ellipse, fit_ellipse_points,
                                                measure_origin, measure_pixel_size, measure_qr_rotation)
from fourd_widgets.analysis.probe import make_kernel, probe_template, synthetic_disk
from fourd_widgets.analysis.virtual import virtual_diffraction
from fourd_widgets.core import registry
from fourd_widgets.engine.run import Cancel
from fourd_widgets.errors import CancelledError, ParameterError


@pytest.fixture(scope="module")
def crystal():
    cube, truth = fw.datasets.simulate((6, 6), (64, 64), reciprocal_step=0.03, convergence_semiangle_mrad=1.5,
                                       ellipse=(1.03, 0.98, 20.0), seed=2)
    return cube, truth


@pytest.mark.parametrize("name", sorted(registry.manifest().steps))
def test_every_step_function_takes_data_then_its_record(name):
    fn = registry.resolve(registry.step(name).function)
    ps = list(inspect.signature(fn).parameters.values())
    assert ps[1].name == "params", f"{fn.__name__}: second parameter is {ps[1].name!r}"
    assert ps[-1].kind is inspect.Parameter.VAR_KEYWORD, f"{fn.__name__} takes no overrides"
    rec = registry.step(name).record_class()
    with pytest.raises(ParameterError, match=rec.__name__):
        # a record of another step is refused by name
        fn(np.zeros((2, 2)), fw.Params())


def test_fit_ellipse_and_pixel_size_old_order_warns_and_agrees(crystal):
    cube, _ = crystal
    peaks = fw.find_disks(cube, progress=False)
    cal = cube.calibration
    p = EllipseParams(r_inner=8.0, r_outer=30.0)
    new = fit_ellipse(peaks, p, cal)
    with pytest.warns(DeprecationWarning, match="fit_ellipse\\(data, calibration, params\\) is deprecated"):
        old = fit_ellipse(peaks, cal, p)
    assert (old.a, old.b, old.theta_deg) == (new.a, new.b, new.theta_deg)
    cal = cal.replace(ellipse=new.ellipse)
    q = PixelSizeParams(method="lattice", hkl1=(2, 0, 0), hkl2=(0, 2, 0))
    with pytest.warns(DeprecationWarning):
        assert measure_pixel_size(peaks, cal, q) == measure_pixel_size(peaks, q, cal)
    assert measure_pixel_size(peaks, q, calibration=cal) == measure_pixel_size(peaks, q, cal)


def test_center_spelling_everywhere_old_one_warns():
    a = synthetic_disk((32, 32), 5.0, center=(14.0, 17.0))
    with pytest.warns(DeprecationWarning, match="centre= is deprecated"):
        b = synthetic_disk((32, 32), 5.0, centre=(14.0, 17.0))
    np.testing.assert_array_equal(a, b)
    assert np.unravel_index(np.argmax(a), a.shape) == (14, 17)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(make_kernel(a, centre=(14.0, 17.0)), make_kernel(a, center=(14.0, 17.0)))
    t = probe_template(a)
    assert t.center == pytest.approx((14.0, 17.0), abs=0.01)
    with pytest.warns(DeprecationWarning, match="ProbeTemplate.centre"):
        assert t.centre == t.center
    x = 10 * np.cos(np.linspace(0, 6, 30)) + 2.0
    y = 7 * np.sin(np.linspace(0, 6, 30)) - 1.0
    f = fit_ellipse_points(x, y, fix_center=False)
    assert f.center == pytest.approx([2.0, -1.0], abs=1e-9)
    with pytest.warns(DeprecationWarning):
        g = fit_ellipse_points(x, y, fix_centre=False)
    with pytest.warns(DeprecationWarning, match="EllipseFit.centre"):
        np.testing.assert_array_equal(g.centre, f.center)


def test_virtual_diffraction_positional_method_warns_and_agrees(crystal):
    cube, _ = crystal
    region = np.zeros(cube.scan_shape, bool)
    region[:2] = True
    new = virtual_diffraction(cube, method="max", region=region, progress=False)
    with pytest.warns(DeprecationWarning, match="virtual_diffraction\\(cube, method"):
        old = virtual_diffraction(cube, "max", region, progress=False)
    np.testing.assert_array_equal(old, new)
    rec = fw.VirtualDiffractionParams(method="max", region=region)
    np.testing.assert_array_equal(virtual_diffraction(cube, rec, progress=False), new)
    np.testing.assert_array_equal(new, cube.to_numpy()[:2].max(axis=(0, 1)))


def test_virtual_image_accepts_its_record(crystal):
    cube, _ = crystal
    det = fw.detectors.Circle(center=(32, 32), radius=4)
    rec = fw.VirtualImageParams(detectors=(det,))
    stack = fw.virtual_image(cube, rec, progress=False)
    assert stack.shape == (1,) + cube.scan_shape
    np.testing.assert_array_equal(stack[0], fw.virtual_image(cube, det, progress=False))
    np.testing.assert_array_equal(stack, fw.virtual_image(cube, detectors=(det,), progress=False))
    with pytest.raises(ParameterError, match="needs detectors"):
        fw.virtual_image(cube)


def test_qr_rotation_takes_a_cube_a_pair_or_the_old_two_arrays(crystal):
    cube, _ = crystal
    cx, cy = center_of_mass_maps(cube, progress=False)
    with pytest.warns(DeprecationWarning):
        ox, oy = centre_of_mass_maps(cube, progress=False)
    np.testing.assert_array_equal(cx, ox)
    pair = measure_qr_rotation((cx, cy))
    assert measure_qr_rotation(cube, progress=False).rotation_deg == pair.rotation_deg
    with pytest.warns(DeprecationWarning, match="measure_qr_rotation\\(com_x, com_y\\)"):
        assert measure_qr_rotation(cx, cy).rotation_deg == pair.rotation_deg
    manual = measure_qr_rotation(cube, QRRotationParams(method="manual", rotation_deg=12.0, flip=True))
    assert (manual.rotation_deg, manual.flip) == (12.0, True)


def test_origin_and_probe_passes_go_through_the_engine(crystal):
    cube, truth = crystal
    chunk = 2 * 6 * cube.pattern_nbytes  # three chunks of two scan rows
    seen, partial = [], []
    got = measure_origin(cube, chunk_bytes=chunk, progress=lambda d, t: seen.append((d, t)),
                         on_partial=lambda v, d, t: partial.append(np.isnan(v[..., 0]).sum()), workers=2)
    assert seen[-1] == (3, 3) and partial == [24, 12, 0]  # rows fill in as chunks finish
    # one thread or two, sync or threads: the same bits (chunks merge in order)
    np.testing.assert_array_equal(got, measure_origin(cube, chunk_bytes=chunk, scheduler="sync"))
    # the simulated beam centre is known: com origins within 0.05 px (noise-free kinematic disks)
    assert np.abs(got - truth.origin_map).max() < 0.05
    stop = Cancel()
    stop.cancel()
    with pytest.raises(CancelledError):
        measure_origin(cube, chunk_bytes=chunk, cancel=stop)
    with pytest.raises(CancelledError):
        probe_template(cube, chunk_bytes=chunk, cancel=stop)
    steps = []
    t = probe_template(cube, chunk_bytes=chunk, progress=lambda d, n: steps.append(d))
    assert steps[-1] == 3 and steps == sorted(steps)  # one pass of three chunks
    ref = probe_template(cube.to_numpy().reshape(-1, 64, 64).mean(axis=0), fw.ProbeTemplateParams())
    # the same mean summed in another order: rounding moves the measured radius by ~1e-8 px
    assert t.radius == pytest.approx(ref.radius, abs=1e-6)
