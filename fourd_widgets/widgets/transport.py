"""Binary transport of 2-D images to the browser.

Only 2-D images travel to the front end, as the raw bytes of a float32,
C-order, little-endian array, with their dtype and shape beside them. The
front end wraps the bytes in a ``Float32Array`` without parsing anything.

Examples
--------
>>> import numpy as np
>>> payload = encode_image(np.arange(6, dtype=">u2").reshape(2, 3)[:, ::2])
>>> payload.shape, payload.dtype, len(payload.data)
((2, 2), '<f4', 16)
>>> decode_image(payload.data, payload.shape).tolist()
[[0.0, 2.0], [3.0, 5.0]]

Point sets (peak markers) travel the same way: one ``(N, 2)`` float32 buffer
of positions and optional ``(N,)`` buffers of sizes and values.

>>> wire = encode_points([[1, 2], [3, 4]], sizes=[5, 6])
>>> wire["n"], len(wire["xy"]), len(wire["sizes"]), wire["values"]
(2, 16, 8, b'')
>>> decode_points(wire)[0].tolist()
[[1.0, 2.0], [3.0, 4.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["ImagePayload", "encode_image", "decode_image", "encode_points", "decode_points", "WIRE_DTYPE"]

#: The one dtype images travel as: little-endian float32.
WIRE_DTYPE = "<f4"


@dataclass(frozen=True)
class ImagePayload:
    """What one image costs on the wire.

    Attributes
    ----------
    data : bytes
        ``shape[0] * shape[1] * 4`` bytes of little-endian float32, C order.
    shape : (int, int)
        Rows (first array axis) and columns.
    dtype : str
        Always :data:`WIRE_DTYPE`.
    """

    data: bytes
    shape: tuple[int, int]
    dtype: str = WIRE_DTYPE


def encode_image(image: np.ndarray) -> ImagePayload:
    """Cast a 2-D real array to little-endian float32 C-order bytes.

    Parameters
    ----------
    image : (M, N) array_like
        Any real or boolean dtype, any byte order, any strides. Complex input
        is refused (send ``abs`` or ``angle`` instead).

    Returns
    -------
    ImagePayload

    Raises
    ------
    ValueError
        If the array is not 2-D or is complex.
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"an image view shows 2-D arrays; got {a.ndim}-D with shape {a.shape}")
    if a.dtype.kind == "c":
        raise ValueError("complex images cannot be shown directly; pass np.abs(x) or np.angle(x)")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"an image view needs numbers; got dtype {a.dtype}")
    wire = np.ascontiguousarray(a, dtype=np.dtype(WIRE_DTYPE))
    return ImagePayload(wire.tobytes(), (int(a.shape[0]), int(a.shape[1])))


def decode_image(data: bytes | memoryview, shape: tuple[int, int] | list[int]) -> np.ndarray:
    """Inverse of :func:`encode_image` (a read-only native float32 view).

    Raises
    ------
    ValueError
        If the byte count does not match ``shape``.
    """
    rows, cols = (int(n) for n in shape)
    buf = bytes(data)
    if len(buf) != rows * cols * 4:
        raise ValueError(f"{len(buf)} bytes do not hold a float32 image of shape ({rows}, {cols})")
    return np.frombuffer(buf, dtype=np.dtype(WIRE_DTYPE)).reshape(rows, cols).astype(np.float32, copy=False)


def _real(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype.kind == "c":
        raise ValueError(f"marker {what} must be real, got complex values")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"marker {what} must be numbers; got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.dtype(WIRE_DTYPE))


def encode_points(xy: Any, sizes: Any = None, values: Any = None) -> dict[str, Any]:
    """A point set as the browser gets it: raw float32 buffers, never a JSON list of numbers.

    Parameters
    ----------
    xy : (N, 2) array_like
        Positions ``(x, y)`` in image pixels (x the first array axis). N may be 0.
        Non-finite rows are sent as they are; the browser skips them.
    sizes, values : (N,) array_like, optional
        Per-point radius (image pixels) and a value the browser colours by.

    Returns
    -------
    dict
        ``{"n": N, "xy": bytes (8 N), "sizes": bytes (4 N or empty), "values": bytes (4 N or empty)}``.

    Raises
    ------
    ValueError
        If a shape does not match or a dtype is not real.
    """
    a = np.asarray(xy)
    if a.size == 0:
        a = a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"marker positions must be an (N, 2) array of (x, y); got shape {a.shape}")
    n = int(a.shape[0])
    out: dict[str, Any] = {"n": n, "xy": _real(a, "positions").tobytes()}
    for name, extra in (("sizes", sizes), ("values", values)):
        if extra is None:
            out[name] = b""
            continue
        e = np.asarray(extra)
        if e.ndim == 0:
            raise ValueError(f"marker {name} must have one entry per point ({n}); got a scalar "
                             "(use radius= for one size)")
        if e.shape != (n,):
            raise ValueError(f"marker {name} must have shape ({n},), one per point; got {e.shape}")
        out[name] = _real(e, name).tobytes()
    return out


def decode_points(wire: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Inverse of :func:`encode_points`: ``(xy (N, 2), sizes or None, values or None)`` as float32.

    Raises
    ------
    ValueError
        If a buffer does not hold ``n`` points.
    """
    n = int(wire["n"])
    arrays: list[np.ndarray | None] = []
    for name, width in (("xy", 2), ("sizes", 1), ("values", 1)):
        buf = bytes(wire.get(name) or b"")
        if name != "xy" and not buf:
            arrays.append(None)
            continue
        if len(buf) != n * width * 4:
            raise ValueError(f"marker buffer {name!r} has {len(buf)} bytes, expected {n * width * 4} for {n} points")
        a = np.frombuffer(buf, dtype=np.dtype(WIRE_DTYPE)).astype(np.float32, copy=False)
        arrays.append(a.reshape(n, 2) if width == 2 else a)
    return arrays[0], arrays[1], arrays[2]  # type: ignore[return-value]
