"""Widgets: anywidget views and the tools built from them (no numerics of their own).

* :class:`ImageView`: one 2-D image with colormaps, contrast, zoom, readout and overlays;
* :class:`Explorer`: diffraction and virtual-image views linked as in py4D-browser.
"""

from .explorer import Explorer
from .image_view import ImageView

__all__ = ["Explorer", "ImageView"]
