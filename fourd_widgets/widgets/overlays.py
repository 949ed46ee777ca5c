"""Overlay shapes of the image views: re-exported from :mod:`fourd_widgets.tools.overlays`.

The overlay dicts and their mapping to detector records are plain data that the
tool sessions (headless) edit too, so they live in the tools layer; views and
notebooks keep importing them from here.
"""

from ..tools.overlays import (GEOMETRY, KINDS, PALETTE, calibrated_geometry, detector_from_overlay,
                              lattice_centres, make_overlay, move_overlay, overlay_from_detector, pixel_geometry,
                              region_from_overlay, validate_overlay)

__all__ = ["KINDS", "GEOMETRY", "PALETTE", "make_overlay", "validate_overlay", "move_overlay",
           "calibrated_geometry", "pixel_geometry", "overlay_from_detector", "detector_from_overlay",
           "region_from_overlay", "lattice_centres"]
