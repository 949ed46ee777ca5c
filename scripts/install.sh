#!/usr/bin/env bash
# Set up a fresh Debian machine (run as root from anywhere in the checkout) so that
# every test can run: Chromium for the browser tests, and fourd_widgets with all extras.
# Safe to run again: each step is skipped or is a no-op when already done.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# 1. Chromium (the browser tests drive Debian's /usr/bin/chromium through Playwright;
#    Playwright's own browser download is not used). CHROMIUM overrides the path checked.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    apt-get update
    apt-get install -y chromium
fi

# 2. The package, editable, with the app and test extras. Its build hook
#    (hatch_build.py) bundles the front end js/ -> fourd_widgets/static/ with
#    esbuild (npm ci && npm run build), so Node.js and npm must be present.
python -m pip install -e ".[all]"
