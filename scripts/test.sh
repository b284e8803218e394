#!/usr/bin/env bash
# The whole test suite: set up, then lint, generated-code drift check and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The audit report test renders HTML in headless Chromium; install it where we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the report rendering test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed; the rendering test will be skipped" >&2
fi
.venv/bin/python scripts/gen_proto.py --check
.venv/bin/ruff check protocol node tests scripts bench
.venv/bin/ruff format --check --quiet protocol node tests scripts bench
.venv/bin/mypy protocol node
# Two workers, one test file each at a time (a file's module fixtures stay in one
# worker): most integration tests wait on real processes, not on a core.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
