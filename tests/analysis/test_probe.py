"""Probe templates: vacuum region, vacuum image, synthetic disk; kernels; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.probe import (ProbeTemplateParams, make_kernel, measure_disk, probe_template,
                                          synthetic_disk)
from fourd_widgets.core import DataCube
from fourd_widgets.core.errors import ParameterError, ShapeError

SHAPE = (48, 48)


@pytest.mark.parametrize("r", [3.3, 6.0, 10.5])
def test_measure_disk(r):
    (cx, cy), rr = measure_disk(synthetic_disk(SHAPE, r, (22.3, 25.8), edge_width=0.5))
    # sub-pixel area interpolation: radius to ~0.1 px; centroid of a symmetric disk to ~0.01 px
    assert rr == pytest.approx(r, abs=0.12)
    assert (cx, cy) == pytest.approx((22.3, 25.8), abs=0.01)


def test_kernels_sums_and_centre():
    probe = synthetic_disk(SHAPE, 6.0, (20.5, 22.0))
    flat = make_kernel(probe, "flat")
    assert flat.sum() == pytest.approx(1.0)
    # centred at the corner: the kernel's centroid (periodic) is at (0, 0)
    sh = np.fft.fftshift(flat)
    X, Y = np.indices(SHAPE)
    assert ((X * sh).sum(), (Y * sh).sum()) == pytest.approx((24, 24), abs=0.02)
    for kind in ("gaussian", "sigmoid"):
        k = make_kernel(probe, kind)
        assert abs(k.sum()) < 1e-9 and k[0, 0] > 0 and k.min() < 0
    with pytest.raises(ParameterError, match="radii"):
        make_kernel(probe, "sigmoid", radii=(40.0, 41.0))


def test_preview_profile():
    t = probe_template(synthetic_disk(SHAPE, 6.0), kernel="sigmoid", radii=(6.0, 10.0))
    img, r, prof = t.preview()
    assert img.shape == SHAPE and prof[0] > 0 and prof[8] < 0 and prof[15] == pytest.approx(0, abs=1e-6)


def cube_with_vacuum():
    rng = np.random.default_rng(1)
    data = np.zeros((4, 5) + SHAPE, np.float32)
    vac = np.zeros((4, 5), bool)
    vac[:, :2] = True
    for i in range(4):
        for j in range(5):
            c = (24 + rng.normal(0, 0.7), 24 + rng.normal(0, 0.7))
            data[i, j] = synthetic_disk(SHAPE, 6.0, c)
            if not vac[i, j]:  # crystal: Bragg disks carry 10 % of the intensity
                data[i, j] = 0.9 * data[i, j] + 0.05 * synthetic_disk(SHAPE, 6.0, (c[0] + 14, c[1])) \
                    + 0.05 * synthetic_disk(SHAPE, 6.0, (c[0] - 14, c[1]))
    return DataCube(data), vac


def test_vacuum_region_aligned_is_sharper():
    cube, vac = cube_with_vacuum()
    aligned = probe_template(cube, ProbeTemplateParams(source="vacuum_region", region=vac))
    plain = probe_template(cube, ProbeTemplateParams(source="vacuum_region", region=vac, align=False))
    # aligning before averaging keeps the edge sharp: the mean of jittered disks is blurred
    grad = lambda a: np.abs(np.diff(a, axis=0)).max()  # noqa: E731
    assert grad(aligned.probe) > grad(plain.probe)
    assert aligned.radius == pytest.approx(6.0, abs=0.15)


def test_vacuum_region_errors():
    cube, vac = cube_with_vacuum()
    with pytest.raises(ParameterError, match="does not look like vacuum"):
        probe_template(cube, ProbeTemplateParams(source="vacuum_region", region=~vac))
    with pytest.raises(ParameterError, match="empty"):
        probe_template(cube, ProbeTemplateParams(source="vacuum_region", region=np.zeros((4, 5), bool)))
    with pytest.raises(ShapeError, match="scan shape"):
        probe_template(cube, ProbeTemplateParams(source="vacuum_region", region=np.ones((3, 3), bool)))
    with pytest.raises(ParameterError, match="region mask"):
        probe_template(cube, ProbeTemplateParams(source="vacuum_region"))


def test_vacuum_image_and_synthetic():
    cube, _ = cube_with_vacuum()
    img = synthetic_disk(SHAPE, 6.0, (23.0, 25.0))
    t = probe_template(cube, ProbeTemplateParams(source="vacuum_image", image=img))
    assert t.centre == pytest.approx((23.0, 25.0), abs=0.01)
    s = probe_template(cube)  # synthetic, radius from the mean pattern
    assert s.radius == pytest.approx(6.0, abs=0.3)  # the mean of jittered disks is a bit blurred
    assert probe_template(cube, radius=4.5).radius == 4.5
    with pytest.raises(ShapeError, match="detector"):
        probe_template(cube, ProbeTemplateParams(source="vacuum_image", image=np.ones((8, 8))))
    with pytest.raises(ParameterError, match="all zero"):
        probe_template(np.zeros(SHAPE))
    with pytest.raises(ParameterError, match="NaN"):
        probe_template(np.full(SHAPE, np.nan))


def test_params_round_trip():
    p = ProbeTemplateParams(source="vacuum_region", region=np.eye(3, dtype=bool), kernel="sigmoid",
                            radii=(4.0, 7.0))
    assert ProbeTemplateParams.from_dict(p.to_dict()) == p
    with pytest.raises(ParameterError, match="radii"):
        ProbeTemplateParams(radii=(5.0, 2.0))
