#!/usr/bin/env bash
# The main job: set up, then run the three-lab demo end to end (exits 0 only if all checks hold).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/crossmatch demo "$@"
