"""The one registry of analysis steps, read from the manifest files without importing any step.

Every step family ships one JSON file in ``fourd_widgets/manifest/`` (all ``*.json``
there are read, in name order), so a new analysis is registered by *adding* a file.
A file describes one family::

    {
      "family": "disks",                        # the public namespace fw.disks
      "title": "Bragg disks",
      "summary": "one line for the README",
      "exports": ["fourd_widgets.analysis.disks:find_disks", ...],   # names of fw.disks
      "top": ["find_disks", ...],               # the few also at top level (fw.find_disks)
      "steps": [{
          "name": "find_disks",                 # the record's step name, the recipe label
          "params": "fourd_widgets.analysis.disks:FindDisksParams",
          "function": "fourd_widgets.analysis.disks:find_disks",    # fn(data, params, **options)
          "run": "module:adapter",              # optional recipe adapter (see below)
          "result": "fourd_widgets.analysis.peaks:PeakTable",
          "calibration": false,                 # true: its result is the calibration of later steps
          "tunable": true,                      # true: a tool tunes it (tests check one is declared)
          "needs": [],                          # steps whose results (or calibration) it reads
          "example": {"max_num_peaks": 30},     # fields of a record the tests run (default: all defaults)
          "summary": "..."}],
      "records": {"disk_lattice": "fourd_widgets.analysis.disk_lattice:DiskLatticeParams"},
      "containers": {"peak_table": "fourd_widgets.analysis.peaks:PeakTable"},
      "tools": [{"name": "DiskTuner", "steps": ["find_disks"], "title": "...",
                 "session": "fourd_widgets.tools.disk_tuner:DiskTunerSession",
                 "view": "fourd_widgets.widgets:DiskTuner"}]
    }

Objects are named by ``"module:attribute"`` strings and imported only when used
(:func:`resolve`), so reading the registry imports nothing above ``core``: the
public API (``fw.<name>``, ``fw.<family>``), ``fw.run``, results files, the
dashboard's list of tools and the README's step table all come from it. A step's
``run`` adapter has the signature ``run(cube, params, context)``; without one,
``function(cube, params, **engine)`` runs the step. A tool file may add tools for
steps of other families (``"tools"`` only), which is how the tools layer registers
a tool for its step without editing the step's file. Containers are classes with
``to_h5(group)`` and ``from_h5(group)``.

Why JSON files read by glob: adding a step must not edit any file (one new file per
family), the registry must be readable without importing the step modules (so
``import fourd_widgets`` stays light and the registry never imports upward), and
loading must never execute code. TOML would read more kindly but needs a
dependency on Python 3.10; a Python literal read with ``ast`` would hide data in
code. ``docs/how-to-add-a-step.md`` walks through a new step with its tool.

Steps may also be registered at run time (:func:`register_step`), e.g. by a test
or a notebook; those are not in the manifest and so not in the README or the
public API.

Examples
--------
>>> s = step("find_disks")
>>> s.family, s.params
('disks', 'fourd_widgets.analysis.disks:FindDisksParams')
>>> {"calibration", "disks", "strain"} <= set(families())
True
"""

from __future__ import annotations

import re

import functools
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ParameterError

__all__ = ["MANIFEST_DIR", "Step", "Family", "ToolEntry", "Manifest", "manifest", "step", "steps", "families",
           "tools", "record_class", "record_path", "container_class", "container_tag", "resolve",
           "register_step", "exports", "run_order"]

#: Folder of the manifest files (package data).
MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifest"

_FAMILY_KEYS = {"family", "title", "summary", "exports", "top", "steps", "records", "containers", "tools"}
_STEP_KEYS = {"name", "params", "function", "run", "result", "calibration", "tunable", "summary", "needs", "example"}
_TOOL_KEYS = {"name", "steps", "session", "view", "title", "page"}


def resolve(path: str) -> Any:
    """The object a ``"package.module:attribute"`` string names (imports the module).

    >>> resolve("fourd_widgets.core.errors:ParameterError").__name__
    'ParameterError'
    """
    module, sep, attr = str(path).partition(":")
    if not sep or not module.startswith("fourd_widgets") or not attr:
        raise ParameterError(f"{path!r} is not a 'fourd_widgets.module:attribute' path")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ToolEntry:
    """A tool: headless session (tools layer) plus view (widgets layer), named by path."""

    name: str
    steps: tuple[str, ...]
    session: str
    view: str
    title: str = ""
    #: The dashboard tab's short name (and the ``<tool>`` of saved recipe names); default: ``name`` in lower case.
    page: str = ""

    def view_class(self) -> type:
        """The view class (imports the widgets layer)."""
        return resolve(self.view)

    def session_class(self) -> type:
        """The headless session class (imports the tools layer)."""
        return resolve(self.session)


