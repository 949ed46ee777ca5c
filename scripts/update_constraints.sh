#!/usr/bin/env bash
# Refresh scripts/constraints.txt: install the newest releases the bounds in pyproject.toml
# allow, then record the exact versions. Run the whole suite before committing the result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python -m pip install --upgrade -e ".[all]"
{
    echo "# Exact versions of every Python package installed when the suite last passed."
    echo "# Written by scripts/update_constraints.sh; used by scripts/install.sh."
    python -m pip freeze --exclude-editable | grep -v '^-e ' | grep -iv '^fourd[-_]widgets' | sort -f
} > scripts/constraints.txt
