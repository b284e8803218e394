"""The consortium round with 5 real lab processes and a real hub on loopback (mutual TLS).

Elements are held by exactly 1, 2, 3, 4 and 5 labs; with k = 3 every lab learns
exactly its own elements held by >= 3 labs, and nothing about the others
appears in any result, audit log, process output or hub file.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from node.demo.sandbox import Sandbox, cli_command, consortium_section, run_cli, sandbox_policy
from tests.integration.conftest import audit_ok, import_values

LABS = ["lab-a", "lab-b", "lab-c", "lab-d", "lab-e"]
HUB = "isac"
K = 3


def holdings() -> dict[str, list[str]]:
    """For every h in 1..5, one email per h-subset of the labs (31 elements, 80 holdings)."""
    held: dict[str, list[str]] = {lab: [] for lab in LABS}
    for h in range(1, 6):
        for subset in itertools.combinations(LABS, h):
            email = f"held{h}-{''.join(x[-1] for x in subset)}@example.com"
            for lab in subset:
                held[lab].append(email)
    return held


def count(email: str) -> int:
    return int(email[4])


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    root = tmp_path_factory.mktemp("consortium")
    sandbox = Sandbox(root / "c")
    policy = sandbox_policy() + consortium_section(HUB, LABS, k=K, max_set_size=40)
    sandbox.create(LABS, policy=policy)
    sandbox.add_hub(HUB)
    sandbox.install_policy(policy, {HUB: sandbox.labs[HUB]})
    address = sandbox.labs[HUB].start()
    tmp = root / "data"
    tmp.mkdir()
    for lab, emails in holdings().items():
        import_values(sandbox.labs[lab].dir, "email", emails, tmp)
        run_cli("peer", "add", sandbox.labs[lab].dir, "--lab", HUB, "--address", address)
    yield sandbox
    sandbox.stop_all()


def run_round(sandbox: Sandbox, labs: list[str]) -> dict[str, subprocess.CompletedProcess]:
    procs = {
        lab: subprocess.Popen(
            cli_command("consortium-round", sandbox.labs[lab].dir, "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lab in labs
    }
    out = {}
    for lab, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[lab] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def consortium_rows(lab_dir: Path) -> tuple[int, int]:
    with sqlite3.connect(lab_dir / "crossmatch.db") as db:
        return (
            db.execute("SELECT count(*) FROM consortium_rounds").fetchone()[0],
            db.execute("SELECT count(*) FROM consortium_matches").fetchone()[0],
        )


@pytest.fixture(scope="module")
def completed(consortium):
    results = run_round(consortium, LABS)
    for lab, proc in results.items():
        assert proc.returncode == 0, f"{lab}: {proc.stderr}"
    return results


def test_every_lab_learns_exactly_its_elements_held_by_k_labs(consortium, completed):
    for lab, emails in holdings().items():
        summary = json.loads(completed[lab].stdout)
        want = sorted(e for e in emails if count(e) >= K)
        assert summary["result_counts"] == {"email": len(want)}
        got = json.loads(
            run_cli("matches", consortium.labs[lab].dir, "--consortium", "--format", "json").stdout
        )
        assert sorted(r["value"] for r in got) == want
        assert {r["at_least"] for r in got} == {K} and {r["labs"] for r in got} == {None}


def _fingerprints(lab_dir: Path) -> dict[str, bytes]:
    with sqlite3.connect(lab_dir / "crossmatch.db") as db:
        return {
            value: bytes(fp)
            for value, fp in db.execute(
                "SELECT v.value, s.fingerprint FROM signals s JOIN signal_values v"
                " ON v.signal_id = s.id"
            )
        }


def test_nothing_about_rarer_elements_appears_anywhere(consortium, completed):
    fps: dict[str, bytes] = {}
    for lab in LABS:
        fps.update(_fingerprints(consortium.labs[lab].dir))
    rare = [e for e in fps if count(e) < K]
    every = list(fps)
    texts = {f"{lab} output": completed[lab].stdout + completed[lab].stderr for lab in LABS}
    for lab in [*LABS, HUB]:
        d = consortium.labs[lab].dir
        texts[f"{lab} audit log"] = (d / "audit.log").read_text()
        texts[f"{lab} serve log"] = consortium.labs[lab].serve_log()
    for path in consortium.labs[HUB].dir.rglob("*"):  # the hub holds no identifier at all
        if path.is_file():
            texts[f"hub file {path.name}"] = path.read_bytes().decode("latin-1")
    for where, text in texts.items():
        hub_side = "hub" in where or where.startswith(HUB)
        for e in every if hub_side else rare:
            assert e not in text, f"{e} in {where}"
            assert fps[e].hex() not in text, f"fingerprint of {e} in {where}"
    for lab in LABS:
        with sqlite3.connect(consortium.labs[lab].dir / "crossmatch.db") as db:
            stored = {bytes(r[0]) for r in db.execute("SELECT fingerprint FROM consortium_matches")}
        assert stored == {fps[e] for e in holdings()[lab] if count(e) >= K}


def test_every_log_verifies_and_the_logs_reconcile(consortium, completed):
    for lab in [*LABS, HUB]:
        audit_ok(consortium.labs[lab].dir)
    dirs = [consortium.labs[lab].dir for lab in [*LABS, HUB]]
    proc = run_cli("audit", "reconcile-consortium", *dirs, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AGREE" in proc.stdout
