"""``fourd-widgets run RECIPE DATA... --out DIR``: replay a recipe over many datasets.

One results file per input (``DIR/<name>.results.h5``), written atomically.
Inputs are opened read-only. A rerun skips inputs whose results file already
exists from the same *run*: the same whole recipe (calibration included), the
same load options and the same input (path, size, modification time and a hash
of its ends; see :func:`fourd_widgets.io.identity.run_key`). So an interrupted
batch resumes without redoing finished work, and a changed recipe or input is
never answered with stale results. An existing file from another run is never
overwritten (the input is reported as failed, saying what differs; use
``--force``). One bad input is reported (which file, which error) and the
others go on. A file of partial results (``Results.partial``, a cancelled run)
is never "done": one of this same run is computed again and replaced. A batch
whose engine ``cancel`` is set stops: the input in progress saves nothing and
the inputs after it are not started (all reported as failed).

Two batches may share an ``--out`` folder: each output is worked on under its
own lock (``fcntl``), so the second waits and then finds the output done; only
partial files whose process is gone are removed. The ``--out`` folder is checked
(a folder, writable) before anything is computed.

The exit status is 0 when every input succeeded or was already done, 1 when any
failed, 2 for a usage error (bad recipe, an ``--out`` that is a file or cannot be
written...).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import h5py

from ..core.errors import CancelledError, FileFormatError, FourDError, ParameterError
from ..core.recipe import Recipe
from ..io.identity import input_identity, run_key, run_key_parts

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one batch per --out folder there
    fcntl = None  # type: ignore[assignment]

__all__ = ["add_parser", "run_batch", "BatchReport", "output_paths", "check_out_dir"]

RESULTS_SUFFIX = ".results.h5"


@dataclass
class BatchReport:
    """What a batch did: per input, the output written or the error met."""

    done: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        n = len(self.done) + len(self.skipped) + len(self.failed)
        return (f"{n} dataset{'s' if n != 1 else ''}: {len(self.done)} done, "
                f"{len(self.skipped)} skipped (already done), {len(self.failed)} failed")


def output_paths(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, str]:
    """Results file name for each input; inputs that share a name get a short hash of their path."""
    names: dict[str, list[str]] = {}
    for p in inputs:
        names.setdefault(Path(p).name, []).append(os.path.abspath(p))
    out = {}
    for p in inputs:
        base = Path(p).name
        if len(names[base]) > 1:
            tag = hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]
            base = f"{base}-{tag}"
        out[os.fspath(p)] = os.path.join(os.fspath(out_dir), base + RESULTS_SUFFIX)
    return out


def _existing_run(path: str) -> tuple[dict | None, bool]:
    """The run record (key, parts) stored in a results file (None if it has none), and
    whether the file holds partial results (a cancelled run: never "done")."""
    try:
        with h5py.File(path, "r") as f:
            if "fourd_widgets_results" not in f.attrs or "recipe" not in f:
                return None, False
            partial = bool(f.attrs.get("partial", False))
            prov = json.loads(f["provenance"].asstr()[()]) if "provenance" in f else {}
    except (OSError, ValueError, KeyError, TypeError):
        return None, False
    if not isinstance(prov, dict):
        return None, partial
    partial = partial or bool(prov.get("partial")) or "cancelled" in prov
    run = prov.get("run")
    return (run if isinstance(run, dict) else None), partial


_DIFFERS = {
    "recipe": "was not made by this recipe (its steps, parameters or calibration differ)",
    "load options": "was made with other load options",
    "input": "was made from another version of the input (its size, modification time or content differ)",
}


def _why_not_same(stored: dict | None, parts: dict[str, str], options: dict) -> str | None:
    """None when ``stored`` is the same run; else what differs, in words."""
    if stored is None:
        return ("exists and was not made by this recipe, or not by this run of it (it records no run "
                "key to compare)")
    old_parts = stored.get("parts") if isinstance(stored.get("parts"), dict) else {}
    if old_parts == parts:
        return None
    reasons = [text for name, text in _DIFFERS.items() if old_parts.get(name) != parts[name]]
    if old_parts.get("load options") != parts["load options"]:
        reasons = [r + (f" ({stored.get('load_options')} then, {options} now)" if r.startswith("was made with")
                        else "") for r in reasons]
    return "exists and " + "; it ".join(reasons)


def _identity(src: str) -> dict:
    """The input's identity; only the path for what is not a readable file or folder
    (fw.load then says what is wrong with it, and a pipe is never read here)."""
    try:
        mode = os.stat(src).st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            return input_identity(src)
    except OSError:
        pass
    return {"path": os.path.abspath(src)}


def _recipe_for_key(recipe: Recipe) -> dict:
    """The recipe as keyed: all of it (calibration included) but the version that wrote it,
    so that an upgrade alone does not make every finished output "another run"."""
    d = recipe.to_dict()
    d.pop("fourd_widgets_version", None)
    return d


_PARTIAL_PID = re.compile(r"\.partial-(\d+)")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, left by an earlier failed save in this process (we hold the lock)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    except OSError:
        return False
    return True


def _remove_stale_partials(target: str) -> None:
    # A batch killed mid-write leaves ".<name>.partial-<pid>" beside the target. Only
    # partials whose process is gone are removed: a live one is another writer's.
    d, base = os.path.split(os.path.abspath(target))
    for stale in glob.glob(os.path.join(glob.escape(d), f".{glob.escape(base)}.partial-*")):
        m = _PARTIAL_PID.search(os.path.basename(stale)[len(base) + 1:])
        if m is not None and _pid_alive(int(m.group(1))):
            continue
        try:
            os.remove(stale)
        except OSError:
            pass


@contextlib.contextmanager
def _output_lock(target: str, log: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (through ``.<name>.lock`` beside it).

    The lock file is removed by its holder before release; a waiter that then
    locks the removed file notices (its inode is no longer the path's) and
    starts again, so two holders can never overlap.
    """
    if fcntl is None:
        yield
        return
    d, base = os.path.split(os.path.abspath(target))
    lock_path = os.path.join(d, f".{base}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting: another batch is writing {target}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.remove(lock_path)
        except OSError:
            pass
        os.close(fd)


def check_out_dir(out_dir: str | os.PathLike) -> str:
    """Make sure ``out_dir`` is (or can be made) a folder this process can write in.

    Called before anything is computed, so a bad ``--out`` costs nothing.

    Parameters
    ----------
    out_dir : path

    Returns
    -------
    str
        The folder's absolute path (created if it was missing).

    Raises
    ------
    ParameterError
        If ``out_dir`` is a file, lies under a file, cannot be created, or
        cannot be written in.
    """
    out = os.path.abspath(os.fspath(out_dir))
    hint = "Choose another --out folder."
    if os.path.exists(out) and not os.path.isdir(out):
        raise ParameterError(f"--out {out} is a file, not a folder. {hint}", field="out")
    parent = out
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ParameterError(f"--out {out} cannot be made: {parent} is a file, not a folder. {hint}",
                             field="out")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"--out {out} cannot be made ({exc.strerror or exc}). {hint}", field="out") from None
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".fourd-widgets-write-test-")
    except OSError as exc:
        raise ParameterError(f"--out {out} is not writable ({exc.strerror or exc}). {hint}", field="out") from None
    os.close(fd)
    os.remove(probe)
    return out


