"""Every control explains itself: tooltips in the microscopist's words, and labels that are not cut.

Each tool view calls :func:`explain_controls` on its widget tree with its own
table (:data:`EXPLORER`, :data:`DISK_TUNER`, :data:`CALIBRATION`, :data:`STRAIN`,
keyed by the control's label). It sets the tooltip of every control found in
the table, lets labels take the width their text needs, and widens number boxes
so a value such as ``0.001754`` is not cut. :func:`unexplained` lists the
controls that still have neither a tooltip nor a help line (tests walk every
tool with it).

>>> import ipywidgets as w
>>> box = w.VBox([w.FloatSlider(description="corr power"), w.Button(description="?")])
>>> [c.description for c in unexplained(explain_controls(box, DISK_TUNER))]
['?']
"""

from __future__ import annotations

from typing import Iterator, Mapping

import ipywidgets as w

__all__ = ["EXPLORER", "DISK_TUNER", "CALIBRATION", "STRAIN", "COMMON", "explain_controls", "controls",
           "unexplained"]

#: Controls every tool has (the busy line).
COMMON = {
    "cancel": "Stop the computation in progress; what is computed so far stays on screen.",
}

EXPLORER = {
    "pattern": "Diffraction pattern shown on the left: 'selection' = the pattern(s) under the real-space "
               "selector, 'mean' / 'max' = mean or maximum over the whole scan.",
    "selector": "Shape that picks scan positions on the virtual images: a point (one probe position), a "
                "rectangle or a polygon (a region).",
    "region": "How a region selection combines its patterns: 'mean' (average pattern) or 'max' (brightest "
              "value of each detector pixel, shows weak spots of a few positions).",
    "detector": "The virtual detector being edited (also: click its shape on the diffraction pattern).",
    "response": "What the selected detector measures at each probe position: 'sum' = integrated intensity "
                "(bright / dark field image); 'com_x' / 'com_y' = centre of mass of the intensity inside it "
                "along qx / qy (beam deflection, DPC); 'max' = brightest pixel inside it.",
    "new detector": "Shape of the next virtual detector to add.",
    "add": "Add a virtual detector of the chosen shape, centred on the pattern origin, with its own image.",
    "remove": "Remove the selected virtual detector and its image (one always stays).",
    "centre on beam": "Move every detector's centre onto the bright-field disk, measured on the mean "
                      "pattern (sizes are kept).",
}

DISK_TUNER = {
    "template": "Where the disk template (probe) comes from: a vacuum region of this scan, a separate "
                "vacuum scan, or a synthetic disk.",
    "region": "Shape of the vacuum region whose mean pattern becomes the probe template.",
    "kernel": "How the probe template is turned into a matching kernel: 'flat' (as measured), 'gaussian' "
              "(minus a Gaussian-blurred copy: flat background cancels), 'sigmoid' (a trench ring "
              "around the disk).",
    "radius": "Disk radius: 'measured' from the probe template, or 'set' by hand below.",
    "disk radius": "Radius of the Bragg disks in detector pixels (used by the synthetic template and the "
                   "'disk' subpixel fit).",
    "gauss σ": "Width (px) of the Gaussian subtracted by the 'gaussian' kernel: larger removes broader "
               "background.",
    "trench r": "Inner and outer radius (px) of the negative trench of the 'sigmoid' kernel.",
    "corr power": "Correlation type: 1 = plain cross-correlation (robust, broad peaks), 0 = phase "
                  "correlation (sharp peaks, noise-sensitive); values between are hybrid.",
    "σ corr": "Gaussian smoothing (px) of the correlation map before peaks are found; 0 = none.",
    "subpixel": "How disk positions are refined below one pixel: 'auto' (the default: 'spot' for a probe "
                "radius under 4 px, else 'disk'; the note beside it says which), 'none', 'parabola' (fast), "
                "'dft' (upsampled cross-correlation, precise), 'disk' (fit of a disk model: each disk "
                "correlated with the probe, follows disk edges), 'edge' ('disk', then each disk centred on "
                "the symmetry of its edges: closer on thin crystals, pulled more by uneven disks and noise) "
                "or 'spot' (background-subtracted centroid of small spots).",
    "fit probe": "With 'disk': finish each disk with a least-squares fit of the recorded central disk, moved "
                 "by a sinc shift and scaled by a linear intensity ramp. Free of the pixel-grid bias of the "
                 "correlation (a whole file's lattice within 0.02 % on the simulated Si crystals); a disk the fit does not "
                 "describe (overlapping grains, few counts) keeps the correlation's estimate.",
    "min rel": "Keep peaks at least this fraction of the reference peak's correlation (log scale).",
    "rel. to peak": "Which peak the 'min rel' threshold is relative to (0 = the brightest, 1 = the second, "
                    "to skip the unscattered beam).",
    "min abs": "Keep only peaks whose correlation exceeds this absolute value (0 = no limit).",
    "min spacing": "Smallest distance (px) between two disks; the weaker of two closer peaks is dropped.",
    "edge": "Ignore peaks closer than this (px) to the detector edge (cut disks).",
    "max peaks": "Keep at most this many disks per pattern (the strongest).",
    "slot": "Which of the test positions (numbered on the virtual image) is shown and tuned.",
    "run on all": "Find the disks in every pattern of the scan with these settings (Bragg vector map).",
}

