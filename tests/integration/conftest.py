"""Fixtures for integration tests: real CLI processes, real mTLS on 127.0.0.1 port 0, real files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.demo.sandbox import Sandbox, run_cli


def after_min_interval(seconds: float = 1.0) -> None:
    """Wait out the sandbox policy's minimum interval between two rounds of one pair
    (1 s, since a signed policy may not allow 0), for tests that run rounds back to back
    on a shared, module-scoped consortium."""
    time.sleep(seconds + 0.1)


def write_lines(path: Path, values: list[str]) -> Path:
    path.write_text("".join(v + "\n" for v in values))
    return path


def import_values(lab_dir: Path, kind: str, values: list[str], tmp: Path) -> None:
    f = write_lines(tmp / f"{lab_dir.name}-{kind}-{len(values)}.txt", values)
    run_cli("import", lab_dir, f, "--kind", kind)


def matches_json(lab_dir: Path, *args: str) -> list[dict]:
    return json.loads(run_cli("matches", lab_dir, "--format", "json", *args).stdout)


def rounds_json(lab_dir: Path) -> list[dict]:
    return json.loads(run_cli("rounds", lab_dir, "--format", "json").stdout)


def audit_ok(lab_dir: Path) -> None:
    proc = run_cli("audit", "verify", lab_dir, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def wait_for(check: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> Any:
    """``check()``'s first truthy value, polled every 0.2 s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two serving, peered labs (lab-a, lab-b) plus a CA-certified outsider lab-c (not peered)."""
    root = tmp_path_factory.mktemp("pair")
    sandbox = Sandbox(root / "consortium")
    sandbox.create(["lab-a", "lab-b", "lab-c"])
    sandbox.labs["lab-a"].start()
    sandbox.labs["lab-b"].start()
    sandbox.peer("lab-a", "lab-b")
    sandbox.peer("lab-b", "lab-a")
    yield sandbox
    sandbox.stop_all()
