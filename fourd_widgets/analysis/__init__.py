"""Analysis steps, one module per step family.

Importing this package registers every step with :mod:`.steps`, so ``fw.run``
can replay any recipe.
"""

from . import calibration, detectors, disk_lattice, strain
from .calibration import (
    EllipseParams,
    OriginFitParams,
    OriginParams,
    PixelSizeParams,
    QRRotationParams,
    fit_ellipse,
    fit_origin,
    measure_origin,
    measure_pixel_size,
    measure_qr_rotation,
    undistort_cube,
)
from .detectors import detector_mask
from .disk_lattice import snap_to_lattice
from .disks import DiskLatticeParams, FindDisksParams, PeakTable, bragg_vector_map, find_disks
from .probe import ProbeTemplateParams, probe_template
from .run import run
from .strain import StrainMap, StrainMapParams, strain_map, suggest_basis
from .virtual import VirtualDiffractionParams, VirtualImageParams, virtual_diffraction, virtual_image

__all__ = [
    "detectors", "detector_mask", "run",
    "VirtualImageParams", "VirtualDiffractionParams", "virtual_image", "virtual_diffraction",
    "ProbeTemplateParams", "probe_template", "FindDisksParams", "PeakTable", "find_disks",
    "bragg_vector_map", "calibration", "strain", "disk_lattice", "DiskLatticeParams", "snap_to_lattice",
    "OriginParams", "OriginFitParams", "EllipseParams", "PixelSizeParams", "QRRotationParams",
    "measure_origin", "fit_origin", "fit_ellipse", "measure_pixel_size", "measure_qr_rotation",
    "undistort_cube", "StrainMap", "StrainMapParams", "strain_map", "suggest_basis",
]
