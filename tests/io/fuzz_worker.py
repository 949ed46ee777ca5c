"""Child process of the fuzz suite: reads one request per line, answers one line each.

Run as ``python -m tests.io.fuzz_worker``. A request is JSON ``{"kind": "load" |
"recipe" | "results", "path": ..., "options": {...}}``; the answer is JSON
``{"outcome": "ok" | "clear" | "foreign", "detail": ...}``. The parent kills this
process when an answer takes too long (a hang) and notices when it dies (a crash);
that is why each input is tried here and not in the test process.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings


def _load(path: str, options: dict) -> str:
    import numpy as np

    import fourd_widgets as fw

    with fw.load(path, **options) as cube:
        assert len(cube.shape) == 4 and all(n >= 1 for n in cube.shape)
        rx, ry = cube.shape[:2]
        first = cube.read(rx=slice(0, 1), ry=slice(0, 1))
        last = cube.read(rx=slice(rx - 1, rx), ry=slice(ry - 1, ry))
        assert first.shape == (1, 1) + tuple(cube.shape[2:]) and last.dtype == cube.dtype
        if cube.nbytes <= 64 * 2**20:  # small enough to read whole: every block decodes
            data = cube.read()
            assert data.shape == cube.shape
            np.asarray(data).sum()
    return f"{cube.shape} {cube.dtype}"


def _recipe(path: str) -> str:
    from fourd_widgets.core.recipe import Recipe

    return str(len(Recipe.load(path).steps))


def _results(path: str) -> str:
    from fourd_widgets.io.results import Results

    res = Results.load(path)
    for key in res:
        _ = res[key]
    return ", ".join(res)


def handle(request: dict) -> dict:
    from fourd_widgets.errors import FourDError

    if request["kind"] == "selftest-hang":  # for the harness's own test
        import time

        time.sleep(3600)
    if request["kind"] == "selftest-crash":
        os.abort()
    path = request["path"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if request["kind"] == "load":
                detail = _load(path, request.get("options") or {})
            elif request["kind"] == "recipe":
                detail = _recipe(path)
            else:
                detail = _results(path)
        return {"outcome": "ok", "detail": detail}
    except FourDError as exc:
        text = str(exc)
        # A clear error names the file (or, for a recipe, what in it was wrong).
        folder = os.path.dirname(path)
        names = os.listdir(folder) if os.path.isdir(folder) else [os.path.basename(path)]
        named = any(n in text for n in names) or request["kind"] == "recipe"
        return {"outcome": "clear" if named else "foreign",
                "detail": f"{type(exc).__name__}: {text[:300]}" + ("" if named else " [does not name the file]")}
    except Exception as exc:  # noqa: BLE001 - the point is to see which
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
        return {"outcome": "foreign", "detail": f"{type(exc).__name__}: {str(exc)[:300]} (at {where})"}


def main() -> None:
    import fourd_widgets  # noqa: F401  (import once, before the first timed request)

    for line in sys.stdin:
        if not line.strip():
            continue
        answer = handle(json.loads(line))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
