"""The raw route's disk-rim reading (``read="disk_rims"``) reads each pattern on its own.

A whole-scan map passes chunks of patterns as one ``(n, Qx, Qy)`` stack; the reading of a pattern must
not depend on which patterns share its chunk, or the one-pattern preview and the map disagree.
"""

from __future__ import annotations

import numpy as np

from fourd_widgets.analysis.orientation_raw import disk_rims


def test_a_pattern_reads_the_same_alone_and_in_a_stack():
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:48, :48]
    disks = [(np.hypot(x - cx, y - cy) < 7).astype(float) for cx, cy in ((20, 24), (27, 24), (24, 30))]
    stack = np.stack([d + 0.05 * rng.random((48, 48)) for d in disks])
    together = disk_rims(stack, 7.0)
    for k in range(len(stack)):
        alone = disk_rims(stack[k:k + 1], 7.0)[0]
        # to rounding: the neighbours' disks (shifted 6-7 px) would change the votes by a third if mixed in
        np.testing.assert_allclose(together[k], alone, rtol=0, atol=1e-9 * np.abs(alone).max())
