"""fourd_widgets: interactive 4D-STEM analysis in Jupyter.

    import fourd_widgets as fw
    cube = fw.load("scan.h5")
    cube, truth = fw.datasets.simulate(scan_shape=(16, 16))
"""

from . import errors
from ._version import __version__
from .core import Calibration, DataCube
from .io import load
from . import datasets

__all__ = ["__version__", "errors", "Calibration", "DataCube", "load", "datasets"]
