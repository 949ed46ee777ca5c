"""Compute kernels: ``@numba.njit(cache=True, nogil=True)`` functions on plain numpy arrays.

Kernels know nothing of DataCube or Calibration; the layers above pass them
arrays and numbers, and run them on scan chunks in threads (they release the
GIL). JIT results are cached on disk, so only the first use ever compiles.
One module per family, e.g. :mod:`fourd_widgets.kernels.render` draws the
simulated patterns of :mod:`fourd_widgets.datasets`.
"""