def run_batch(
    recipe: Recipe,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    load_options: dict[str, Any] | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
    **engine: Any,
) -> BatchReport:
    """Run ``recipe`` over each input file; see the module docstring for the rules.

    Parameters
    ----------
    recipe : Recipe
    inputs : sequence of paths
    out_dir : path
        Created if missing.
    load_options : dict, optional
        Passed to :func:`fourd_widgets.load` for every input.
    force : bool
        Recompute and replace existing results files.
    log : callable
        Receives one line per input.
    **engine
        Engine options (scheduler, workers, chunk_bytes).
    """
    from ..analysis import run  # the analysis layer registers every step
    from ..io import load

    out_dir = check_out_dir(out_dir)  # before computing anything
    options = dict(load_options or {})
    report = BatchReport()
    targets = output_paths(inputs, out_dir)
    items = list(targets.items())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="datasets", unit="file", file=sys.stderr)
    try:
        for src, dst in items:
            try:
                with _output_lock(dst, log):
                    # Under the lock: no other batch writes dst, so the check, the
                    # computation and the replace cannot interleave with theirs.
                    _remove_stale_partials(dst)
                    identity = _identity(src)
                    parts = run_key_parts(_recipe_for_key(recipe), options, identity)
                    if os.path.exists(dst) and not force:
                        stored, partial = _existing_run(dst)
                        why = _why_not_same(stored, parts, options)
                        if why is None and not partial:
                            report.skipped[src] = dst
                            log(f"skipped {src}: already done ({dst})")
                            continue
                        if why is None:  # this run's own unfinished output: finish it
                            log(f"redoing {src}: {dst} holds partial results (a cancelled run)")
                        else:
                            if partial:
                                why = "holds partial results (a cancelled run); it " + why.removeprefix("exists and ")
                            raise FileFormatError(dst, f"{why}; it is left untouched.",
                                                  "Use --force to replace it, or another --out folder.")
                    cube = load(src, **options)
                    try:
                        results = run(recipe, cube, progress=False, **engine)
                    finally:
                        cube.close()
                    if results.partial:  # never saved as done (fw.run raises instead; kept as a guard)
                        raise CancelledError(f"{src}: the run gave partial results; nothing was saved")
                    results.provenance["run"] = {"key": run_key(_recipe_for_key(recipe), options, identity),
                                                 "parts": parts,
                                                 "load_options": options, "input_identity": identity}
                    results.save(dst)
                report.done[src] = dst
                log(f"done {src} -> {dst}")
            except CancelledError as exc:
                # Cancelled: this input's finished steps are not saved as its output (a
                # rerun computes it whole), and the inputs after it are not started.
                report.failed[src] = f"cancelled: {exc}"
                log(f"CANCELLED {src}: {exc}")
                for later, _dst in items[items.index((src, dst)) + 1:]:
                    report.failed[later] = "not started: the batch was cancelled"
                log(report.summary())
                return report
            except Exception as exc:  # one bad input must not stop the batch
                kind = "" if isinstance(exc, FourDError) else f"{type(exc).__name__}: "
                report.failed[src] = f"{kind}{exc}"
                log(f"FAILED {src}: {kind}{exc}")
            finally:
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    log(report.summary())
    return report


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--option takes KEY=VALUE, got {pair!r}", field="option")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string such as a dataset path
    return out


