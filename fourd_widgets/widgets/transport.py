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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImagePayload", "encode_image", "decode_image", "WIRE_DTYPE"]

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
