"""ImageView state on the Python side: traits, validation, overlays, exports, no image on look changes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import traitlets

from fourd_widgets.widgets import colormaps
from fourd_widgets.widgets.image_view import ESM_PATH, ImageView
from fourd_widgets.widgets.overlays import make_overlay


def test_unknown_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        ImageView(np.zeros((2, 2)), colour="red")
    with pytest.raises(TypeError, match="image_version"):
        ImageView(image_version=3)


def test_bundle_is_built_and_loaded() -> None:
    assert ESM_PATH.is_file(), "run npm run build (or pip install -e .)"
    assert "fw-view" in ESM_PATH.read_text()  # the view's class names survive minification
    assert "missing" not in str(ImageView()._esm)


def test_look_changes_send_no_image() -> None:
    view = ImageView(np.random.default_rng(0).random((5, 6)))
    before = (view.image_version, view.image)
    view.colormap = "inferno"
    view.scale = "power"
    view.gamma = 2.0
    view.contrast = "absolute"
    view.vmin, view.vmax = 0.1, 0.5
    view.percentiles = [2.0, 98.0]
    assert (view.image_version, view.image) == before


@pytest.mark.parametrize("trait, value", [("colormap", "jet"), ("scale", "cubic"), ("contrast", "auto")])
def test_bad_look_values_are_refused(trait: str, value: str) -> None:
    view = ImageView()
    with pytest.raises((ValueError, traitlets.TraitError)):
        setattr(view, trait, value)


def test_every_colormap_travels_once() -> None:
    assert set(ImageView().luts) == set(colormaps.COLORMAPS)


def test_overlay_editing_and_geometry() -> None:
    view = ImageView(np.zeros((10, 10)), pixel_size=0.5, units="Å", origin=[5, 5])
    view.set_overlay(make_overlay("circle", id="c", x=6, y=5, r=2))
    view.set_overlay(make_overlay("point", id="p", x=1, y=1))
    view.set_overlay({**view.overlay("c"), "r": 3})
    assert [o["id"] for o in view.overlays] == ["c", "p"] and view.overlay("c")["r"] == 3
    assert view.overlay_geometry("c", calibrated=True) == {"x": 0.5, "y": 0.0, "r": 1.5}
    assert view.overlays_calibrated[0] == {"id": "c", "kind": "circle", "x": 0.5, "y": 0.0, "r": 1.5}
    view.set_overlay({"id": "q", "kind": "point", "x": -1.0, "y": 2.0}, calibrated=True)
    assert (view.overlay("q")["x"], view.overlay("q")["y"]) == (3.0, 9.0)
    view.pixel_size = 1.0
    assert view.overlays_calibrated[2]["x"] == -2.0
    view.remove_overlays(["p", "nothing", "q"])
    assert [o["id"] for o in view.overlays] == ["c"]
    with pytest.raises(KeyError):
        view.overlay("p")
    with pytest.raises(ValueError):
        view.overlays = [{"kind": "circle", "x": 1}]


def test_display_limits_follow_the_contrast_mode() -> None:
    view = ImageView(np.arange(101.0).reshape(1, 101), percentiles=[10, 90])
    assert view.display_limits() == (10.0, 90.0)
    view.contrast, view.vmin = "absolute", -5.0
    assert view.display_limits() == (-5.0, 90.0)


def test_exports(tmp_path) -> None:
    data = np.array([[0.0, 1.0], [np.nan, 3.0]])
    view = ImageView(data, colormap="viridis", pixel_size=2.0, units="nm")
    view.save_png(tmp_path / "v.png")
    view.save_tiff(tmp_path / "v.tif")
    view.save_npy(tmp_path / "v.npy")
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "v.tif"), data.astype(np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), data)
    rgba = view.to_rgba()
    assert rgba[1, 0, 3] == 0 and tuple(rgba[1, 1, :3]) == tuple(colormaps.lut("viridis")[255])