@dataclass(frozen=True)
class Step:
    """One analysis step of the manifest (paths, not objects: see :func:`resolve`)."""

    name: str
    family: str
    params: str
    function: str
    result: str
    calibration: bool = False
    tunable: bool = False
    summary: str = ""
    run: str | None = None
    tool: ToolEntry | None = None
    needs: tuple[str, ...] = ()
    example: Mapping[str, Any] | None = None

    def record_class(self) -> type:
        """The parameter record class."""
        return resolve(self.params)

    def example_record(self) -> Any:
        """A record of this step: the manifest's ``example`` fields, else the defaults."""
        return self.record_class().from_dict(dict(self.example or {}))

    def runner(self) -> Callable[[Any, Any, Any], Any]:
        """``fn(cube, params, context)`` that runs this step in a recipe."""
        if self.run:
            return resolve(self.run)
        fn = resolve(self.function)
        return lambda cube, params, context: fn(cube, params, **dict(context.engine))


@dataclass(frozen=True)
class Family:
    """A step family: its public namespace ``fw.<name>``."""

    name: str
    title: str
    summary: str
    exports: Mapping[str, str]
    top: tuple[str, ...]
    steps: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Manifest:
    """Everything the manifest files declare."""

    families: Mapping[str, Family]
    steps: Mapping[str, Step]
    records: Mapping[str, str]
    containers: Mapping[str, str]
    tools: tuple[ToolEntry, ...] = field(default=())


def _fail(source: str, what: str) -> ParameterError:
    return ParameterError(f"step manifest {source}: {what}")


def _load(files: list[Path]) -> Manifest:
    fams: dict[str, Family] = {}
    raw_steps: dict[str, dict] = {}
    records: dict[str, str] = {}
    containers: dict[str, str] = {}
    tool_list: list[ToolEntry] = []
    for path in files:
        src = path.name
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise _fail(src, f"cannot be read ({exc})") from None
        unknown = set(d) - _FAMILY_KEYS
        if unknown:
            raise _fail(src, f"unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_FAMILY_KEYS))}")
        for t in d.get("tools", []):
            if set(t) - _TOOL_KEYS or not {"name", "steps", "session", "view"} <= set(t):
                raise _fail(src, f"tool {t.get('name')!r} needs name, steps, session and view (and may have title and page)")
            page = t.get("page", "")
            if page and not re.fullmatch(r"[a-z][a-z0-9_-]*", page):
                raise _fail(src, f"tool {t['name']!r}: page {page!r} must be a short lower-case name (a-z, 0-9, _ or -)")
            tool_list.append(ToolEntry(t["name"], tuple(t["steps"]), t["session"], t["view"], t.get("title", ""), page))
        for k, v in d.get("records", {}).items():
            records[k] = v
        for k, v in d.get("containers", {}).items():
            if k in containers and containers[k] != v:
                raise _fail(src, f"container {k!r} is already {containers[k]}")
            containers[k] = v
        if "family" not in d:
            continue  # a file of tools (or records) only
        name = d["family"]
        if name in fams:
            raise _fail(src, f"family {name!r} is already declared in {fams[name].source}")
        exports = {}
        for p in d.get("exports", []):
            exports[p.partition(":")[2].split(".")[-1]] = p
        steps_here = []
        for s in d.get("steps", []):
            unknown = set(s) - _STEP_KEYS
            missing = {"name", "params", "function", "result"} - set(s)
            if unknown or missing:
                raise _fail(src, f"step {s.get('name')!r}: " + (f"unknown key {sorted(unknown)[0]!r}" if unknown
                                                               else f"missing {sorted(missing)[0]!r}"))
            if s["name"] in raw_steps:
                raise _fail(src, f"step {s['name']!r} is declared twice")
            raw_steps[s["name"]] = dict(s, family=name)
            steps_here.append(s["name"])
            for key in ("params", "function"):
                exports.setdefault(s[key].partition(":")[2], s[key])
        top = tuple(d.get("top", []))
        missing = [t for t in top if t not in exports]
        if missing:
            raise _fail(src, f"top-level name {missing[0]!r} is not among the family's exports")
        fams[name] = Family(name, d.get("title", name), d.get("summary", ""), exports, top, tuple(steps_here), src)
    by_step: dict[str, ToolEntry] = {}
    for t in tool_list:
        for s in t.steps:
            if s not in raw_steps:
                raise _fail("tools", f"tool {t.name!r} tunes step {s!r}, which no manifest declares")
            by_step.setdefault(s, t)
    for n, s in raw_steps.items():
        unknown = [x for x in s.get("needs", []) if x not in raw_steps]
        if unknown:
            raise _fail(s["family"], f"step {n!r} needs {unknown[0]!r}, which no manifest declares")
    steps_out = {n: Step(name=n, family=s["family"], params=s["params"], function=s["function"], result=s["result"],
                         calibration=bool(s.get("calibration", False)), tunable=bool(s.get("tunable", False)),
                         summary=s.get("summary", ""), run=s.get("run"), tool=by_step.get(n),
                         needs=tuple(s.get("needs", [])), example=s.get("example"))
                 for n, s in raw_steps.items()}
    return Manifest(fams, steps_out, records, containers, tuple(tool_list))


