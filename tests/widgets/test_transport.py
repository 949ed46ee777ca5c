"""The binary transport: images and point sets of every dtype, byte order and stride become float32 buffers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fourd_widgets.widgets.image_view import ImageView
from fourd_widgets.widgets.transport import WIRE_DTYPE, decode_image, decode_points, encode_image, encode_points


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


# --- point sets (peak markers) -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<i4", ">u2", "float16", "bool"])
def test_points_travel_as_float32_buffers(dtype: str) -> None:
    xy = (np.arange(8).reshape(4, 2) % 2).astype(dtype)
    wire = encode_points(xy, sizes=np.ones(4, dtype), values=np.arange(4).astype(dtype))
    assert wire["n"] == 4 and isinstance(wire["xy"], bytes) and len(wire["xy"]) == 4 * 2 * 4
    assert wire["xy"] == np.asarray(xy, dtype="<f4").tobytes()          # little-endian, C order, no JSON
    back, sizes, values = decode_points(wire)
    assert back.dtype == np.float32 and back.shape == (4, 2)
    np.testing.assert_array_equal(back, np.asarray(xy, dtype=np.float32))
    np.testing.assert_array_equal(values, np.arange(4).astype(dtype).astype(np.float32))
    assert sizes is not None and sizes.shape == (4,)


def test_points_from_a_transposed_view_keep_their_rows() -> None:
    xy = np.arange(6.0).reshape(2, 3).T                              # (3, 2), not C-contiguous
    np.testing.assert_array_equal(decode_points(encode_points(xy))[0], xy.astype(np.float32))


@pytest.mark.parametrize("empty", [np.zeros((0, 2)), [], np.zeros(0, np.int64)])
def test_empty_point_set(empty) -> None:
    wire = encode_points(empty, sizes=[], values=np.zeros(0))
    assert wire == {"n": 0, "xy": b"", "sizes": b"", "values": b""}
    xy, sizes, values = decode_points(wire)
    assert xy.shape == (0, 2) and sizes is None and values is None


@pytest.mark.parametrize("xy, extra, match", [
    (np.zeros((3, 3)), {}, r"\(N, 2\)"),
    (np.zeros(4), {}, r"\(N, 2\)"),
    (np.zeros((3, 2), complex), {}, "real"),
    (np.array([["a", "b"]]), {}, "numbers"),
    (np.zeros((3, 2)), {"sizes": np.ones(2)}, r"shape \(3,\)"),
    (np.zeros((3, 2)), {"values": 1.0}, "scalar"),
])
def test_point_sets_refuse_bad_shapes(xy, extra, match) -> None:
    with pytest.raises(ValueError, match=match):
        encode_points(xy, **extra)


def test_decode_points_checks_sizes() -> None:
    wire = encode_points(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="xy"):
        decode_points({**wire, "n": 4})


def test_marker_sets_are_binary_buffers_of_the_widget_state() -> None:
    from ipywidgets.widgets.widget import _remove_buffers

    view = ImageView(np.zeros((64, 64)))
    pts = np.random.default_rng(3).random((5000, 2)) * 64
    view.set_markers("peaks", pts, style="dot", color="#ff00ff", radius=1.5, values=np.arange(5000))
    view.set_markers("ref", np.zeros((0, 2)), style="cross")
    state, paths, buffers = _remove_buffers(view.get_state())
    assert ["markers", 0, "xy"] in paths and ["markers", 0, "values"] in paths
    assert max(len(bytes(b)) for b in buffers) == 5000 * 8             # positions as one float32 buffer
    assert len(json.dumps(state["markers"])) < 1000                     # only the style travels as JSON
    xy, sizes, values = view.marker_points("peaks")
    np.testing.assert_array_equal(xy, pts.astype(np.float32))
    assert sizes is None and values[-1] == 4999
    assert view.marker_points("ref")[0].shape == (0, 2)
    view.set_markers("peaks", pts[:10])                                   # replaced in place, order kept
    assert [m["id"] for m in view.markers] == ["peaks", "ref"] and view.markers[0]["n"] == 10
    view.remove_markers("peaks")
    assert [m["id"] for m in view.markers] == ["ref"]
    with pytest.raises(KeyError, match="ref"):
        view.marker_points("peaks")
    version = view.image_version
    view.set_markers("more", pts)
    assert view.image_version == version                                  # markers send no image


@pytest.mark.parametrize("kw, match", [({"style": "star"}, "style"), ({"colormap": "jet"}, "jet"),
                                       ({"radius": -1}, "radius"), ({"radius": float("nan")}, "radius")])
def test_marker_options_are_checked(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        ImageView().set_markers("p", np.zeros((1, 2)), **kw)
