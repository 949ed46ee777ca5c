"""Reading 4D-STEM files: :func:`load` opens any supported file as a lazy DataCube.

Usage::

    import fourd_widgets as fw
    cube = fw.load("scan.mib")
    cube = fw.load("master.h5", scan_width=256)

>>> sorted(name for name, _, _ in SUPPORTED_FORMATS)[:3]
['arina', 'blo', 'dm']
"""

from ..core.datacube import set_reopener
from .info import describe
from .load import SUPPORTED_FORMATS, load

__all__ = ["load", "describe", "SUPPORTED_FORMATS"]

# Pickled cubes travel as their source record and reopen through load().
set_reopener(load)
