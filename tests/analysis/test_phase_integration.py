"""iDPC's mirror-boundary integration (half-size cosine/sine transforms) against its definition: the FFT
least-squares solve on the explicitly mirror-extended gradient field."""

import math

import numpy as np
import pytest

from fourd_widgets.analysis.phase_dpc import butterworth, integrate_gradient


def _mirror_fft_solution(g, step_A=1.0, h=None):
    """The definition, written out: even extension of φ (∂xφ odd across x edges, even across y edges,
    and the reverse for ∂yφ), φ̂ = (qx ĝx + qy ĝy) / (2πi |q|²) on the doubled grid, real inverse FFT,
    the scan's quarter, zero mean. ``h(|q| in 1/Å)``: an optional filter on φ̂."""
    gx, gy = g[..., 0], g[..., 1]
    ex = np.concatenate([np.concatenate([gx, gx[:, ::-1]], 1), -np.concatenate([gx, gx[:, ::-1]], 1)[::-1]], 0)
    ey = np.concatenate([np.concatenate([gy, -gy[:, ::-1]], 1), np.concatenate([gy, -gy[:, ::-1]], 1)[::-1]], 0)
    X, Y = ex.shape
    qx = np.fft.fftfreq(X)[:, None]
    qy = np.fft.rfftfreq(Y)[None, :]
    q2 = qx ** 2 + qy ** 2
    q2[0, 0] = 1.0
    spec = (qx * np.fft.rfft2(ex) + qy * np.fft.rfft2(ey)) / (2j * math.pi * q2)
    spec[0, 0] = 0.0
    if h is not None:
        spec *= h(np.sqrt(qx ** 2 + qy ** 2) / step_A)
    phi = np.fft.irfft2(spec, s=(X, Y))[: g.shape[0], : g.shape[1]]
    return phi - phi.mean()


@pytest.mark.parametrize("shape", [(64, 64), (17, 23), (6, 5), (1, 4), (3, 1)])
def test_mirror_integration_equals_the_extended_fft(shape):
    # a random field: not a gradient, so its curl-free part and the Nyquist terms all count
    g = np.random.default_rng(sum(shape)).normal(size=shape + (2,))
    want = _mirror_fft_solution(g)
    got = integrate_gradient(g, boundary="mirror")
    # the same linear map computed two ways: agreement to rounding of float64 transforms
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(np.abs(want).max(), 1.0))


def test_mirror_integration_with_filters_equals_the_extended_fft():
    g = np.random.default_rng(5).normal(size=(20, 28, 2))
    g[3, 4, 1] = np.nan  # counts as 0, as in the definition below

    def h(q):
        T = np.exp(-q ** 2)  # a stand-in probe transfer, for the Wiener step
        return butterworth(q, 0.2, 1.5, 3.0) * T / (T * T + 1e-2)

    want = _mirror_fft_solution(np.nan_to_num(g), 0.3, h)
    got = integrate_gradient(g, step_A=0.3, q_highpass=0.2, q_lowpass=1.5, order=3.0,
                             deconvolve=lambda q: np.exp(-(q ** 2).sum(-1)), epsilon=1e-2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
