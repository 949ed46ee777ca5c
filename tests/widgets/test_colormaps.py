"""Colormaps, display scaling and the Python-side PNG rendering."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from fourd_widgets.widgets import colormaps as cm


@pytest.mark.parametrize("name", sorted(cm.COLORMAPS))
def test_luts_have_256_entries(name: str) -> None:
    lut = cm.lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert len(cm.all_luts()[name]) == 768


def test_cyclic_wraps_and_diverging_is_light_in_the_middle() -> None:
    assert (cm.lut("cyclic")[0] == cm.lut("cyclic")[-1]).all()
    mid = cm.lut("rdbu")[128].astype(int)
    assert mid.min() > 230 and cm.lut("rdbu")[0, 2] > cm.lut("rdbu")[0, 0]


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="viridis"):
        cm.lut("jet")
    with pytest.raises(ValueError, match="sqrt"):
        cm.scale_values(np.zeros(2), 0, 1, "cube")


@pytest.mark.parametrize("scale", cm.SCALINGS)
def test_scalings_are_monotonic_and_clipped(scale: str) -> None:
    x = np.linspace(-1, 3, 50)
    s = cm.scale_values(x, 0.0, 2.0, scale, gamma=2.0)
    assert s.min() == 0.0 and s.max() == 1.0 and np.all(np.diff(s) >= 0)


def test_zero_span_and_nan() -> None:
    s = cm.scale_values(np.array([0.0, 1.0, np.nan]), 1.0, 1.0)
    assert s[0] == 0 and s[1] == 0 and np.isnan(s[2])


def test_percentile_limits_nearest_rank_and_empty() -> None:
    x = np.arange(101, dtype=float)
    x[5] = np.nan
    assert cm.percentile_limits(np.arange(101.0), 10, 90) == (10.0, 90.0)
    assert cm.percentile_limits(np.full(3, np.nan), 1, 99) == (0.0, 1.0)


def test_png_bytes_decode() -> None:
    rgba = cm.to_rgba(np.array([[0.0, np.nan], [1.0, 0.5]]), 0, 1, "gray")
    assert rgba[1, 0, :3].tolist() == [255, 255, 255] and rgba[0, 1, 3] == 0
    png = cm.png_bytes(rgba)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    idat = png.index(b"IDAT")
    n = int.from_bytes(png[idat - 4:idat], "big")
    raw = zlib.decompress(png[idat + 4:idat + 4 + n])
    assert raw == b"\0" + rgba[0].tobytes() + b"\0" + rgba[1].tobytes()
