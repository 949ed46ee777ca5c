"""Built-in sample data: a fast kinematic 4D-STEM simulator with ground truth, and the shared test sets.

>>> import fourd_widgets as fw
>>> cube, truth = fw.datasets.simulate(scan_shape=(2, 2), detector_shape=(32, 32), reciprocal_step=0.06)
>>> cube.shape
(2, 2, 32, 32)
>>> "strained_crystal" in fw.datasets.sample_names()
True
"""

from .crystal import PRESETS, Grain
from .scenes import sample, sample_names
from .shared import load_shared, shared_names
from .simulate import simulate
from .truth import GroundTruth

__all__ = ["simulate", "sample", "sample_names", "GroundTruth", "Grain", "PRESETS", "load_shared", "shared_names"]
