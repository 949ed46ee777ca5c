"""Shared fixtures: where the shared test data live, and small synthetic cubes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI replays the same examples every run (reproducible verdicts); local runs keep
# drawing new ones, which is where new edge cases are found.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
#: ../shared/data beside the checkout (override with FOURD_SHARED_DATA).
SHARED_DATA = Path(os.environ.get("FOURD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need it skip only when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_cube_array(rng) -> np.ndarray:
    """(6, 5, 12, 10) uint16 with distinct values per position."""
    return rng.integers(0, 1000, size=(6, 5, 12, 10), dtype=np.uint16)


@pytest.fixture(scope="session")
def dask_cluster():
    """One ``LocalCluster(n_workers=2, threads_per_worker=1)`` of worker processes for the whole run.

    Every Dask test shares it (starting a cluster costs seconds), so the Dask tests
    stay cheap in CI. Created only when a test asks for it, closed at session end.
    The client is not made dask's default scheduler: later tests that compute dask
    arrays (lazy readers) must keep running them locally. Yields ``(cluster, client)``.
    """
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield cluster, client
