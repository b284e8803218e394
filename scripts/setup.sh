#!/usr/bin/env bash
# Create .venv and install crossmatch with its pinned dependencies (and dev tools).
# Idempotent: re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "crossmatch needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.crossmatch-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing crossmatch and its pinned dependencies into .venv (about a minute)"
  # -qq: errors only (pip still prints a failing build's output and exits non-zero).
  pip=(.venv/bin/python -m pip -qq --disable-pip-version-check)
  "${pip[@]}" install --no-warn-script-location --upgrade pip
  "${pip[@]}" install --no-warn-script-location -e '.[dev]'
  echo "$want" > "$stamp"
fi
