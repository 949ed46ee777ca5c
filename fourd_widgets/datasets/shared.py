"""Loader of the physically simulated test sets in ``../shared/data`` (abTEM multislice).

Each file holds ``data`` (Rx, Ry, Qx, Qy) float32 (fraction of the probe per
pixel), ``scan_positions_A``, ``vacuum_probe``, a ``ground_truth/`` group and
calibration attributes at its root (see the folder's README). The files are
opened read-only and not shipped with the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import FileFormatError, ParameterError

__all__ = ["load_shared", "shared_names", "shared_root"]


def shared_root(root: str | os.PathLike | None = None) -> Path:
    """Folder of the shared test data.

    ``root`` if given, else ``$FOURD_SHARED_DATA``, else ``../shared/data`` beside the
    repository checkout that holds this package.
    """
    if root is not None:
        return Path(root)
    env = os.environ.get("FOURD_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_names(root: str | os.PathLike | None = None) -> list[str]:
    """Names (file stems) of the simulated ``.h5`` sets present in the shared folder."""
    folder = shared_root(root)
    return sorted(p.stem for p in folder.glob("*.h5")) if folder.is_dir() else []


def _plain(value: Any) -> Any:
    """HDF5 attribute -> plain Python / numpy value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _first(value: Any) -> float:
    return float(np.ravel(value)[0])


def load_shared(name: str, root: str | os.PathLike | None = None) -> tuple[DataCube, dict[str, Any]]:
    """Load one shared simulated test set into memory, with its ground truth.

    Parameters
    ----------
    name : str
        File stem, e.g. ``"si_001_unstrained"`` (``.h5`` may be given).
    root : path, optional
        The shared data folder (default: see :func:`shared_root`).

    Returns
    -------
    cube : DataCube
        (Rx, Ry, Qx, Qy) float32, calibrated (scan step Å, detector 1/Å,
        energy, convergence, origin); ``metadata`` holds the root attributes.
    truth : dict
        Every dataset and attribute of ``ground_truth/`` plus
        ``vacuum_probe`` (Qx, Qy) and ``scan_positions_A`` (Rx, Ry, 2).

    Examples
    --------
    With ``../shared/data`` beside the checkout::

        cube, truth = load_shared("si_001_unstrained")
        truth["g1_invA"]       # array([0.36825631, 0.36825631])
    """
    import h5py

    folder = shared_root(root)
    stem = name[:-3] if name.endswith(".h5") else name
    path = folder / f"{stem}.h5"
    if not path.is_file():
        available = shared_names(folder)
        raise ParameterError(
            f"no shared test set {stem!r} in {folder}; available: {', '.join(available) or 'none'}", field="name")
    try:
        with h5py.File(path, "r") as f:
            data = f["data"][()]
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            truth: dict[str, Any] = {}
            if "ground_truth" in f:
                gt = f["ground_truth"]
                truth.update({k: _plain(v) for k, v in gt.attrs.items()})
                for k, v in gt.items():
                    if isinstance(v, h5py.Dataset):
                        truth[k] = v[()]
            for k in ("vacuum_probe", "scan_positions_A"):
                if k in f:
                    truth[k] = f[k][()]
    except (OSError, KeyError) as exc:
        raise FileFormatError(path, f"cannot be read as a shared test set ({exc})") from exc
    origin = attrs.get("origin_px")
    cal = Calibration(
        real_step=_first(attrs["scan_step_A"]) if "scan_step_A" in attrs else None, real_units="Å",
        reciprocal_step=_first(attrs["reciprocal_sampling_invA"]) if "reciprocal_sampling_invA" in attrs else None,
        reciprocal_units="1/Å", energy_eV=attrs.get("energy_eV"),
        convergence_semiangle_mrad=attrs.get("convergence_semiangle_mrad"),
        origin=None if origin is None else (float(np.ravel(origin)[0]), float(np.ravel(origin)[1])),
    )
    return DataCube(data, cal, source=None, metadata={"shared_name": stem, **attrs}), truth
