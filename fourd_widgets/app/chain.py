"""The dashboard's chain of tools on one dataset: explore -> disks -> calibration -> strain.

Each page of the dashboard is one tool. A page whose tool needs the result of
an earlier one (the calibration tool needs the disks found on every pattern)
says so instead of opening, and a page whose inputs changed since it was built
(the disks were found again) is rebuilt. :meth:`ToolChain.recipe` is the
recipe of the whole chain as far as it got: ``fourd-widgets run`` replays it.

The chain is headless apart from the tools' own views: it is driven from tests
the same way the dashboard drives it (``chain.tool("strain")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.datacube import DataCube
from ..core.recipe import Recipe

__all__ = ["Page", "KNOWN_PAGES", "NotReady", "ToolChain", "dashboard_pages"]


class NotReady(Exception):
    """A page's tool cannot be opened yet; the message says what to do first."""


@dataclass(frozen=True)
class Page:
    """One page of the dashboard.

    Attributes
    ----------
    name : str
        Short name: tab title, and the ``<tool>`` of saved recipe names.
    help : str
        One line, in the microscopist's words, shown above the tool.
    build : callable
        ``build(chain) -> (tool, inputs)``: the tool, and the objects it was built
        from (the page is rebuilt when they are no longer the chain's current
        ones). Raises :class:`NotReady` when an earlier page has not produced
        what it needs.
    """

    name: str
    help: str
    build: Callable[["ToolChain"], tuple[Any, tuple]]


def _explorer(chain: "ToolChain") -> tuple[Any, tuple]:
    from ..widgets import Explorer

    return Explorer(chain.cube, size=chain.size), ()