@functools.lru_cache(maxsize=None)
def _cached(folder: str) -> Manifest:
    return _load(sorted(Path(folder).glob("*.json")))


def manifest(folder: str | Path | None = None) -> Manifest:
    """The manifest of ``folder`` (default :data:`MANIFEST_DIR`), read once."""
    return _cached(str(folder or MANIFEST_DIR))


# --- run-time registrations (tests, notebooks) ------------------------------------------------
_RUNTIME: dict[str, tuple[type, Callable, bool]] = {}


def register_step(params_cls: type, run: Callable[[Any, Any, Any], Any], *, calibration: bool = False) -> None:
    """Make records of ``params_cls`` runnable by ``fw.run`` in this process: ``run(cube, params, context)``.

    For steps made on the fly (tests, notebooks); a step of the package is declared
    in a manifest file instead, so it is in the public API and the README.
    """
    name = getattr(params_cls, "step", "")
    if not name:
        raise TypeError(f"{params_cls.__name__} has no step name")
    _RUNTIME[name] = (params_cls, run, calibration)


def _runtime_step(name: str) -> Step:
    cls, fn, cal = _RUNTIME[name]

    class _Runtime(Step):
        def record_class(self) -> type:
            return cls

        def runner(self) -> Callable[[Any, Any, Any], Any]:
            return fn

    where = f"{cls.__module__}:{cls.__qualname__}"
    return _Runtime(name=name, family="", params=where, function=where, result="", calibration=cal)


def steps() -> dict[str, Step]:
    """Step name -> :class:`Step`, manifest steps in declaration order (run-time ones after)."""
    out = dict(manifest().steps)
    for name in _RUNTIME:
        out[name] = _runtime_step(name)
    return out


def step(name: str) -> Step:
    """The step called ``name``; ParameterError listing the known ones otherwise."""
    if name in _RUNTIME:
        return _runtime_step(name)
    s = manifest().steps.get(name)
    if s is None:
        known = sorted(set(manifest().steps) | set(_RUNTIME))
        raise ParameterError(f"step {name!r} cannot be run: no analysis is registered for it "
                             f"(runnable steps: {', '.join(known)})", field="step")
    return s


def families() -> dict[str, Family]:
    """Family name -> :class:`Family`."""
    return dict(manifest().families)


def tools() -> tuple[ToolEntry, ...]:
    """Every declared tool (what the dashboard offers)."""
    return manifest().tools


def exports() -> dict[str, str]:
    """Top-level public name -> path, from every family's ``top``."""
    out: dict[str, str] = {}
    for fam in manifest().families.values():
        for name in fam.top:
            out[name] = fam.exports[name]
    return out


def record_path(name: str) -> str | None:
    """Path of the record class of step or nested record ``name`` (None when unknown)."""
    m = manifest()
    if name in m.steps:
        return m.steps[name].params
    return m.records.get(name)


def record_class(name: str) -> type:
    """The record class of a step or nested record name (imports its module)."""
    if name in _RUNTIME:
        return _RUNTIME[name][0]
    path = record_path(name)
    if path is None:
        raise ParameterError(f"unknown step {name!r}; known steps: {', '.join(sorted(manifest().steps))}",
                             field="step")
    return resolve(path)


def container_class(tag: str) -> type | None:
    """The class stored in results files under ``tag`` (imports its module), or None."""
    path = manifest().containers.get(tag)
    return None if path is None else resolve(path)


def container_tag(value: Any) -> str | None:
    """The container tag of ``value``'s class or a base class, without importing anything."""
    by_path = {p: t for t, p in manifest().containers.items()}
    for klass in type(value).__mro__:
        tag = by_path.get(f"{klass.__module__}:{klass.__qualname__}")
        if tag is not None:
            return tag
    return None


def run_order(names: list[str] | None = None) -> list[str]:
    """Step names (default: every manifest step) ordered so each comes after the steps it needs.

    >>> order = run_order()
    >>> order.index("find_disks") < order.index("strain_map")
    True
    """
    m = manifest()
    todo = list(m.steps) if names is None else list(names)
    done: list[str] = []

    def visit(n: str, path: tuple[str, ...]) -> None:
        if n in done:
            return
        if n in path:
            raise _fail("needs", f"steps need each other in a circle: {' -> '.join(path + (n,))}")
        for d in m.steps[n].needs:
            visit(d, path + (n,))
        done.append(n)

    for n in todo:
        visit(n, ())
    return done
