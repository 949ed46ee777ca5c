"""Elliptical amorphous-ring fits: detector ellipse, elliptic correction of a crystal, amorphous strain maps."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.calibration import distortion_matrix
from fourd_widgets.analysis.ring_fit import RingFitParams, amorphous_strain, fit_ring, fit_rings
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError

SUB = (np.arange(4) + 0.5) / 4 - 0.5  # 4x4 samples per pixel: patterns integrate over pixels


def _ring_pattern(shape, origin, to_ring, radius=35.0, width=2.5, distort_background=False):
    """A Lorentzian ring (not the fitted Gaussian) on a power-law background, pixel-integrated.

    ``to_ring`` maps detector offsets (2, n) to the frame where the ring is a circle; the
    background is distorted too when the distortion is the detector's.
    """
    i, j, si, sj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), SUB, SUB, indexing="ij")
    d = np.stack([(i + si - origin[0]).ravel(), (j + sj - origin[1]).ravel()])
    r_ring = np.linalg.norm(to_ring @ d, axis=0)
    r = r_ring if distort_background else np.linalg.norm(d, axis=0)
    v = 0.05 + 3.0 / (1 + (r / 8) ** 2) + 1.0 / (1 + ((r_ring - radius) / width) ** 2)
    return v.reshape(shape[0], shape[1], -1).mean(axis=-1)


@pytest.mark.parametrize("ratio,theta", [(1.01, 20.0), (1.03, 75.0), (1.06, 130.0), (1.10, 160.0)])
def test_detector_ellipse_is_recovered(ratio, theta):
    ell = (np.sqrt(ratio), 1 / np.sqrt(ratio), theta)
    D = distortion_matrix(ell)  # the project's convention: a circle appears as D times itself
    origin = (63.6, 64.3)
    img = _ring_pattern((128, 128), origin, np.linalg.inv(D), distort_background=True)
    fit = fit_ring(img, (64, 64), r_inner=20, r_outer=52)
    a, b, t = fit.ellipse
    assert abs((a / b) / ratio - 1) < 0.002  # the targets: 0.2 % and 0.5°
    assert abs((t - theta + 90) % 180 - 90) < 0.5
    assert np.allclose(fit.centre, origin, atol=0.02)


def test_elliptic_correction_removes_apparent_strain():
    """A crystal seen through the fitted ellipse's inverse shows < 0.05 % strain (3 % without it)."""
    ell_true = (np.sqrt(1.06), 1 / np.sqrt(1.06), 30.0)
    D = distortion_matrix(ell_true)
    img = _ring_pattern((128, 128), (64.2, 63.7), np.linalg.inv(D), distort_background=True)
    fit = fit_ring(img, (64, 64), r_inner=20, r_outer=52)
    G = np.array([[24.0, 7.0], [-5.0, 26.0]])  # lattice vectors (columns), px
    hk = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), 0).reshape(2, -1)
    seen = D @ G @ hk

    def apparent_strain(points):
        B = np.linalg.lstsq(hk.T, points.T, rcond=None)[0].T  # fitted basis
        M = B @ np.linalg.inv(G)
        w, v = np.linalg.eigh(M.T @ M)
        stretch = v @ np.diag(np.sqrt(w)) @ v.T
        stretch /= np.sqrt(np.linalg.det(stretch))  # a common scale goes into the pixel size
        return np.abs(stretch - np.eye(2)).max()

    assert apparent_strain(seen) > 0.02
    corrected = np.linalg.inv(distortion_matrix(fit.ellipse)) @ seen
    assert apparent_strain(corrected) < 5e-4


def _strained_cube():
    n, shape, radius = 6, (96, 96), 28.0
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    exx = 0.01 * ii / (n - 1)
    eyy = -0.004 * ii / (n - 1) + 0.002 * jj / (n - 1) * (ii > 0)
    exy = 0.003 * np.sin(jj) * ii / (n - 1)
    origins = 47.5 + np.random.default_rng(4).uniform(-1.5, 1.5, (n, n, 2))
    data = np.empty((n, n) + shape)
    for i in range(n):
        for j in range(n):
            F = np.eye(2) + np.array([[exx[i, j], exy[i, j]], [exy[i, j], eyy[i, j]]])
            # real space r' = F r takes a reciprocal vector g to F^-T g: the ring |g| = k0 is
            # seen at detector offsets d with |F^T d| = k0
            data[i, j] = _ring_pattern(shape, origins[i, j], F.T, radius=radius)
    return DataCube(data, Calibration(origin_map=origins)), (exx, eyy, exy)


def test_amorphous_strain_maps_match_the_known_strain():
    cube, (exx, eyy, exy) = _strained_cube()
    ref = np.zeros(exx.shape, bool)
    ref[0] = True  # the unstrained row
    p = RingFitParams(r_inner=14, r_outer=42, reference="region", reference_region=ref)
    fits = fit_rings(cube, p, progress=False)
    st = amorphous_strain(fits)
    for got, want in ((st.exx, exx), (st.eyy, eyy), (st.exy, exy)):
        assert np.abs(got - want).max() < 5e-4  # the target: 0.05 %
    assert np.allclose(fits.coefs[..., :2], cube.calibration.origin_map, atol=0.02)
    again = fit_rings(cube, RingFitParams.from_dict(p.to_dict()), progress=False, workers=1)
    np.testing.assert_array_equal(again.coefs, fits.coefs)


def test_bad_ring_fit_input_is_explained():
    img = np.ones((32, 32))
    with pytest.raises(ParameterError, match="unmasked pixels"):
        fit_ring(img, (16, 16), r_inner=5, r_outer=12, mask=np.ones((32, 32), bool))
    with pytest.raises(ParameterError, match="reference_region"):
        RingFitParams(reference="region")
    with pytest.raises(ParameterError, match="r_outer"):
        RingFitParams(r_inner=10, r_outer=5)
