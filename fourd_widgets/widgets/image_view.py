"""``ImageView``: the canvas every tool is built on (anywidget).

Python sends one 2-D image at a time as raw float32 bytes (see
:mod:`~fourd_widgets.widgets.transport`); the browser applies colormap,
scaling and contrast itself, draws the histogram, zoom and pan, cursor
readout, scale bar, colorbar and the overlays, and sends back only what the
user edited: overlay geometry (throttled while dragging), view settings.

Examples
--------
>>> import numpy as np
>>> view = ImageView(np.arange(12.0).reshape(3, 4), colormap="viridis")
>>> view.image_shape, view.image_version, len(view.image)
([3, 4], 1, 48)
>>> view.colormap = "magma"          # no new image is sent
>>> view.image_version
1
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterable, Mapping

import anywidget
import numpy as np
import traitlets as t

from . import colormaps
from .overlays import calibrated_geometry, pixel_geometry, validate_overlay
from .transport import WIRE_DTYPE, decode_image, decode_points, encode_image, encode_points

__all__ = ["ImageView", "STATIC", "ESM_PATH", "CSS_PATH", "DEFAULT_KEYMAP", "MARKER_STYLES"]

#: Folder of the bundled front end (built by ``npm run build``; see hatch_build.py).
STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
#: The bundle of the view (js/image_view.js and its modules).
ESM_PATH = STATIC / "image_view.js"
#: Its styles (js/image_view.css), given to anywidget as ``_css``.
CSS_PATH = STATIC / "image_view.css"
#: Arrow keys move the selected overlay one pixel (five with Shift): key -> [overlay id or "", dx, dy].
DEFAULT_KEYMAP: dict[str, list] = {"ArrowUp": ["", -1, 0], "ArrowDown": ["", 1, 0],
                                   "ArrowLeft": ["", 0, -1], "ArrowRight": ["", 0, 1]}

#: How a marker set draws each point: outline circle, filled dot, x, +, outline square.
MARKER_STYLES = ("circle", "dot", "cross", "plus", "square")


def _upsert(items: list[dict], entry: dict) -> list[dict]:
    """``items`` with the entry of the same id replaced in place, or ``entry`` appended (a new list)."""
    if any(o["id"] == entry["id"] for o in items):
        return [entry if o["id"] == entry["id"] else o for o in items]
    return [*items, entry]


def _find(items: list[dict], id: str, what: str) -> dict:
    """The entry of ``items`` with this id; KeyError naming the ids there are."""
    for o in items:
        if o["id"] == id:
            return o
    raise KeyError(f"no {what} {id!r}; ids are {[o['id'] for o in items]}")


def _esm() -> pathlib.Path | str:
    if ESM_PATH.is_file():
        return ESM_PATH
    return ("export default { render({ el }) { el.textContent = 'fourd_widgets: the front-end bundle "
            f"{ESM_PATH} is missing; run npm ci && npm run build in the source folder (or pip install -e .)'; }} }};")


def _css() -> pathlib.Path | str:
    # anywidget reads a path and raises for a missing one; without a build the notice needs no styles
    return CSS_PATH if CSS_PATH.is_file() else ""


class ImageView(anywidget.AnyWidget):
    """One 2-D image with colormap, contrast, zoom, readout and editable overlays.

    Parameters
    ----------
    image : (M, N) array_like, optional
        The image; any real dtype (sent as float32).
    **traits
        Any trait below, e.g. ``colormap="viridis"``, ``scale="log"``,
        ``pixel_size=0.5, units="Å"``, ``overlays=[...]``.

    Attributes
    ----------
    colormap : str
        One of :data:`fourd_widgets.widgets.colormaps.COLORMAPS`.
    scale : {'linear', 'log', 'sqrt', 'power'}
        Display scaling; ``gamma`` is the exponent of 'power'.
    contrast : {'percentile', 'absolute'}
        Limits from ``percentiles`` of the finite values, or ``vmin``/``vmax``.
    pixel_size, units, origin
        Calibration of the axes (scale bar and readout): one pixel is
        ``pixel_size`` ``units``; calibrated coordinates are measured from ``origin``.
    overlays : list of dict
        Shapes drawn over the image, in image pixels (see :mod:`.overlays`).
    overlays_calibrated : list of dict
        The same geometry in ``units`` from ``origin`` (kept up to date here;
        set overlays in calibrated units with ``set_overlay(ov, calibrated=True)``).
    selected : str
        Id of the overlay the arrow keys move.
    dragging : str
        Id of the overlay being dragged in the browser ('' when none).
    badge : str
        A short flag shown over the image's corner, e.g. 'preview' for a binned
        approximation ('' hides it).
    markers : list of dict
        Point sets (peak markers) drawn over the image; set them with
        :meth:`set_markers` (positions travel as binary float32, not JSON).
    image_version : int
        Incremented by every image sent from Python (what tests count).
    """

    _esm = _esm()
    _css = _css()
    image = t.Bytes(b"").tag(sync=True)
    image_shape = t.List(t.Int(), [0, 0]).tag(sync=True)
    image_dtype = t.Unicode(WIRE_DTYPE).tag(sync=True)
    image_version = t.Int(0).tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    colormap = t.Unicode("gray").tag(sync=True)
    scale = t.Unicode("linear").tag(sync=True)
    gamma = t.Float(0.5).tag(sync=True)
    contrast = t.Unicode("percentile").tag(sync=True)
    percentiles = t.List(t.Float(), [0.5, 99.5], minlen=2, maxlen=2).tag(sync=True)
    vmin = t.Float(None, allow_none=True).tag(sync=True)
    vmax = t.Float(None, allow_none=True).tag(sync=True)
    pixel_size = t.Float(None, allow_none=True).tag(sync=True)
    units = t.Unicode("px").tag(sync=True)
    origin = t.List(t.Float(), [0.0, 0.0]).tag(sync=True)
    axis_names = t.List(t.Unicode(), ["x", "y"]).tag(sync=True)
    overlays = t.List(t.Dict()).tag(sync=True)
    overlays_calibrated = t.List(t.Dict()).tag(sync=True)
    markers = t.List(t.Dict()).tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    dragging = t.Unicode("").tag(sync=True)
    click_moves = t.Unicode("").tag(sync=True)
    keymap = t.Dict(DEFAULT_KEYMAP).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    badge = t.Unicode("").tag(sync=True)
    size = t.Int(360).tag(sync=True)
    throttle_ms = t.Int(50).tag(sync=True)
    luts = t.Dict().tag(sync=True)

    def __init__(self, image: Any = None, **traits: Any) -> None:
        unknown = sorted(set(traits) - set(self._public_traits()) - {"layout"})
        if unknown:
            raise TypeError(f"ImageView got unknown argument {unknown[0]!r}; "
                            f"known: image, {', '.join(sorted(self._public_traits()))}")
        super().__init__(**traits)
        self.luts = colormaps.all_luts()
        self._data: np.ndarray | None = None
        if image is not None:
            self.set_image(image)

    @classmethod
    def _public_traits(cls) -> list[str]:
        hidden = {"image", "image_shape", "image_dtype", "image_version", "luts", "dragging", "overlays_calibrated",
                  "markers",
                  "comm", "log", "tabbable", "tooltip", "layout"}
        return [n for n in cls.class_trait_names(sync=True) if not n.startswith("_") and n not in hidden]

    # --- validation ---------------------------------------------------------------
    @t.validate("colormap")
    def _check_colormap(self, proposal: Any) -> str:
        colormaps.lut(proposal["value"])  # raises ValueError naming the choices
        return proposal["value"]

    @t.validate("scale")
    def _check_scale(self, proposal: Any) -> str:
        if proposal["value"] not in colormaps.SCALINGS:
            raise t.TraitError(f"scale must be one of {', '.join(colormaps.SCALINGS)}, got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("contrast")
    def _check_contrast(self, proposal: Any) -> str:
        if proposal["value"] not in ("percentile", "absolute"):
            raise t.TraitError(f"contrast must be 'percentile' or 'absolute', got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("overlays")
    def _check_overlays(self, proposal: Any) -> list[dict]:
        return [validate_overlay(o) for o in proposal["value"]]

    @t.observe("overlays", "pixel_size", "origin")
    def _calibrate(self, change: Any = None) -> None:
        ps, origin = self.pixel_size or 1.0, tuple(self.origin)
        self.overlays_calibrated = [{"id": o["id"], "kind": o["kind"], **calibrated_geometry(o, ps, origin)}
                                    for o in self.overlays]

    # --- image --------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray | None:
        """The image as last given to :meth:`set_image` (not the float32 wire copy)."""
        return self._data

    @property
    def wire_image(self) -> np.ndarray | None:
        """The float32 image the browser holds, decoded from the synced bytes."""
        if not self.image:
            return None
        return decode_image(self.image, self.image_shape)

    def set_image(self, image: Any) -> None:
        """Send a new image (one binary message; shape and version travel with it)."""
        data = np.asarray(image)
        payload = encode_image(data)
        self._data = data
        with self.hold_sync():
            self.image = payload.data
            self.image_shape = list(payload.shape)
            self.image_dtype = payload.dtype
            self.image_version = self.image_version + 1

    # --- overlays -----------------------------------------------------------------
    def overlay(self, id: str) -> dict[str, Any]:
        """The overlay with this id (KeyError if none)."""
        return dict(_find(self.overlays, id, "overlay"))

    def set_overlay(self, ov: Mapping[str, Any], calibrated: bool = False) -> None:
        """Add an overlay, or replace the one with the same id (geometry in ``units`` if ``calibrated``)."""
        ov = pixel_geometry(ov, self.pixel_size or 1.0, tuple(self.origin)) if calibrated else validate_overlay(ov)
        self.overlays = _upsert(self.overlays, ov)

    def remove_overlays(self, ids: Iterable[str]) -> None:
        """Remove the overlays with these ids (unknown ids are ignored)."""
        drop = set(ids)
        self.overlays = [o for o in self.overlays if o["id"] not in drop]

    def overlay_geometry(self, id: str, calibrated: bool = False) -> dict[str, Any]:
        """Geometry of overlay ``id`` in pixels, or in ``units`` measured from ``origin``."""
        ov = self.overlay(id)
        if not calibrated:
            return calibrated_geometry(ov, 1.0)
        return calibrated_geometry(ov, self.pixel_size or 1.0, tuple(self.origin))

    # --- markers ------------------------------------------------------------------
    def set_markers(self, id: str, xy: Any, *, style: str = "circle", color: str = "#ffd23d", radius: float = 3.0,
                    sizes: Any = None, values: Any = None, colormap: str = "viridis",
                    vmin: float | None = None, vmax: float | None = None, visible: bool = True) -> None:
        """Draw (or replace) the point set ``id``: thousands of markers in one binary message.

        Parameters
        ----------
        id : str
            Name of the set (one view holds several, e.g. detected peaks and a reference).
        xy : (N, 2) array_like
            Positions ``(x, y)`` in image pixels, x the first array axis. Empty is allowed.
        style : {'circle', 'dot', 'cross', 'plus', 'square'}
            What each point looks like.
        color : str
            CSS colour of every marker, unless ``values`` are given.
        radius : float
            Marker radius in image pixels (so markers grow with zoom; at least 2 screen px).
        sizes : (N,) array_like, optional
            Per-marker radius in image pixels, instead of ``radius``.
        values : (N,) array_like, optional
            Per-marker values (e.g. peak intensities) coloured through ``colormap``
            between ``vmin`` and ``vmax`` (default: their finite range).
        visible : bool
            Hide the set without dropping it.

        Raises
        ------
        ValueError
            For an unknown style or colormap, or arrays of the wrong shape or dtype.
        """
        if style not in MARKER_STYLES:
            raise ValueError(f"marker style must be one of {', '.join(MARKER_STYLES)}, got {style!r}")
        colormaps.lut(colormap)  # raises naming the choices
        r = float(radius)
        if not np.isfinite(r) or r < 0:
            raise ValueError(f"marker radius must be a finite number >= 0, got {radius!r}")
        entry = {"id": str(id), "style": style, "color": str(color), "radius": r, "colormap": colormap,
                 "vmin": None if vmin is None else float(vmin), "vmax": None if vmax is None else float(vmax),
                 "visible": bool(visible), **encode_points(xy, sizes, values)}
        self.markers = _upsert(self.markers, entry)

    def remove_markers(self, ids: Iterable[str] | str) -> None:
        """Drop the point sets with these ids (unknown ids are ignored)."""
        drop = {ids} if isinstance(ids, str) else set(ids)
        self.markers = [m for m in self.markers if m["id"] not in drop]

    def marker_points(self, id: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(xy, sizes, values)`` of set ``id`` as the browser holds them (float32; None when not given)."""
        return decode_points(_find(self.markers, id, "marker set"))

    # --- display limits and exports ---------------------------------------------
    def display_limits(self) -> tuple[float, float]:
        """(vmin, vmax) as the browser computes them for the current image."""
        img = self.wire_image
        if img is None:
            return 0.0, 1.0
        lo, hi = colormaps.percentile_limits(img, *self.percentiles)
        if self.contrast == "absolute":
            lo = lo if self.vmin is None else self.vmin
            hi = hi if self.vmax is None else self.vmax
        return lo, hi

    def to_rgba(self) -> np.ndarray:
        """The picture the canvas paints at zoom 1, (M, N, 4) uint8."""
        img = self.wire_image
        if img is None:
            raise ValueError("the view holds no image yet")
        return colormaps.to_rgba(img, *self.display_limits(), self.colormap, self.scale, self.gamma)

    def save_png(self, path: str | os.PathLike) -> None:
        """Save the displayed picture (colormap, scaling, contrast) as PNG."""
        pathlib.Path(path).write_bytes(colormaps.png_bytes(self.to_rgba()))

    def save_tiff(self, path: str | os.PathLike) -> None:
        """Save the data (not the colours) as a float32 TIFF, with the pixel size when known."""
        import tifffile

        meta = {"unit": self.units, "pixel_size": self.pixel_size, "title": self.title}
        tifffile.imwrite(os.fspath(path), np.asarray(self.wire_image), metadata=meta)

    def save_npy(self, path: str | os.PathLike) -> None:
        """Save the data as given to :meth:`set_image` (full precision) with ``np.save``."""
        if self._data is None:
            raise ValueError("the view holds no image yet")
        np.save(os.fspath(path), self._data)
