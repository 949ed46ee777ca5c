#!/usr/bin/env bash
# Set up a fresh Debian machine (run as root from anywhere in the checkout) so that
# every test can run: Chromium for the browser tests, Node.js + npm for the front-end
# bundle, and fourd_widgets with all extras at the exact versions CI last passed with.
# Safe to run again: each step is skipped or is a no-op when already done.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        apt-get update
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# 1. Chromium (the browser tests drive Debian's /usr/bin/chromium through Playwright;
#    Playwright's own browser download is not used). CHROMIUM overrides the path checked.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    apt_install chromium
fi

# 2. Node.js and npm: the build hook (hatch_build.py) bundles js/ -> fourd_widgets/static/
#    with esbuild, and the front end's unit tests run under `node --test`.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi

# 3. The package, editable, with the app and test extras. scripts/constraints.txt holds the
#    exact versions of every Python package CI last passed with, so that a new release of a
#    dependency cannot turn CI red unseen (refresh it with scripts/update_constraints.sh).
#    PIP_CONSTRAINT also reaches pip's isolated build environment (hatchling).
PIP_CONSTRAINT="$PWD/scripts/constraints.txt" python -m pip install -e ".[all]"
