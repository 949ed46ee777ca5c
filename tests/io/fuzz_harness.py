"""The fuzz suite's machinery: damaged inputs tried in a child process with a time limit.

Each target (a reader with a small valid file, a recipe, a results file) is
damaged by hypothesis (cut short, bytes flipped anywhere or in its header) and
handed to a long-lived child (:mod:`tests.io.fuzz_worker`). An answer later than
:data:`HANG_SECONDS` counts as a hang and the child is killed; a child that dies
counts as a crash; both are replaced by a fresh child. Every input ends in one of
five bins: ``ok`` (loaded, and consistent), ``clear`` (our error, naming the
file), ``foreign`` (any other exception), ``hang``, ``crash``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

__all__ = ["HANG_SECONDS", "Target", "Worker", "Tally", "mangle", "make_targets"]

#: An input that takes longer than this is a hang (the issue's figure).
HANG_SECONDS = 10.0

_REPO = Path(__file__).resolve().parents[2]


class Worker:
    """A child running :mod:`tests.io.fuzz_worker`, restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO), *[p for p in sys.path if p]])
        return subprocess.Popen([sys.executable, "-m", "tests.io.fuzz_worker"], cwd=str(_REPO), env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)

    def ask(self, request: dict, timeout: float = HANG_SECONDS) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
            # The first import is not part of any input's time.
            warm = self._send({"kind": "recipe", "path": os.devnull}, timeout=300)
            if warm["outcome"] in ("hang", "crash"):
                raise RuntimeError(f"the fuzz worker does not start: {warm}")
        return self._send(request, timeout)

    def _send(self, request: dict, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            return {"outcome": "hang", "detail": f"no answer within {timeout:g} s"}
        line = self.proc.stdout.readline()
        if not line:
            return self._died()
        return json.loads(line)

    def _died(self) -> dict:
        assert self.proc is not None
        code = self.proc.wait()
        self.proc = None
        return {"outcome": "crash", "detail": f"the child died (exit status {code})"}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Tally:
    """Counts per outcome, with a few examples of each bad one."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: str, detail: str, what: str) -> None:
        self.counts[outcome] += 1
        if outcome in ("foreign", "hang", "crash"):
            self.examples.setdefault(outcome, [])
            if len(self.examples[outcome]) < 5:
                self.examples[outcome].append(f"{what}: {detail}")

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    @property
    def bad(self) -> int:
        return self.counts["foreign"] + self.counts["hang"] + self.counts["crash"]

    def line(self, name: str) -> str:
        c = self.counts
        return (f"{name:<14} tried {self.tried:>4}  ok {c['ok']:>4}  clear {c['clear']:>4}  "
                f"foreign {c['foreign']:>3}  hangs {c['hang']:>2}  crashes {c['crash']:>2}")


def mangle(blob: bytes, cut: float, flips: list[tuple[float, int]], header_flips: list[tuple[int, int]]) -> bytes:
    """``blob`` cut to a fraction ``cut``, with bytes replaced anywhere and in its first 4 KiB."""
    out = bytearray(blob[: int(len(blob) * cut)])
    for where, value in flips:
        if out:
            out[int(where * (len(out) - 1))] = value
    for where, value in header_flips:
        if where < len(out):
            out[where] = value
    return bytes(out)


@dataclass
class Target:
    """One input to damage: the file to damage, files copied beside it intact, how to try it."""

    name: str
    kind: str  # "load", "recipe" or "results"
    victim: Path  # the file whose bytes are damaged
    companions: tuple[Path, ...] = ()  # copied beside the damaged copy unchanged (same names)
    options: dict = field(default_factory=dict)
    store: Path | None = None  # a Zarr folder holding ``victim``: copied whole, then opened

    def materialise(self, folder: Path, blob: bytes) -> Path:
        if self.store is not None:
            dest_store = folder / self.store.name
            shutil.copytree(self.store, dest_store)
            (dest_store / self.victim.relative_to(self.store)).write_bytes(blob)
            return dest_store
        for c in self.companions:
            dest = folder / c.name
            if c.is_dir():
                shutil.copytree(c, dest, dirs_exist_ok=True)
            else:
                shutil.copy(c, dest)
        dest = folder / self.victim.name
        dest.write_bytes(blob)
        return dest


def _write_small_files(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    cube = rng.integers(0, 200, size=(3, 4, 12, 12), dtype=np.uint16)
    out = {}
    out["npy"] = folder / "s.npy"
    np.save(out["npy"], cube)
    out["h5_chunked"] = folder / "c.h5"
    with h5py.File(out["h5_chunked"], "w") as f:
        f.create_dataset("data", data=cube.astype(np.float32), chunks=(1, 2, 12, 12), compression="gzip")
        f.attrs["scan_step_A"] = 1.0
    out["h5_contiguous"] = folder / "k.h5"
    with h5py.File(out["h5_contiguous"], "w") as f:
        f["data"] = cube
        f["data"].attrs["energy_eV"] = 3e5
    import zarr

    out["zarr"] = folder / "z.zarr"
    z = zarr.open(str(out["zarr"]), mode="w", shape=cube.shape, chunks=(1, 2, 12, 12), dtype=cube.dtype)
    z[...] = cube
    z.attrs["scan_step_A"] = 1.0
    out["raw"] = folder / "r.raw"
    cube.astype(np.uint8).tofile(out["raw"])
    # Arina: the master's links and the first data file are damaged in turn.
    from ._io_helpers import write_arina

    arina = folder / "arina"
    arina.mkdir()
    out["arina_master"] = write_arina(arina, cube.reshape(12, 12, 12), per_file=6)
    out["arina_data"] = arina / "scan_data_000001.h5"
    return out


def _recipe_and_results(folder: Path) -> tuple[Path, Path]:
    import fourd_widgets as fw
    from fourd_widgets.analysis.run import run
    from fourd_widgets.analysis.virtual import VirtualImageParams
    from fourd_widgets.core.calibration import Calibration
    from fourd_widgets.core.recipe import Recipe

    recipe = Recipe((VirtualImageParams(detectors=(fw.detectors.Circle(center=(6, 6), radius=3),)),),
                    calibration=Calibration(real_step=1.0))
    rp = folder / "recipe.json"
    recipe.save(rp)
    cube = fw.DataCube(np.random.default_rng(1).poisson(3.0, size=(3, 4, 12, 12)).astype(np.uint16))
    res = run(recipe, cube, progress=False)
    resp = folder / "out.results.h5"
    res.save(resp)
    return rp, resp


def make_targets(folder: Path, shared_real: Path | None) -> list[Target]:
    """Every target of the suite; the real files only when ``shared_real`` exists."""
    small = _write_small_files(folder)
    targets = [
        Target("npy", "load", small["npy"]),
        Target("hdf5_chunked", "load", small["h5_chunked"]),
        Target("hdf5_contig", "load", small["h5_contiguous"]),
        Target("raw", "load", small["raw"], options={"shape": [3, 4, 12, 12], "dtype": "u1"}),
        Target("arina_master", "load", small["arina_master"],
               companions=tuple(p for p in small["arina_master"].parent.glob("*_data_*.h5")),
               options={"scan_width": 4}),
        Target("arina_data", "load", small["arina_data"],
               companions=tuple(p for p in small["arina_master"].parent.glob("*.h5")
                                if p.name != small["arina_data"].name), options={}),
    ]
    store = small["zarr"]
    chunk = next(p for p in sorted(store.rglob("*")) if p.is_file() and p.name != "zarr.json")
    targets += [Target("zarr_meta", "load", store / "zarr.json", store=store),
                Target("zarr_chunk", "load", chunk, store=store)]
    # The damaged data file is loaded through its (intact) master.
    targets[5].options = {"scan_width": 4, "_open": small["arina_master"].name}
    rp, resp = _recipe_and_results(folder)
    targets += [Target("recipe", "recipe", rp), Target("results", "results", resp)]
    if shared_real is not None and shared_real.is_dir():
        real = shared_real
        targets += [
            Target("mib", "load", real / "merlin_4x2x256x256_6bit.mib",
                   companions=(real / "merlin_4x2x256x256_6bit.hdr",)),
            Target("blo", "load", real / "sped_nanomegas_3x2x144x144.blo"),
            Target("py4dstem_emd", "load", real / "py4dstem_datacube_2x3x4x5.h5"),
            Target("prismatic_emd", "load", real / "prismatic_si100_4d.emd"),
            Target("hspy", "load", real / "sped_ag_cluster_mean_patterns_5x112x112.hspy",
                   options={"scan_width": 5}),
            Target("tiff", "load", real / "moo3_spot_pattern_merlin_20cm.tif"),
            Target("mrc", "load", real / "de_mrc" / "20241021_00405_movie.mrc",
                   companions=tuple(p for p in (real / "de_mrc").iterdir() if not p.name.endswith(".mrc"))),
        ]
    return targets


def try_once(worker: Worker, target: Target, blob: bytes, tally: Tally | None, what: str) -> dict:
    """Materialise and try one (damaged) input; record its outcome in ``tally``; return the answer."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        victim = target.materialise(d, blob)
        options = dict(target.options)
        opened = d / options.pop("_open") if "_open" in options else victim
        answer = worker.ask({"kind": target.kind, "path": str(opened), "options": options})
    if tally is not None:
        tally.add(answer["outcome"], answer.get("detail", ""), what)
    return answer
