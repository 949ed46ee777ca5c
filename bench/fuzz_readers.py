"""The fuzz suite (tests/io/test_io_fuzz_children.py) with a larger budget, as a table.

Every reader, the recipe and the results file are damaged by hypothesis (cut
short, bytes flipped anywhere and in the first 4 KiB); each input is tried in a
child process killed after 10 s (a hang) or found dead (a crash). CI runs 40
inputs per target; this runs ``--examples`` (default 300) and prints the
figures as a Markdown table for bench/RESULTS.md.

    python bench/fuzz_readers.py --examples 300 [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300, help="inputs per target")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "fuzz.json"
        env = {**os.environ, "FOURD_FUZZ_EXAMPLES": str(args.examples), "FOURD_FUZZ_REPORT": str(report),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-o", "addopts=", "--timeout=7200",
                               "tests/io/test_io_fuzz_children.py", "-k", "damaged"],
                              cwd=REPO, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - start
        if not report.exists():
            print(proc.stdout[-4000:], proc.stderr[-4000:])
            return 1
        figures = json.loads(report.read_text())
    keys = ["ok", "clear", "foreign", "hang", "crash"]
    rows = []
    total = dict.fromkeys(keys, 0)
    for name, entry in figures.items():
        counts = {k: entry["counts"].get(k, 0) for k in keys}
        for k in keys:
            total[k] += counts[k]
        rows.append((name, sum(counts.values()), *counts.values()))
    rows.append(("all", sum(total.values()), *total.values()))
    if args.markdown:
        print(f"{args.examples} inputs per target, {elapsed:.0f} s in all\n")
        print("| target | tried | ok | clear error | foreign error | hang | crash |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(str(v) for v in row) + " |")
    else:
        for row in rows:
            print("{:<14} tried {:>5}  ok {:>5}  clear {:>5}  foreign {:>4}  hangs {:>3}  crashes {:>3}".format(*row))
        print(f"{elapsed:.0f} s")
    for name, entry in figures.items():
        for kind, examples in entry.get("examples", {}).items():
            for ex in examples[:2]:
                print(f"  {name} {kind}: {ex[:300]}")
    return 0 if total["hang"] == total["crash"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
