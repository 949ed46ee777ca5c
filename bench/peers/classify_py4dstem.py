"""py4DSTEM 0.14 Featurization on a feature matrix saved by bench/bench_classify.py (run in its venv).

    python classify_py4dstem.py --features F.npy --scan RX RY --pca 10 --classes 4 [--method gmm|kmeans]

Loads the (Rx*Ry, n) float32 matrix, runs Featurization.PCA then GMM (diagonal covariance, one model)
on the PCA scores, saves the labels next to the input and prints ``FOURD_BENCH_RESULT {json}``
with the time of PCA + GMM (median of 3 after a warm-up) and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

RESULT_PREFIX = "FOURD_BENCH_RESULT "


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--scan", type=int, nargs=2, required=True)
    ap.add_argument("--pca", type=int, default=10)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import py4DSTEM
    from py4DSTEM.process.classification import Featurization

    x = np.load(a.features).astype(np.float64)
    rx, ry = a.scan

    def once():
        f = Featurization(x, rx, ry, "bench")
        f.PCA(a.pca)
        g = Featurization(f.pca, rx, ry, "bench-pca")
        g.GMM(["diag"], [a.classes], 1, random_seed=0)
        return np.asarray(g.gmm_labels[0] if isinstance(g.gmm_labels, list) else g.gmm_labels).reshape(-1)

    once()
    ts = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        labels = once()
        ts.append(time.perf_counter() - t0)
    np.save(a.features + ".py4dstem_labels.npy", labels)
    print(RESULT_PREFIX + json.dumps({"version": py4DSTEM.__version__, "seconds": statistics.median(ts),
                                      "rss_mib": rss_mib()}))


if __name__ == "__main__":
    main()
