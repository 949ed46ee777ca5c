"""Issue 12 item 24: ``import fourd_widgets`` stays light. A guard on the modules it pulls in
(in a fresh interpreter): only the core, io and engine modules listed here, and none of the heavy
libraries (numba kernels, scipy.fft/special, h5py, dask, widgets...), which load when first used.
The registry (families, names, ``dir(fw)``) is read without importing any step module.

The import time itself is measured with ``python -X importtime -c "import fourd_widgets"`` and
reported, not asserted (no wall-clock limits in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Every fourd_widgets module ``import fourd_widgets`` may load: core, the light io modules
#: (the engine's checkpoints use io.identity and io.results) and the engine, which registers
#: DataCube's pattern passes with core on import. Adding one here is a decision, not a side effect.
ALLOWED = {
    "fourd_widgets", "fourd_widgets._version", "fourd_widgets.errors",
    "fourd_widgets.core", "fourd_widgets.core.calibration", "fourd_widgets.core.datacube",
    "fourd_widgets.core.errors", "fourd_widgets.core.params", "fourd_widgets.core.recipe",
    "fourd_widgets.core.registry",
    "fourd_widgets.engine", "fourd_widgets.engine.checkpoint", "fourd_widgets.engine.iterate",
    "fourd_widgets.engine.job", "fourd_widgets.engine.patterns", "fourd_widgets.engine.progress",
    "fourd_widgets.engine.run",
    "fourd_widgets.io", "fourd_widgets.io._common", "fourd_widgets.io.identity", "fourd_widgets.io.info",
    "fourd_widgets.io.load", "fourd_widgets.io.results", "fourd_widgets.io.stack",
}

#: Libraries that cost tens to hundreds of milliseconds each, loaded by the steps, readers
#: and views that need them.
HEAVY = ("numba", "llvmlite", "scipy", "h5py", "hdf5plugin", "dask", "distributed", "zarr", "numcodecs",
         "rsciio", "hyperspy", "tifffile", "PIL", "matplotlib", "ipywidgets", "anywidget", "traitlets",
         "IPython", "tqdm", "pandas", "sklearn", "skimage")


def _modules_after(code: str) -> list[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_pulls_in_only_the_listed_modules_and_no_heavy_library():
    loaded = _modules_after("import fourd_widgets")
    ours = {m for m in loaded if m.split(".")[0] == "fourd_widgets"}
    assert ours <= ALLOWED, sorted(ours - ALLOWED)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, heavy  # before: h5py (for io.results)


def test_the_registry_is_read_without_importing_steps_and_passes_still_work():
    loaded = _modules_after(
        "import fourd_widgets as fw, numpy as np\n"
        "names = dir(fw) + list(fw.__all__) + dir(fw.disks) + dir(fw.strain)\n"
        "assert 'find_disks' in names and 'virtual_image' in names\n"
        "from fourd_widgets.core.datacube import DataCube\n"
        # the engine registered the pattern passes with core when it was imported
        "assert DataCube(np.ones((2, 2, 3, 3))).max_pattern(progress=False).tolist() == [[1.0] * 3] * 3\n")
    steps = sorted(m for m in loaded if m.startswith(("fourd_widgets.analysis", "fourd_widgets.kernels",
                                                      "fourd_widgets.datasets", "fourd_widgets.tools",
                                                      "fourd_widgets.widgets")))
    assert not steps, steps
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_a_step_loads_on_first_use_and_not_the_others():
    loaded = _modules_after("import fourd_widgets as fw\nfw.virtual_image\n")
    assert "fourd_widgets.analysis.virtual" in loaded  # imported when first used
    for other in ("fourd_widgets.analysis.calibration", "fourd_widgets.analysis.strain",
                  "fourd_widgets.datasets.simulate", "fourd_widgets.widgets"):
        assert other not in loaded, other
