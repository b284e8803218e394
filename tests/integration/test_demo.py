"""`crossmatch demo` end to end: three scheduled daemons, a signed policy, every pair at
least two rounds, results against the truth, every audit log verified."""

from __future__ import annotations

import re

import pytest

from node.demo.sandbox import run_cli


@pytest.mark.slow
def test_demo_runs_scheduled_rounds_and_passes(tmp_path):
    proc = run_cli("demo", "--workdir", tmp_path / "demo", check=False, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    out = proc.stdout
    assert "demo PASSED" in out
    assert "every pair completed 2 rounds" in out
    pairs = re.findall(r"(lab-\w) <-> (lab-\w): (\d+) rounds, each found 26 shared", out)
    assert len(pairs) == 3 and all(int(n) >= 2 for _, _, n in pairs)
    assert out.count(": OK ") == 3  # every audit log verifies
    assert "0 values revealed" in out  # the count-only round
    assert "suite ristretto255-v1" in out  # P-256 consortia: tests/integration/test_rounds.py
