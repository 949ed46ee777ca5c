"""py4DSTEM 0.14.18 StrainMap on peak tables written by bench/bench_strain.py.

Run with the py4DSTEM venv's python. Input: one .npz per dataset with flat columns
``qx, qy, intensity`` (detector px), ``counts`` (peaks per position, C order), ``rshape``,
``qshape``, ``origin``. The first dataset is the reference (its median g1, g2 over the whole
scan); each dataset's basis is picked among its own Bragg-vector-map maxima as the ones
nearest to the reference vectors (what a user does by re-running ``choose_basis_vectors``
with indices). Saves ``e_xx, e_yy, e_xy, theta, mask`` per dataset to ``<out>_<i>.npz`` and
prints one line ``FOURD_BENCH_RESULT {json}`` with the compute times (plots switched off).
"""

import argparse
import json
import time
import warnings

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--npz", nargs="+", required=True, help="peak tables; the first one is the reference")
p.add_argument("--out", required=True, help="prefix of the output .npz files")
p.add_argument("--max-peak-spacing", type=float, default=4.0)
a = p.parse_args()

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

t0 = time.perf_counter()
import py4DSTEM
from emdfile import PointListArray

t_import = time.perf_counter() - t0
warnings.simplefilter("ignore")


def braggvectors(path):
    d = np.load(path)
    rshape, qshape = tuple(int(n) for n in d["rshape"]), tuple(int(n) for n in d["qshape"])
    pla = PointListArray(dtype=[("qx", np.float64), ("qy", np.float64), ("intensity", np.float64)], shape=rshape)
    off = np.concatenate([[0], np.cumsum(d["counts"])])
    for p_ in range(rshape[0] * rshape[1]):
        i, j = divmod(p_, rshape[1])
        s = slice(off[p_], off[p_ + 1])
        pla[i, j].add_data_by_field((d["qx"][s], d["qy"][s], d["intensity"][s]))
    bv = py4DSTEM.BraggVectors(rshape, qshape)
    bv.set_raw_vectors(pla)
    o = d["origin"]
    bv.calibration.set_origin((float(o[0]), float(o[1])))
    bv.setcal(center=True, ellipse=False, pixel=False, rotate=False)
    return bv


def strainmap(bv, ref=None):
    sm = py4DSTEM.StrainMap(bv)
    sm.show_strain = lambda *args, **kw: (None, None)  # time the computation, not the figure
    sm.choose_basis_vectors(minRelativeIntensity=0.01, relativeToPeak=1, maxNumPeaks=30)
    if ref is not None:  # re-pick the reference's lattice vectors among this map's maxima
        gx, gy = sm.g["x"], sm.g["y"]
        o = sm.origin
        io = int(np.argmin(np.hypot(gx - o[0], gy - o[1])))
        i1 = int(np.argmin(np.hypot(gx - gx[io] - ref[0][0], gy - gy[io] - ref[0][1])))
        i2 = int(np.argmin(np.hypot(gx - gx[io] - ref[1][0], gy - gy[io] - ref[1][1])))
        sm.choose_basis_vectors(index_g1=i1, index_g2=i2, index_origin=io, minRelativeIntensity=0.01, relativeToPeak=1, maxNumPeaks=30)
    plt.close("all")
    t0 = time.perf_counter()
    sm.fit_basis_vectors(max_peak_spacing=a.max_peak_spacing)
    plt.close("all")
    t_fit = time.perf_counter() - t0
    return sm, t_fit


times = []
bv0 = braggvectors(a.npz[0])
sm0, t_fit = strainmap(bv0)
g1_ref, g2_ref = sm0.get_reference_g1g2(np.ones(bv0.Rshape, bool))
basis = (tuple(sm0.g1), tuple(sm0.g2))
for i, path in enumerate(a.npz):
    bv = bv0 if i == 0 else braggvectors(path)
    sm, t_fit = (sm0, t_fit) if i == 0 else strainmap(bv, basis)
    t0 = time.perf_counter()
    sm.get_strain(gvects=(g1_ref, g2_ref))
    t_strain = time.perf_counter() - t0
    plt.close("all")
    np.savez(f"{a.out}_{i}.npz", e_xx=sm.data[0], e_yy=sm.data[1], e_xy=sm.data[2], theta=sm.data[3],
             mask=sm.data[4])
    times.append({"positions": int(np.prod(bv.Rshape)), "fit_s": t_fit, "strain_s": t_strain})
print("FOURD_BENCH_RESULT " + json.dumps({"version": py4DSTEM.__version__, "import_s": t_import, "runs": times,
                                          "g1_ref": list(map(float, g1_ref)), "g2_ref": list(map(float, g2_ref))}))
