#!/usr/bin/env bash
# Create (idempotently) the peer virtual environments used by the benchmarks in bench/.
#
#   bash bench/setup_peers.sh            # every peer
#   bash bench/setup_peers.sh py4dstem   # only one
#
# Each peer gets its own venv OUTSIDE the repository (default /work/venvs, override with
# FOURD_BENCH_VENVS). A venv whose marker file matches the requested pins is left alone,
# so running this again is cheap. Set PYTHON to choose the interpreter (default: python3.11
# if present, else python3). The benchmark itself is run by hand, never in CI.
set -euo pipefail

VENVS="${FOURD_BENCH_VENVS:-/work/venvs}"
if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

# name | pip requirements (space separated)
PY4DSTEM_REQS="py4DSTEM==0.14.18 numpy==1.26.4 threadpoolctl"
LIBERTEM_REQS="libertem threadpoolctl"
# pyxem's template matching (bench/bench_orientation.py --raw); installs as is, numpy 2 included
PYXEM_REQS="pyxem==0.21.0 diffsims==0.7.0 orix==0.15.0 hyperspy==2.5.0"
# the simulator that made the shared Si files (bench/bench_strain_resimulated.py re-simulates with it)
ABTEM_REQS="abtem==1.0.11 ase==3.29.0"

make_venv() {
    local name="$1" reqs="$2"
    local dir="$VENVS/$name" marker="$VENVS/$name/.fourd_bench_reqs"
    if [[ -x "$dir/bin/python" && -f "$marker" && "$(cat "$marker")" == "$reqs" ]]; then
        echo "[setup_peers] $name: up to date ($dir)"
        return 0
    fi
    echo "[setup_peers] $name: creating $dir with $PYTHON"
    mkdir -p "$VENVS"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086  # word splitting of the requirement list is intended
    "$dir/bin/python" -m pip install --quiet $reqs
    echo "$reqs" > "$marker"
    "$dir/bin/python" -m pip freeze > "$dir/.fourd_bench_freeze.txt"
    echo "[setup_peers] $name: done"
}

want="${1:-all}"
case "$want" in
    all) make_venv py4dstem "$PY4DSTEM_REQS"; make_venv libertem "$LIBERTEM_REQS"; make_venv pyxem "$PYXEM_REQS"; make_venv abtem "$ABTEM_REQS" ;;
    py4dstem) make_venv py4dstem "$PY4DSTEM_REQS" ;;
    libertem) make_venv libertem "$LIBERTEM_REQS" ;;
    pyxem) make_venv pyxem "$PYXEM_REQS" ;;
    abtem) make_venv abtem "$ABTEM_REQS" ;;
    *) echo "usage: $0 [all|py4dstem|libertem|pyxem|abtem]" >&2; exit 2 ;;
esac
