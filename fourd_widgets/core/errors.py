"""The one exception hierarchy of fourd_widgets.

Every error a user can meet derives from :class:`FourDError`. Each message says
what was wrong, where (file, field, step) and what to do about it.

Hierarchy::

    FourDError
    ├── FileFormatError          file not recognised, truncated, corrupt or unreadable
    │   └── MissingOptionError   the file needs an option it does not hold (scan_shape=, shape=)
    ├── ShapeError               wrong dimensionality or a shape that does not fit
    ├── CalibrationError         a calibration value is invalid
    │   └── MissingCalibrationError  a step needs a calibration the cube does not have
    ├── ParameterError           a parameter record or recipe was refused
    └── CancelledError           a long computation was cancelled by the user

They also derive from the matching built-in (``ValueError``, ``OSError``...) so
code that already catches those keeps working.
"""

from __future__ import annotations

import os

__all__ = [
    "FourDError",
    "FileFormatError",
    "MissingOptionError",
    "ShapeError",
    "CalibrationError",
    "MissingCalibrationError",
    "ParameterError",
    "CancelledError",
]


class FourDError(Exception):
    """Base class of every fourd_widgets error."""


class FileFormatError(FourDError, OSError):
    """A file could not be read as 4D-STEM data.

    Parameters
    ----------
    path : str or os.PathLike
        The file concerned; its name leads the message.
    problem : str
        What is wrong with it.
    hint : str, optional
        What the user can try.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, hint: str = "") -> None:
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        self.hint = hint
        where = f"{self.path}: " if self.path else ""
        text = f"{where}{problem}"
        if hint:
            text += f" {hint}"
        Exception.__init__(self, text)

    def __str__(self) -> str:  # OSError would otherwise format its args as errno
        return self.args[0]


class MissingOptionError(FileFormatError):
    """The file does not hold something needed to open it (say, its scan shape).

    Parameters
    ----------
    path, problem, hint
        As for :class:`FileFormatError`.
    options : tuple of str
        The ``load`` options that would supply what is missing (``("scan_width", "scan_shape")``),
        so that an app can ask for them.
    frames : int, optional
        The number of frames in a stack whose scan shape is missing.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, hint: str = "", *,
                 options: tuple[str, ...] = (), frames: int | None = None) -> None:
        super().__init__(path, problem, hint)
        self.options = tuple(options)
        self.frames = frames


class ShapeError(FourDError, ValueError):
    """An array has the wrong number of dimensions or a shape that does not fit."""


class CalibrationError(FourDError, ValueError):
    """A calibration value is invalid."""


class MissingCalibrationError(CalibrationError):
    """A step needs a calibration value that is not set.

    Parameters
    ----------
    needed : str
        The calibration field, e.g. ``"reciprocal_step"``.
    step : str
        What needed it, e.g. ``"conversion to mrad"``.
    how : str
        How to set or measure it.
    """

    def __init__(self, needed: str, step: str, how: str) -> None:
        self.needed = needed
        self.step = step
        self.how = how
        super().__init__(f"{step} needs the calibration '{needed}', which is not set. {how}")


class ParameterError(FourDError, ValueError):
    """A parameter record, recipe or option was refused.

    ``field`` names the offending field when there is one.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class CancelledError(FourDError):
    """A computation was cancelled; finished partial results stay usable.

    ``fw.run`` attaches them as ``.partial`` (a ``Results`` with ``partial=True``).
    """
