"""Issue 3's done-when on logs written by real nodes: two labs' serve processes and rounds."""

from __future__ import annotations

import json
import shutil

from node.demo.sandbox import run_cli
from tests.integration.conftest import after_min_interval, import_values


def test_reconcile_verify_and_tamper_on_real_logs(pair, tmp_path):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    import_values(a.dir, "org_domain", ["evil.example", "shared.example"], tmp_path)
    import_values(b.dir, "org_domain", ["SHARED.example.", "other.example"], tmp_path)
    run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "org_domain")
    after_min_interval()
    run_cli("round", b.dir, "--peer", "lab-a", "--kinds", "org_domain", "--mode", "count")

    # Both logs verify, with each other's receipts checked by the certified keys kept at commit.
    for lab, peer in ((a, "lab-b"), (b, "lab-a")):
        assert (lab.dir / "peers" / f"{peer}.pub").exists()
        out = run_cli("audit", "verify", lab.dir, "--json")
        assert json.loads(out.stdout)["ok"] is True
    proc = run_cli("audit", "reconcile", a.dir, b.dir, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Raw identifiers never enter the audit log, in any spelling.
    for lab in (a, b):
        log = (lab.dir / "audit.log").read_text().lower()
        for raw in ("evil.example", "shared.example", "other.example"):
            assert raw not in log

    # Delete one round record from a copy of lab-b's log, re-signing nothing: verify fails.
    copy = tmp_path / "lab-b-copy"
    shutil.copytree(b.dir, copy, ignore=shutil.ignore_patterns("*.db*", "run"))
    lines = (copy / "audit.log").read_bytes().splitlines(keepends=True)
    victim = next(i for i, line in enumerate(lines) if b'"event":"round_completed"' in line)
    (copy / "audit.log").write_bytes(b"".join(lines[:victim] + lines[victim + 1 :]))
    proc = run_cli("audit", "verify", copy, check=False)
    assert proc.returncode == 3
    assert f"record {victim}" in proc.stderr + proc.stdout
    proc = run_cli("audit", "reconcile", a.dir, copy / "audit.log", check=False)
    assert proc.returncode != 0

    # The reviewer's report renders from the real log: rounds with their peer and outcome.
    report = tmp_path / "report.html"
    run_cli("audit", "report", a.dir, "--out", report)
    html = report.read_text()
    assert "lab-b" in html and "completed" in html and "<svg" in html
    assert "evil.example" not in html and "shared.example" not in html  # never raw identifiers
