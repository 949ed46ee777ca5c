"""Widgets: anywidget views and the tool views built from them (no numerics of their own).

Each tool is a thin view over a headless session of :mod:`fourd_widgets.tools`
(``tool.session``): the view lays out controls and image views only.

* :class:`ImageView`: one 2-D image with colormaps, contrast, zoom, readout and overlays;
* :class:`Explorer`: diffraction and virtual-image views linked as in py4D-browser;
* :class:`CalibrationTool`: origin maps with fit and residuals, the ellipse on the Bragg vector map;
* :class:`DiskTuner`: probe template and disk thresholds tuned live on a strip of patterns, run on all;
* :class:`StrainMapper`: g1/g2 picked on the Bragg vector map, strain maps, reference region.
"""

from .calibration_tool import CalibrationTool
from .disk_tuner import DiskTuner
from .explorer import Explorer
from .image_view import ImageView
from .strain_mapper import StrainMapper

__all__ = ["CalibrationTool", "DiskTuner", "Explorer", "ImageView", "StrainMapper"]
