#!/usr/bin/env bash
# The main job: set up, then run the three-lab demo end to end (exits 0 only if all checks hold).
# ./scripts/demo.sh --ui then leaves lab-a's review web UI running with its case.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/crossmatch demo "$@"
