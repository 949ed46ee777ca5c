"""What the explorer session computes on its workers, and its records' defaults.

:class:`ExplorerCompute` is the worker half of
:class:`~fourd_widgets.tools.explorer.ExplorerSession`: which cache or pass
answers a request, partial images, the drag cache build. The functions below
make the default detectors and selector and read an explorer back from a recipe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..analysis.detectors import Annulus, Circle, Detector, Point, Polygon, Rectangle
from ..analysis.interactive import DragCache, interactive_cache
from ..analysis.steps import RunContext
from ..analysis.virtual import (VirtualDiffractionParams, VirtualImageParams, virtual_diffraction_from_params,
                                virtual_image_from_params)
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .overlays import PALETTE, make_overlay, overlay_from_detector, region_from_overlay, validate_overlay

__all__ = ["ExplorerCompute", "ImageRequest", "PatternRequest", "RESPONSES", "DIFFRACTION_MODES",
           "SELECTOR_KINDS", "SELECTOR_ID", "PARTIAL_EVERY_S", "default_detectors", "default_selector",
           "new_detector", "checked_detector", "options_from_recipe", "selection_region", "clamp_point"]

RESPONSES = ("sum", "com_x", "com_y", "max")
DIFFRACTION_MODES = ("selection", "mean", "max")
SELECTOR_KINDS = ("point", "rectangle", "polygon")
SELECTOR_ID = "selector"
#: Minimum time between two partial images shown during an exact pass.
PARTIAL_EVERY_S = 0.15


@dataclass
class ImageRequest:
    """Virtual images asked of the image worker: all detectors, which changed, exact or drag."""

    detectors: tuple[Detector, ...]
    changed: tuple[int, ...]
    final: bool
    cancel: Cancel = field(default_factory=Cancel)


@dataclass
class PatternRequest:
    """The diffraction pattern asked of the pattern worker (``point``: one scan position, read directly)."""

    params: VirtualDiffractionParams
    point: tuple[int, int] | None
    cancel: Cancel = field(default_factory=Cancel)


class ExplorerCompute:
    """Worker methods of the explorer session (mixed into it; uses its state)."""

    cube: DataCube
    _cache: Any
    _records: list[Detector]

    def _compute_images(self, req: ImageRequest) -> tuple[str, dict[int, np.ndarray], frozenset[int]]:
        """``(kind, images by detector index, indices whose image is a binned preview)``."""
        cache = self._cache if self._cache_ready.is_set() else None
        start = time.perf_counter()
        if not req.final and cache is not None:
            wanted = [k for k in req.changed if k < len(req.detectors)]
            # The caches answer integrated responses only; 'max' needs a chunked pass, which
            # must stay cancellable by the next drag update (cache.query would not be).
            slow = [k for k in wanted if req.detectors[k].response == "max"]
            out, previews = {}, set()
            for k in wanted:
                if k not in slow:
                    res = cache.query(req.detectors[k])
                    out[k] = res.expanded() if res.is_preview else res.image
                    if res.is_preview:
                        previews.add(k)
            kind = "drag" if isinstance(cache, DragCache) else "preview"
            if slow:
                stack = self._chunked_pass(req, tuple(req.detectors[k] for k in slow), partial=False)
                out.update(zip(slow, stack))
                kind = "full" if len(slow) == len(wanted) else kind
            self.compute_times.append((kind, time.perf_counter() - start))
            return kind, out, frozenset(previews)
        if req.final and isinstance(cache, DragCache) and self._cache_is_exact(req.detectors):
            out = {k: cache.image(d) for k, d in enumerate(req.detectors)}
            self.compute_times.append(("exact-cache", time.perf_counter() - start))
            return "exact", out, frozenset()
        stack = self._chunked_pass(req, req.detectors, partial=True)
        kind = "exact" if req.final else "full"
        self.compute_times.append((kind, time.perf_counter() - start))
        return kind, {k: stack[k] for k in range(len(req.detectors))}, frozenset()

    def _chunked_pass(self, req: ImageRequest, detectors: tuple[Detector, ...], partial: bool) -> np.ndarray:
        """Virtual images of ``detectors`` in one chunked pass that ``req.cancel`` stops between chunks.

        ``partial`` shows partial images, which only makes sense when ``detectors``
        are all of ``req.detectors`` (view k shows image k).
        """
        self._running["image"] = req
        self.full_passes += 1
        self._start("computing virtual images", req.cancel)
        engine: dict[str, Any] = {**self._engine_options, "progress": self._report, "cancel": req.cancel}
        if partial:
            engine["on_partial"] = lambda v, d, t: self._partial(req, v, d, t)
        try:
            return virtual_image_from_params(self.cube, VirtualImageParams(detectors=detectors),
                                             RunContext(engine=engine))
        except CancelledError:
            self.cancelled_passes += 1
            raise
        finally:
            self._running["image"] = None
            self._finish(req.cancel)

    def _cache_is_exact(self, detectors: Sequence[Detector]) -> bool:
        """The drag cache equals the reference for integer data and integrated responses."""
        return self.cube.dtype.kind in "uib" and all(d.response == "sum" for d in detectors)

    def _partial(self, req: ImageRequest, value: np.ndarray, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last_partial < PARTIAL_EVERY_S or req.cancel.is_set():
            return
        self._last_partial = now
        with self._lock:
            if req.detectors != tuple(self._records):
                return
        self._emit("partial", (value, done, total))

    def _deliver_images(self, req: ImageRequest, result: tuple[str, dict[int, np.ndarray], frozenset[int]]) -> None:
        kind, images, previews = result
        with self._lock:
            if req.detectors != tuple(self._records):
                return  # stale: the detectors changed meanwhile
            for k, img in images.items():
                self._images[k] = img
                self._exact[k] = kind == "exact"
            if req.final:
                self._final_pending = False
        self._emit("images", (images, previews))
        if kind == "preview":
            self._set_status("preview (binned) while dragging; the full image follows on release")
        elif kind == "exact":
            self._set_status("")
            self._notify()

    def _compute_pattern(self, req: PatternRequest) -> np.ndarray:
        if req.point is not None:
            return np.asarray(self.cube.pattern(*req.point), dtype=np.float64)
        if req.params.region is None and req.params.method in self._whole:
            return self._whole[req.params.method]
        self._running["pattern"] = req
        self._start("computing the diffraction pattern", req.cancel)
        try:
            ctx = RunContext(engine={**self._engine_options, "progress": self._report, "cancel": req.cancel})
            out = virtual_diffraction_from_params(self.cube, req.params, ctx)
        finally:
            self._running["pattern"] = None
            self._finish(req.cancel)
        if req.params.region is None:
            self._whole[req.params.method] = out
        return out

    def _deliver_pattern(self, req: PatternRequest, pattern: np.ndarray) -> None:
        self._pattern = pattern
        self._emit("pattern", pattern)
        self._notify()

    def _build_cache(self) -> None:
        try:
            self._set_status("building the drag cache")
            cache = interactive_cache(self.cube, self._cache_budget)

            def report(done: int, total: int) -> None:
                self._set_status(f"building the drag cache: {100 * done // max(total, 1)} %")

            cache.build(progress=report, cancel=self._cache_cancel)
        except CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - no cache: drags fall back to exact passes
            self._set_status(f"no drag cache ({exc}); dragging recomputes in full")
            return
        self._cache = cache
        self._cache_ready.set()
        if not self.closed:
            self._set_status("drag cache ready" + (" (binned preview)" if not isinstance(cache, DragCache) else ""))


# --- records and their defaults -------------------------------------------------------------------
def _centre(cube: DataCube) -> tuple[float, float]:
    if cube.calibration.origin is not None:
        return cube.calibration.origin
    Qx, Qy = cube.detector_shape
    return (Qx - 1) / 2, (Qy - 1) / 2


def _probe_radius(cube: DataCube) -> float:
    try:
        r = float(cube.calibration.convergence_semiangle_px)
    except Exception:  # noqa: BLE001 - no calibration of the probe: a tenth of the detector
        r = 0.0
    return r if 0 < r < min(cube.detector_shape) / 2 else min(cube.detector_shape) / 10


def default_detectors(cube: DataCube) -> list[Detector]:
    """A bright-field disc and an annular dark field around the pattern origin."""
    c, r = _centre(cube), _probe_radius(cube)
    outer = min(3.5 * r, min(cube.detector_shape) / 2)
    return [Circle(c, round(1.1 * r, 2)), Annulus(c, round(min(1.5 * r, outer), 2), round(outer, 2))]


def new_detector(cube: DataCube, kind: str) -> Detector:
    """A detector of ``kind`` on the pattern origin, sized by the probe."""
    (cx, cy), r = _centre(cube), _probe_radius(cube)
    if kind == "circle":
        return Circle((cx, cy), r)
    if kind == "annulus":
        return Annulus((cx, cy), 1.5 * r, 3 * r)
    if kind == "rectangle":
        return Rectangle((round(cx - r), round(cx + r)), (round(cy - r), round(cy + r)))
    if kind == "polygon":
        return Polygon(((cx - r, cy), (cx, cy + r), (cx + r, cy), (cx, cy - r)))
    return Point(cx, cy)


def default_selector(selector: str | dict, scan_shape: tuple[int, int]) -> dict:
    """The selector overlay (id 'selector', green) of a kind or an overlay dict; refuses other shapes."""
    Rx, Ry = scan_shape
    if isinstance(selector, dict):
        ov = validate_overlay({**selector, "id": SELECTOR_ID})
    elif selector == "point":
        ov = make_overlay("point", x=Rx // 2, y=Ry // 2)
    elif selector == "rectangle":
        ov = make_overlay("rectangle", x0=Rx // 4, x1=max(Rx // 4 + 1, 3 * Rx // 4),
                          y0=Ry // 4, y1=max(Ry // 4 + 1, 3 * Ry // 4))
    elif selector == "polygon":
        ov = make_overlay("polygon", vertices=[[Rx / 4, Ry / 4], [Rx / 4, 3 * Ry / 4], [3 * Rx / 4, Ry / 2]])
    else:
        raise ParameterError(f"selector must be one of {SELECTOR_KINDS} or an overlay dict, got {selector!r}",
                             field="selector")
    if ov["kind"] not in SELECTOR_KINDS:
        raise ParameterError(f"a real-space selector is a point, rectangle or polygon, not {ov['kind']}",
                             field="selector")
    return {**ov, "id": SELECTOR_ID, "color": "#00ff00"}


def selection_region(selector: dict) -> Rectangle | Polygon:
    """The scan region of a selector overlay."""
    return region_from_overlay(selector)


def clamp_point(selector: dict, scan_shape: tuple[int, int]) -> tuple[int, int]:
    """The scan position a point selector picks (nearest, clamped onto the scan)."""
    Rx, Ry = scan_shape
    return (int(np.clip(round(selector["x"]), 0, Rx - 1)), int(np.clip(round(selector["y"]), 0, Ry - 1)))


def checked_detector(detector: Any, calibration: Calibration) -> Detector:
    """``detector`` if the explorer can draw it (a record with handles), else a ParameterError."""
    if not isinstance(detector, Detector):
        raise ParameterError(f"a detector must be a record of fw.detectors (Circle, Annulus, ...), "
                             f"got {type(detector).__name__}", field="detectors")
    overlay_from_detector(detector, "check", PALETTE[0], calibration)  # raises for shapes without handles
    return detector


def options_from_recipe(cube: DataCube, params: Recipe | dict | str) -> tuple[DataCube, tuple, dict[str, Any]]:
    """``(cube, detectors, options)`` of an explorer that shows a recipe.

    Raises
    ------
    ParameterError
        If the recipe has no virtual image step or holds something an explorer
        cannot draw (a Mask detector, an array region, descan shift).
    """
    params = Recipe.coerce(params)
    if params.calibration is not None:
        cube = cube.with_calibration(params.calibration)
    vi = [s for s in params.steps if isinstance(s, VirtualImageParams)]
    vd = [s for s in params.steps if isinstance(s, VirtualDiffractionParams)]
    if not vi:
        raise ParameterError("this recipe has no virtual_image step to show", field="steps")
    if vi[0].shift != "none":
        raise ParameterError("the explorer shows uncorrected virtual images (shift='none')", field="shift")
    kw: dict[str, Any] = {}
    if vd:
        d = vd[0]
        if isinstance(d.region, np.ndarray) or d.method == "median" or d.align:
            raise ParameterError("the explorer's selector is a point, rectangle or polygon with method "
                                 "'mean' or 'max' and no alignment", field="region")
        if d.region is None:
            kw["diffraction"] = d.method
        else:
            kw["diffraction"] = "selection"
            kw["selection_method"] = d.method
            kw["selector"] = _selector_from_region(d.region)
    return cube, vi[0].detectors, kw


def _selector_from_region(region: Rectangle | Polygon) -> dict:
    if isinstance(region, Rectangle):
        (x0, x1), (y0, y1) = region.qx_range, region.qy_range
        if x1 - x0 == 1 and y1 - y0 == 1 and float(x0).is_integer() and float(y0).is_integer():
            return make_overlay("point", x=x0, y=y0)
    return overlay_from_detector(region, SELECTOR_ID, "#00ff00")
