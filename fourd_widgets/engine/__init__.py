"""``fw.engine``: run per-chunk jobs over a cube with threads or Dask, with progress and cancel.

See :class:`Job` for the protocol (with result :class:`Buffer` declarations),
:func:`run_job` / :func:`start_job` to run one pass, :func:`run_passes` for
several passes on one executor, and :func:`run_iterative` for iterative
algorithms (a loop of passes with shared state, checkpoints and resume).

Importing the engine registers the mean/max/median pattern passes behind
``DataCube.mean_pattern`` and friends (:mod:`fourd_widgets.engine.patterns`).
"""

from .checkpoint import CheckpointError
from .iterate import IterativeJob, run_iterative
from .job import Buffer, ImageJob, Job
from .patterns import mean_pattern, max_pattern, median_pattern
from .progress import in_notebook, make_progress
from .run import Cancel, JobHandle, PassRunner, process_chunk, run_job, run_passes, start_job

__all__ = ["Job", "ImageJob", "Buffer", "run_job", "run_passes", "start_job", "JobHandle", "Cancel",
           "process_chunk", "PassRunner", "make_progress", "in_notebook", "mean_pattern", "max_pattern",
           "median_pattern", "IterativeJob", "run_iterative", "CheckpointError"]
