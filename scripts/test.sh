#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): install what is missing, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest "$@"