def _command(args: argparse.Namespace) -> int:
    recipe = Recipe.load(args.recipe)
    engine: dict[str, Any] = {}
    client = None
    if args.workers is not None:
        if args.workers < 1:
            raise ParameterError(f"--workers must be at least 1, got {args.workers}", field="workers")
        engine["workers"] = args.workers
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise FileFormatError(None, f"cannot reach the Dask scheduler at {args.scheduler} ({exc}).",
                                  "Check the address (tcp://host:port) and that the scheduler runs.") from None
        engine["scheduler"] = client
    try:
        report = run_batch(recipe, [os.fspath(p) for p in args.data], args.out,
                           load_options=_parse_options(args.option), force=args.force,
                           log=lambda line: print(line, flush=True), **engine)
    finally:
        if client is not None:
            client.close()
    return 0 if report.ok else 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run", help="run a saved recipe over one or many datasets, headless",
        description="Replay a recipe (JSON) over datasets; one results file per input in --out. "
                    "Finished outputs are skipped on a rerun, so an interrupted batch resumes.")
    p.add_argument("recipe", type=Path, metavar="RECIPE", help="recipe JSON file (from a widget or fw.Recipe.save)")
    p.add_argument("data", nargs="+", type=Path, metavar="DATA", help="input files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the results files")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--workers", type=int, metavar="N", help="threads for the local engine")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="option for fw.load, VALUE in JSON (e.g. -o scan_shape=[64,64]); repeatable")
    p.add_argument("--force", action="store_true", help="recompute and replace existing results files")
    p.set_defaults(func=_command)
    return p
