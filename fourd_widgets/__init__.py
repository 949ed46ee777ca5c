"""fourd_widgets: interactive 4D-STEM analysis in Jupyter.

Usage::

    import fourd_widgets as fw
    cube = fw.load("scan.h5")                                  # any supported file, lazily
    bf = fw.virtual_image(cube, fw.detectors.Circle(center=(64, 64), radius=8))
    cube, truth = fw.datasets.sample("strained_crystal")       # simulated, with ground truth
"""

from . import datasets, engine, errors
from ._version import __version__
from .analysis import (
    DiskLatticeParams,
    EllipseParams,
    FindDisksParams,
    OriginFitParams,
    OriginParams,
    PixelSizeParams,
    QRRotationParams,
    StrainMap,
    StrainMapParams,
    fit_ellipse,
    fit_origin,
    measure_origin,
    measure_pixel_size,
    measure_qr_rotation,
    strain_map,
    suggest_basis,
    undistort_cube,
    PeakTable,
    ProbeTemplateParams,
    VirtualDiffractionParams,
    VirtualImageParams,
    bragg_vector_map,
    detector_mask,
    detectors,
    find_disks,
    probe_template,
    run,
    snap_to_lattice,
    virtual_diffraction,
    virtual_image,
)
from .core import Calibration, DataCube
from .core.params import Params
from .core.recipe import Recipe
from .io import describe, load
from .io.results import Results

# Widgets load anywidget/ipywidgets; import them on first use so headless
# scripts and batch workers stay light.
_WIDGETS = {"Explorer", "ImageView", "CalibrationTool", "StrainMapper", "DiskTuner"}


def __getattr__(name: str):
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'fourd_widgets' has no attribute {name!r}")


__all__ = [
    "Explorer", "ImageView", "CalibrationTool", "StrainMapper", "DiskTuner",
    "__version__", "errors", "datasets", "engine",
    "Calibration", "DataCube", "Params", "Recipe", "Results",
    "load", "describe", "run",
    "detectors", "detector_mask", "virtual_image", "virtual_diffraction",
    "VirtualImageParams", "VirtualDiffractionParams",
    "ProbeTemplateParams", "probe_template", "FindDisksParams", "find_disks", "PeakTable",
    "bragg_vector_map", "DiskLatticeParams", "snap_to_lattice",
    "OriginParams", "OriginFitParams", "EllipseParams", "PixelSizeParams", "QRRotationParams",
    "measure_origin", "fit_origin", "fit_ellipse", "measure_pixel_size", "measure_qr_rotation",
    "undistort_cube", "StrainMap", "StrainMapParams", "strain_map", "suggest_basis",
]
