"""Core data model: DataCube, Calibration, errors. Imports nothing above itself."""

from . import errors
from .calibration import Calibration, electron_wavelength_A
from .datacube import Chunk, DataCube

__all__ = ["errors", "Calibration", "electron_wavelength_A", "Chunk", "DataCube"]