def _disk_tuner(chain: "ToolChain") -> tuple[Any, tuple]:
    from ..widgets import DiskTuner

    return DiskTuner(chain.cube, size=max(160, chain.size * 2 // 3)), ()


def _peaks(chain: "ToolChain") -> Any:
    tuner = chain.tools.get("disks")
    peaks = None if tuner is None else tuner.peaks
    if peaks is None:
        raise NotReady("The calibration and strain pages use the Bragg disks of every pattern. On the "
                       "'disks' page, tune the detection on the sample patterns, then press 'run on all'; "
                       "come back here when it has finished.")
    return peaks


def _calibration_tool(chain: "ToolChain") -> tuple[Any, tuple]:
    from ..widgets import CalibrationTool

    peaks = _peaks(chain)
    return CalibrationTool(chain.cube, peaks, size=chain.size), (peaks,)


def _strain_mapper(chain: "ToolChain") -> tuple[Any, tuple]:
    from ..widgets import StrainMapper

    peaks = _peaks(chain)
    cal = chain.current("calibration")
    if cal is None:
        raise NotReady("Strain is measured from calibrated disk positions. Open the 'calibration' page "
                       "first: it measures the beam's origin at every position (and, if you ask, the "
                       "ellipse); then come back here.")
    tuner = chain.tools["disks"]
    return StrainMapper(chain.cube, peaks, cal, disks=tuner.find_params, size=chain.size), (peaks, cal)


def _generic(entry: Any) -> Callable[["ToolChain"], tuple[Any, tuple]]:
    """The page of a registered tool the dashboard knows nothing else about: its view on the cube."""
    def build(chain: "ToolChain") -> tuple[Any, tuple]:
        return entry.view_class()(chain.cube), ()

    return build


#: The four tools of the disk -> calibration -> strain chain, with what each needs from the pages before it.
KNOWN_PAGES: dict[str, Page] = {
    "Explorer": Page("explore", "Virtual images: drag the detectors on the diffraction pattern, click or draw "
                                "regions in real space.", _explorer),
    "DiskTuner": Page("disks", "Bragg disk detection: tune the template and thresholds on a few patterns, then "
                               "'run on all'.", _disk_tuner),
    "CalibrationTool": Page("calibration", "Calibration from the disks: the beam's origin at every position "
                                           "(descan), its fit, and the ellipse of the diffraction rings.",
                            _calibration_tool),
    "StrainMapper": Page("strain", "Strain map: pick g1 and g2 on the Bragg vector map, draw the reference region.",
                         _strain_mapper),
}


def _depth(name: str, steps: dict, seen: tuple[str, ...] = ()) -> int:
    """How many steps stand before ``name`` in its longest chain of needs."""
    needs = [n for n in steps[name].needs if n in steps and n not in seen] if name in steps else []
    return max((1 + _depth(n, steps, seen + (name,)) for n in needs), default=0)


def dashboard_pages() -> tuple[Page, ...]:
    """One page per tool of the registry (:func:`fourd_widgets.core.registry.tools`).

    The four tools of the disk chain come first, in the order a user takes them
    (:data:`KNOWN_PAGES`); any other registered tool follows, ordered by how deep
    its steps sit in the chain of needs, and opens its view on the cube.
    """
    from ..core import registry

    steps = registry.steps()
    order = registry.run_order()
    entries = registry.tools()
    known = [e for name in KNOWN_PAGES for e in entries if e.name == name]

    def rank(entry: Any) -> tuple[int, int]:
        own = [s for s in entry.steps if s in steps]
        return (max((_depth(s, steps) for s in own), default=0),
                min((order.index(s) for s in own if s in order), default=len(order)))

    pages = [KNOWN_PAGES[e.name] for e in known]
    for entry in sorted((e for e in entries if e.name not in KNOWN_PAGES), key=rank):
        summary = next((f.summary for f in registry.families().values()
                        if any(s in f.steps for s in entry.steps)), "")
        pages.append(Page(entry.page or entry.name.lower(), f"{entry.title or entry.name}: {summary}".rstrip(": "),
                          _generic(entry)))
    return tuple(pages)


class ToolChain:
    """The tools of the pages opened so far on one dataset.

    Parameters
    ----------
    cube : DataCube
    size : int
        Canvas width of the tools' views, in CSS pixels.
    pages : sequence of Page
        Default: :func:`dashboard_pages`, one per registered tool.
    """

    def __init__(self, cube: DataCube, *, size: int = 360, pages: tuple[Page, ...] | None = None) -> None:
        self.cube = cube
        self.size = int(size)
        self.pages = {p.name: p for p in (dashboard_pages() if pages is None else pages)}
        self.tools: dict[str, Any] = {}
        self._inputs: dict[str, tuple] = {}

    def current(self, name: str) -> Any:
        """The tool of page ``name`` if it is built and its inputs are still current, else None."""
        tool = self.tools.get(name)
        if tool is None or not self._is_current(name):
            return None
        return tool

    def tool(self, name: str) -> Any:
        """The tool of page ``name``, built (or rebuilt, if its inputs changed) now.

        Raises
        ------
        NotReady
            If an earlier page has not produced what this one needs.
        KeyError
            If there is no such page.
        """
        page = self.pages[name]
        if name in self.tools and self._is_current(name):
            return self.tools[name]
        self._drop(name)
        tool, inputs = page.build(self)
        self.tools[name] = tool
        self._inputs[name] = inputs
        return tool

    def furthest(self) -> str | None:
        """The name of the last page (in page order) whose tool is built and current."""
        last = None
        for name in self.pages:
            if self.current(name) is not None:
                last = name
        return last

    def recipe(self) -> Recipe | None:
        """The recipe of everything tuned so far: the explorer's steps, then the furthest chain tool's.

        The chain tools' recipes already hold the steps before them (the strain
        mapper's holds the disk and calibration steps), so the furthest one is enough.
        """
        steps: list[Any] = []
        labels: list[str] = []
        calibration = self.cube.calibration
        explorer = self.current("explore")
        if explorer is not None:
            steps.extend(explorer.params.steps)
            labels.extend(explorer.params.labels)
        last = self._furthest_chain_tool()
        if last is not None:
            name, tool = last
            if name == "calibration":
                # the calibration tool's ellipse step reads the disks: put the disk step first
                own = tool.params
                chain = Recipe(steps=(self.tools["disks"].find_params, *own.steps),
                               labels=("find_disks", *own.labels), calibration=own.calibration)
            else:
                chain = tool.params
            steps.extend(chain.steps)
            labels.extend(chain.labels)
            if chain.calibration is not None:
                calibration = chain.calibration
        for name in self.pages:  # tools outside the disk chain add their own steps
            tool = self.current(name)
            if name in ("explore", "disks", "calibration", "strain") or tool is None:
                continue
            own = tool.params
            for step, label in zip(own.steps, own.labels):
                if label not in labels:
                    steps.append(step)
                    labels.append(label)
        if not steps:
            return None
        return Recipe(steps=tuple(steps), labels=tuple(labels), calibration=calibration)

    def drop_stale(self) -> list[str]:
        """Close the tools whose inputs changed since they were built; returns their page names."""
        stale = [name for name in self.tools if not self._is_current(name)]
        for name in stale:
            self._drop(name)
        return stale

    def close(self) -> None:
        """Close every tool."""
        for name in list(self.tools):
            self._drop(name)

    # --- internals -------------------------------------------------------------------------
    def _furthest_chain_tool(self) -> tuple[str, Any] | None:
        found = None
        for name in ("disks", "calibration", "strain"):
            tool = self.current(name) if name in self.pages else None
            if tool is not None:
                found = (name, tool)
        return found

    def _is_current(self, name: str) -> bool:
        inputs = self._inputs.get(name, ())
        if name == "calibration":
            return bool(inputs) and inputs[0] is self._peaks_or_none()
        if name == "strain":
            return (bool(inputs) and inputs[0] is self._peaks_or_none()
                    and inputs[1] is self.tools.get("calibration") and self._is_current("calibration"))
        return True

    def _peaks_or_none(self) -> Any:
        tuner = self.tools.get("disks")
        return None if tuner is None else tuner.peaks

    def _drop(self, name: str) -> None:
        tool = self.tools.pop(name, None)
        self._inputs.pop(name, None)
        if tool is not None:
            tool.close()
