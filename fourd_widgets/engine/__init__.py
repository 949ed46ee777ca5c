"""``fw.engine``: run per-chunk jobs over a cube with threads or Dask, with progress and cancel.

See :class:`Job` for the protocol and :func:`run_job` / :func:`start_job` to run one.
"""

from .job import ImageJob, Job
from .progress import in_notebook, make_progress
from .run import Cancel, JobHandle, process_chunk, run_job, start_job

__all__ = ["Job", "ImageJob", "run_job", "start_job", "JobHandle", "Cancel", "process_chunk",
           "make_progress", "in_notebook"]
