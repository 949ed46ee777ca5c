"""``fourd-widgets run RECIPE DATA... --out DIR``: replay a recipe over many datasets.

One results file per input (``DIR/<name>.results.h5``), written atomically.
Inputs are opened read-only. A rerun skips inputs whose results file already
exists from the same recipe, so an interrupted batch resumes without redoing
finished work; an existing file from a *different* recipe is never
overwritten (the input is reported as failed, use ``--force``). One bad input
is reported (which file, which error) and the others go on. The exit status is
0 when every input succeeded or was already done, 1 when any failed, 2 for a
usage error (bad recipe, missing output folder's parent...).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py

from ..core.errors import FileFormatError, FourDError, ParameterError
from ..core.recipe import Recipe

__all__ = ["add_parser", "run_batch", "BatchReport", "output_paths"]

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


def _existing_recipe(path: str) -> dict | None:
    """The recipe stored in a finished results file, or None if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if "fourd_widgets_results" not in f.attrs or "recipe" not in f:
                return None
            return json.loads(f["recipe"].asstr()[()])
    except (OSError, ValueError, KeyError):
        return None


def _same_steps(stored: dict, recipe: Recipe) -> bool:
    mine = recipe.to_dict()
    return stored.get("steps") == mine["steps"] and stored.get("labels") == mine["labels"]


def _remove_stale_partials(target: str) -> None:
    # A batch killed mid-write leaves ".<name>.partial-<pid>" beside the target.
    d, base = os.path.split(os.path.abspath(target))
    for stale in glob.glob(os.path.join(glob.escape(d), f".{glob.escape(base)}.partial-*")):
        try:
            os.remove(stale)
        except OSError:
            pass


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

    os.makedirs(out_dir, exist_ok=True)
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
                _remove_stale_partials(dst)
                if os.path.exists(dst) and not force:
                    stored = _existing_recipe(dst)
                    if stored is not None and _same_steps(stored, recipe):
                        report.skipped[src] = dst
                        log(f"skipped {src}: already done ({dst})")
                        continue
                    raise FileFormatError(
                        dst, "exists and was not made by this recipe; it is left untouched.",
                        "Use --force to replace it, or another --out folder.")
                cube = load(src, **(load_options or {}))
                try:
                    results = run(recipe, cube, progress=False, **engine)
                    results.save(dst)
                finally:
                    cube.close()
                report.done[src] = dst
                log(f"done {src} -> {dst}")
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