CALIBRATION = {
    "origin": "How the unscattered-beam position is measured in each pattern: from the found disks, the "
              "centre of mass, or the brightest disk.",
    "measure": "Measure the origin at every scan position with the chosen method.",
    "fit": "Smooth model of the origin over the scan (descan): a plane, a quadratic surface, or none "
           "(use the measured positions as they are).",
    "robust": "Fit ignoring outliers (positions whose origin is far from the model are flagged and "
              "excluded).",
    "fit ellipse": "Fit the elliptical distortion of the diffraction rings (projector astigmatism).",
    "use ellipse": "Correct the Bragg vectors for the fitted ellipse.",
}

STRAIN = {
    "click picks": "Which basis vector a click on the Bragg vector map sets: g1 or g2.",
    "max spacing": "Largest distance (px) between a found disk and its lattice position for it to count "
                   "in the lattice fit.",
    "min peaks": "Fewest indexed disks a pattern needs for its lattice to be fitted.",
    "frame °": "Rotation (degrees) of the x axis of the strain maps from the detector's qx axis: maps "
               "read along your sample's direction.",
    "reference": "Shape of the unstrained reference region drawn on the maps (its mean lattice is zero "
                 "strain).",
    "save as": "File name (without extension) of the exported strain maps.",
    "HDF5": "Save all maps and the recipe in one HDF5 file.",
    "TIFF": "Save each map as a 32-bit TIFF.",
    "PNG": "Save each map as a PNG picture with its colorbar.",
}

#: What counts as a control: things a user sets or presses.
_CONTROL_TYPES = (w.Button, w.ToggleButton, w.ToggleButtons, w.Dropdown, w.Select, w.SelectMultiple,
                  w.RadioButtons, w.Checkbox, w.Text, w.Textarea, w.FloatText, w.IntText, w.BoundedFloatText,
                  w.BoundedIntText, w.FloatSlider, w.IntSlider, w.FloatLogSlider, w.FloatRangeSlider,
                  w.IntRangeSlider, w.SelectionSlider)
_NUMBER_BOXES = (w.FloatText, w.IntText, w.BoundedFloatText, w.BoundedIntText)


def controls(root: w.Widget) -> Iterator[w.Widget]:
    """Every control in the widget tree under ``root`` (depth first)."""
    if isinstance(root, _CONTROL_TYPES):
        yield root
    for child in getattr(root, "children", ()) or ():
        yield from controls(child)


def explain_controls(root: w.Widget, table: Mapping[str, str], *, widen: bool = True) -> w.Widget:
    """Set the tooltip of each control under ``root`` whose label is in ``table`` (or :data:`COMMON`).

    ``widen``: let labels take their text's width and number boxes hold seven digits.
    Returns ``root``.
    """
    for c in controls(root):
        label = getattr(c, "description", "") or ""
        text = table.get(label) or COMMON.get(label)
        if text and not getattr(c, "tooltip", None):
            c.tooltip = text
        if widen and label and hasattr(c, "style") and hasattr(c.style, "description_width"):
            c.style.description_width = "initial"   # "vacuum r…", "max spaci…" no more
        if widen and isinstance(c, w.ToggleButtons):
            c.style.button_width = "auto"             # "vacuum region", "measured" in full
        if widen and isinstance(c, _NUMBER_BOXES):
            # the label's width plus a box for "0.001754" and the spinner
            c.layout.width = f"{max(150, 7 * len(label) + 130)}px"
    return root


def unexplained(root: w.Widget) -> list[w.Widget]:
    """The controls under ``root`` with neither a tooltip nor a help line (``help`` attribute)."""
    return [c for c in controls(root)
            if not (getattr(c, "tooltip", None) or getattr(c, "_fw_help", None)
                    or (isinstance(c, w.ToggleButtons) and all(c.tooltips or [""])))]
