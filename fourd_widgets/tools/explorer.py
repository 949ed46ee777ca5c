"""``ExplorerSession``: detectors, selector and the images they give, without a browser.

The session holds the detector records, the real-space selector (an overlay dict
in scan pixels), the diffraction mode, the drag cache and two newest-wins
workers (virtual images, diffraction pattern). Its compute policy:

* while a detector is dragged, the images of the detectors that moved come from
  :func:`fourd_widgets.analysis.interactive.interactive_cache` (exact
  :class:`DragCache` when the cube fits the budget, a binned :class:`PreviewCache`
  otherwise); a ``'max'`` response, which no cache answers, takes a chunked pass
  that the next drag update cancels;
* on release (a *final* request) the exact images come from
  :func:`fourd_widgets.analysis.virtual.virtual_image_from_params` on
  :attr:`ExplorerSession.image_params` (all detectors in one pass, with progress,
  cancel and partial images), unless the drag cache is already exact (integer
  data, integrated response);
* the pattern of one scan position is read directly; the mean / max of the scan
  is computed once and kept.

So ``fw.run(session.params, cube)`` returns exactly the images shown. Events for
the view (besides the :class:`~fourd_widgets.tools.base.Tool` ones):
``'detectors'`` (records or ids changed), ``'images'`` (``(images, previews)``),
``'partial'`` (``(stack, done, total)``), ``'pattern'`` (the pattern),
``'selector'`` (the view that moved it, or None), ``'options'`` (mode or method).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Sequence

import numpy as np

from ..analysis.detectors import Detector, Rectangle
from ..analysis.interactive import DragCache, PreviewCache, interactive_cache
from ..analysis.virtual import VirtualDiffractionParams, VirtualImageParams
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.recipe import Recipe
from .base import Tool
from .explorer_compute import (DIFFRACTION_MODES, SELECTOR_ID, SELECTOR_KINDS, ImageRequest, PatternRequest,
                               ExplorerCompute, checked_detector, clamp_point, default_detectors, default_selector,
                               new_detector, options_from_recipe, selection_region)
from .overlays import detector_from_overlay, make_overlay

__all__ = ["ExplorerSession", "DIFFRACTION_MODES", "SELECTOR_KINDS", "SELECTOR_ID"]


class ExplorerSession(ExplorerCompute, Tool):
    """Linked diffraction and virtual images of a cube: the explorer without its views.

    Parameters
    ----------
    cube : DataCube
    detectors : sequence of Detector, optional
        Default: a bright-field disc and an annular dark field around the pattern origin.
    selector : {'point', 'rectangle', 'polygon'} or dict
        The real-space selector, or an overlay dict in scan pixels.
    diffraction : {'selection', 'mean', 'max'}
    selection_method : {'mean', 'max'}
    cache_budget : int, optional
        Bytes the drag cache may use (default: half the free memory).
    build_cache : bool
        Build the drag cache in the background.
    engine_options : dict, optional
        ``chunk_bytes``, ``workers``, ``scheduler`` of the chunked passes.
    start : bool
        Ask for the first results at once (a view passes False and calls :meth:`start` once it listens).

    Examples
    --------
    >>> from fourd_widgets.analysis.detectors import Circle
    >>> from fourd_widgets.analysis.run import run
    >>> cube = DataCube(np.arange(4 * 4 * 8 * 8, dtype=np.uint16).reshape(4, 4, 8, 8))
    >>> s = ExplorerSession(cube, [Circle((4, 4), 2)], build_cache=False).wait()
    >>> bool(np.array_equal(run(s.params, cube)["virtual_image"][0], s.virtual_images[0]))
    True
    >>> s.close()
    """

    name = "explorer"

    def __init__(self, cube: DataCube, detectors: Sequence[Detector] | None = None, *,
                 selector: str | dict = "point", diffraction: str = "selection", selection_method: str = "mean",
                 cache_budget: int | None = None, build_cache: bool = True,
                 engine_options: dict | None = None, start: bool = True) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"Explorer needs a DataCube (fw.load(path) gives one), got {type(cube).__name__}")
        _check_mode(diffraction)
        _check_method(selection_method)
        Tool.__init__(self, cube)
        self.cube: DataCube = cube
        self.calibration: Calibration = cube.calibration
        self._mode, self._method = diffraction, selection_method
        self._records: list[Detector] = []
        self._ids: list[str] = []
        self._next_id = 0
        self._images: list[np.ndarray | None] = []
        self._exact: list[bool] = []
        self._pattern: np.ndarray | None = None
        self._whole: dict[str, np.ndarray] = {}
        self._running: dict[str, Any] = {"image": None, "pattern": None}
        self._final_pending = False
        self._last_partial = 0.0
        self._latest_image: ImageRequest | None = None
        self.full_passes = 0
        self.cancelled_passes = 0
        #: (kind, seconds) of the latest image computations: 'drag'/'preview' cache queries, 'exact' passes.
        self.compute_times: deque[tuple[str, float]] = deque(maxlen=2000)
        self._engine_options = {k: v for k, v in (engine_options or {}).items()
                                if k not in ("progress", "cancel", "on_partial")}
        self._cache: Any = None
        self._cache_ready = threading.Event()
        self._cache_cancel = threading.Event()
        self._cache_budget = cache_budget
        self._image_runner = self._add_worker(self._compute_images, self._deliver_images, self._failed)
        self._pattern_runner = self._add_worker(self._compute_pattern, self._deliver_pattern, self._failed)
        self._selector = default_selector(selector, cube.scan_shape)
        for det in (default_detectors(cube) if detectors is None else detectors):
            self._add_record(det)
        self._start_build = build_cache
        if start:
            self.start()

    def start(self) -> "ExplorerSession":
        """Ask for the first images and pattern, build the drag cache (``start=False``: a view calls it once it listens)."""
        self._request_images(final=True)
        self._request_pattern()
        if self._start_build:
            threading.Thread(target=self._build_cache, name="fourd-explorer-cache", daemon=True).start()
        return self

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, **options: Any) -> "ExplorerSession":
        """Rebuild a session from its :attr:`params` (see :func:`options_from_recipe` for what is refused)."""
        cube, detectors, kw = options_from_recipe(cube, params)
        return cls(cube, detectors, **kw, **options)

    # --- state --------------------------------------------------------------------------------
    @property
    def detectors(self) -> tuple[Detector, ...]:
        """The detector records, in order (one virtual image each)."""
        with self._lock:
            return tuple(self._records)

    @property
    def detector_ids(self) -> tuple[str, ...]:
        """Overlay ids of the detectors (``'d0'``, ``'d1'``, ...)."""
        with self._lock:
            return tuple(self._ids)

    @property
    def selector(self) -> dict:
        """The real-space selector overlay (scan pixels)."""
        return dict(self._selector)

    @property
    def diffraction(self) -> str:
        """The pattern shown: 'selection', 'mean' or 'max' (settable)."""
        return self._mode

    @diffraction.setter
    def diffraction(self, mode: str) -> None:
        _check_mode(mode)
        if mode != self._mode:
            self._mode = mode
            self._emit("options")
            self._request_pattern()

    @property
    def selection_method(self) -> str:
        """How a region selection combines patterns: 'mean' or 'max' (settable)."""
        return self._method

    @selection_method.setter
    def selection_method(self, method: str) -> None:
        _check_method(method)
        if method != self._method:
            self._method = method
            self._emit("options")
            self._request_pattern()

    @property
    def image_params(self) -> VirtualImageParams:
        """Record of the virtual images shown."""
        return VirtualImageParams(detectors=self.detectors)

    @property
    def diffraction_params(self) -> VirtualDiffractionParams:
        """Record of the diffraction pattern shown."""
        if self._mode != "selection":
            return VirtualDiffractionParams(method=self._mode)
        return VirtualDiffractionParams(method=self._method, region=selection_region(self._selector))

    @property
    def params(self) -> Recipe:
        """The recipe of what is shown: ``fw.run(session.params, cube)`` replays it."""
        return Recipe(steps=(self.image_params, self.diffraction_params),
                      labels=("virtual_image", "virtual_diffraction"), calibration=self.calibration)

    @property
    def virtual_images(self) -> np.ndarray:
        """The images shown, (k, Rx, Ry) float64 (NaN where not computed yet)."""
        with self._lock:
            imgs = [np.full(self.cube.scan_shape, np.nan) if im is None else im for im in self._images]
        return np.stack(imgs) if imgs else np.zeros((0,) + self.cube.scan_shape)

    @property
    def diffraction_pattern(self) -> np.ndarray | None:
        """The pattern shown, (Qx, Qy) float64."""
        return self._pattern

    @property
    def drag_cache(self) -> DragCache | PreviewCache | None:
        """The cache drags query (a binned PreviewCache when the cube exceeds the budget); None until built."""
        return self._cache if self._cache_ready.is_set() else None

    @property
    def exact(self) -> bool:
        """True when every image shown is the exact one of the current detectors."""
        with self._lock:
            return all(self._exact) and not self._final_pending

    def results(self) -> dict[str, Any]:
        pattern = {} if self._pattern is None else {"virtual_diffraction": self._pattern}
        return {"virtual_image": self.virtual_images, **pattern}

    def images(self) -> dict[str, np.ndarray]:
        pattern = {} if self._pattern is None else {"diffraction": self._pattern}
        return {**dict(zip(self.detector_ids, self.virtual_images)), **pattern}

    # --- edits ----------------------------------------------------------------------------------
    def add_detector(self, detector: Detector) -> str:
        """Add a detector; returns its id."""
        ident = self._add_record(detector)
        self._emit("detectors")
        self._request_images(final=True)
        return ident

    def add_new(self, kind: str) -> str:
        """Add a detector of ``kind`` ('circle', 'annulus', 'rectangle', 'polygon', 'point') on the origin."""
        return self.add_detector(new_detector(self.cube, kind))

    def remove_detector(self, ident: str) -> None:
        """Remove the detector with this id (the last one cannot be removed)."""
        with self._lock:
            if ident not in self._ids or len(self._ids) == 1:
                return
            k = self._ids.index(ident)
            for lst in (self._ids, self._records, self._images, self._exact):
                del lst[k]
        self._emit("detectors")
        self._request_images(final=True)

    def set_detector(self, ident: str | int, detector: Detector) -> None:
        """Replace a detector's record (by id or index) and recompute its image."""
        with self._lock:
            k = ident if isinstance(ident, int) else self._ids.index(ident)
            self._records[k] = checked_detector(detector, self.calibration)
            self._exact[k] = False
        self._emit("detectors")
        self._request_images(final=True, changed=(k,))

    def set_response(self, ident: str, response: str) -> None:
        """Change the response ('sum', 'com_x', 'com_y', 'max') of one detector."""
        with self._lock:
            k = self._ids.index(ident)
            rec = self._records[k]
        if rec.response != response:
            self.set_detector(k, rec.replace(response=response))

    def edit_overlays(self, overlays: Sequence[dict], dragging: bool) -> None:
        """Detector overlays as the diffraction view holds them (while dragging: cache answers only)."""
        changed = []
        with self._lock:
            for ov in overlays:
                if ov["id"] not in self._ids:
                    continue
                k = self._ids.index(ov["id"])
                old = self._records[k]
                new = detector_from_overlay(ov, old.response, old.units, old.relative_to_origin, self.calibration)
                if new != old:
                    self._records[k] = new
                    self._exact[k] = False
                    changed.append(k)
        if changed:
            self._request_images(final=not dragging, changed=tuple(changed))

    def release(self) -> None:
        """The drag ended: the exact images follow unless those shown are exact already."""
        if not self.exact:
            self._request_images(final=True)

    def select(self, rx: int, ry: int) -> None:
        """Put a point selector on scan position ``(rx, ry)`` and show that pattern."""
        self.set_selector(make_overlay("point", x=rx, y=ry))

    def set_selector(self, selector: dict | str) -> None:
        """Replace the real-space selector (an overlay dict in scan pixels, or a kind for its default)."""
        self._selector = default_selector(selector, self.cube.scan_shape)
        self._emit("selector", None)
        if not isinstance(selector, str) or self._mode == "selection":
            self._request_pattern()

    def move_selector(self, overlay: dict, source: Any = None) -> None:
        """The selector as a view drew it (``source``: that view, which needs no echo)."""
        if overlay != self._selector:
            self._selector = {**overlay, "color": "#00ff00"}
            self._emit("selector", source)
            self._request_pattern()

    def run_on_all(self) -> "ExplorerSession":
        """The exact images of every detector (what a release asks for)."""
        self._request_images(final=True)
        return self

    def wait_cache(self, timeout: float = 600.0) -> bool:
        """Block until the drag cache is built; False if it is not (or not being) built."""
        return self._cache_ready.wait(timeout)

    def close(self) -> None:
        if self.closed:
            return
        self._cache_cancel.set()
        super().close()
        if self._cache is not None:
            self._cache.release()  # the drag cache can be twice the size of the cube

    # --- helpers ----------------------------------------------------------------------------------
    def _add_record(self, detector: Detector) -> str:
        det = checked_detector(detector, self.calibration)
        with self._lock:
            ident = f"d{self._next_id}"
            self._next_id += 1
            self._records.append(det)
            self._ids.append(ident)
            self._images.append(None)
            self._exact.append(False)
        return ident

    def _pending(self) -> bool:
        return self._final_pending

    def _request_images(self, final: bool, changed: tuple[int, ...] | None = None) -> None:
        with self._lock:
            dets = tuple(self._records)
            if final:
                self._final_pending = True
            req = ImageRequest(dets, tuple(range(len(dets))) if changed is None else changed, final)
            previous, self._latest_image = self._latest_image, req
        if previous is not None:
            # Newest request wins. Cancel the previous one whether it is pending or already
            # running: the worker may have taken it but not yet registered it as running, and a
            # stale chunked pass must stop between chunks instead of running to the end.
            previous.cancel.cancel()
        if not self.closed:
            self._image_runner.submit(req)

    def _request_pattern(self) -> None:
        params, point = self.diffraction_params, None
        if self._mode == "selection" and self._selector["kind"] == "point":
            point = clamp_point(self._selector, self.cube.scan_shape)
            params = VirtualDiffractionParams(method=self._method,
                                              region=Rectangle((point[0], point[0] + 1), (point[1], point[1] + 1)))
            if (round(self._selector["x"]), round(self._selector["y"])) != point:  # off the scan: clamp it
                self._selector = {**self._selector, "x": float(point[0]), "y": float(point[1])}
                self._emit("selector", None)
        running = self._running["pattern"]
        if running is not None:
            running.cancel.cancel()
        if not self.closed:
            self._pattern_runner.submit(PatternRequest(params, point))

    def _failed(self, req: Any, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            self._set_status("cancelled; the partial image stays")
            if isinstance(req, ImageRequest) and req.final and self._running["image"] is None:
                with self._lock:
                    self._final_pending = False
            return
        if isinstance(req, ImageRequest) and req.final:
            with self._lock:
                self._final_pending = False
        self._fail("images" if isinstance(req, ImageRequest) else "pattern", exc)
        self._set_status(f"error: {type(exc).__name__}: {exc}")


def _check_mode(mode: str) -> None:
    if mode not in DIFFRACTION_MODES:
        raise ParameterError(f"diffraction must be one of {DIFFRACTION_MODES}, got {mode!r}", field="diffraction")


def _check_method(method: str) -> None:
    if method not in ("mean", "max"):
        raise ParameterError(f"selection_method must be 'mean' or 'max', got {method!r}", field="selection_method")
