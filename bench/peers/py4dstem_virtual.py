"""py4DSTEM peer: DataCube.get_virtual_image(mode='annulus') on the cached cube.

Run with the py4DSTEM venv's python (see bench/setup_peers.sh); started by
bench/bench_virtual_image.py. py4DSTEM 0.14.18's annulus mask is ``ri < r < ro`` on integer
pixel indices (``make_detector``), and its non-dask path loops over scan positions computing
``np.sum(pattern * mask)`` into a float64 image.
"""

from __future__ import annotations

import time

t_import = time.perf_counter()
import numpy as np  # noqa: E402
import py4DSTEM  # noqa: E402

import _common  # noqa: E402

import_s = time.perf_counter() - t_import


def main() -> None:
    args = _common.parse_args(__doc__)
    t0 = time.perf_counter()
    data = np.load(args.npy)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dc = py4DSTEM.DataCube(data=data)
    setup_s = time.perf_counter() - t0
    geometry = ((args.center[0], args.center[1]), (args.inner, args.outer))

    def run():
        vi = dc.get_virtual_image(mode="annulus", geometry=geometry, verbose=False, name="vi")
        return np.asarray(vi.data)

    r = _common.timed(run, args.repeats)
    np.save(args.out, r.pop("result"))
    multi = None
    if args.rings8:
        # py4DSTEM has no multi-detector pass: one get_virtual_image call (one read) per detector.
        def run8():
            return np.stack([np.asarray(dc.get_virtual_image(
                mode="annulus", geometry=((args.center[0], args.center[1]), (ri, ro)),
                verbose=False, name=f"vi{k}").data) for k, (ri, ro) in enumerate(args.rings8)])

        multi = _common.timed(run8, max(1, args.repeats // 2))
        multi.pop("result")
        multi["method"] = f"{len(args.rings8)} separate get_virtual_image calls"
    _common.emit({
        "peer": "py4DSTEM",
        "version": py4DSTEM.__version__,
        "numpy": np.__version__,
        "method": "DataCube.get_virtual_image(mode='annulus', geometry=((qx,qy),(ri,ro)), verbose=False)",
        "mask_convention": "ri < r < ro",
        "threads": _common.thread_info(),
        "import_s": import_s, "load_s": load_s, "setup_s": setup_s,
        "image_path": args.out, **r, "multi": multi,
    })


if __name__ == "__main__":
    main()
