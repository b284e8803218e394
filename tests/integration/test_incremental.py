"""Epoch keys, incremental rounds and size padding between two real nodes (separate processes,
real gRPC and mutual TLS, real files). On ristretto255-v1 with verified matches: only such
rounds keep a key across rounds (ADR 0016)."""

from __future__ import annotations

import json
import sqlite3
import stat

import pytest

from node.demo.sandbox import Sandbox, run_cli, sandbox_policy
from node.runtime import CLOCK_OFFSET_ENV
from node.state.epochs import CACHE_FILE
from protocol.fingerprints import normalize
from tests.integration.conftest import audit_ok, import_values, matches_json, rounds_json

EMAILS_A = [f"user{i}@a.example" for i in range(100)] + [f"both{i}@x.example" for i in range(20)]
EMAILS_B = [f"user{i}@b.example" for i in range(60)] + [f"both{i}@x.example" for i in range(20)]
BUCKET = 64


@pytest.fixture(scope="module")
def padded_pair(tmp_path_factory):
    """lab-a and lab-b, both padding to multiples of 64, with 120 and 80 emails."""
    root = tmp_path_factory.mktemp("incremental")
    sandbox = Sandbox(root / "consortium")
    policy = sandbox_policy(suite="ristretto255-v1", verified_matches=True)
    sandbox.create(["lab-a", "lab-b"], policy=policy)
    data = root / "data"
    data.mkdir()
    for lab, values in (("lab-a", EMAILS_A), ("lab-b", EMAILS_B)):
        sandbox.labs[lab].configure(pad_to=BUCKET)
        import_values(sandbox.labs[lab].dir, "email", values, data)
    sandbox.start_all()
    sandbox.peer_all()
    yield sandbox
    sandbox.stop_all()


def work_line(lab, round_id: str) -> str:
    """The responder's log line of how much of a round came from the epoch cache."""
    for line in lab.serve_log().splitlines():
        if round_id in line and "re-blinded" in line:
            return json.loads(line)["msg"] if line.startswith("{") else line
    raise AssertionError(f"no work line for round {round_id} in {lab.name}'s log")


def round_now(lab, *args: str) -> dict:
    run_cli("round", lab.dir, "--peer", "lab-b", "--kinds", "email", *args)
    return rounds_json(lab.dir)[0]


def shared_values(lab_dir, rid: str) -> set[str]:
    return {m["value"] for m in matches_json(lab_dir, "--round", rid)}


def truth(mine: list[str], theirs: list[str]) -> set[str]:
    return {v for v in mine if normalize("email", v) in {normalize("email", t) for t in theirs}}


def test_padding_then_an_incremental_round_then_rotation(padded_pair, tmp_path, monkeypatch):
    a, b = padded_pair.labs["lab-a"], padded_pair.labs["lab-b"]

    # Round 1: sizes are announced, logged and signed as buckets; results are exact.
    first = round_now(a)
    assert first["status"] == "completed"
    assert first["own_sizes"] == {"email": 128} and first["peer_sizes"] == {"email": 128}
    assert shared_values(a.dir, first["round_id"]) == truth(EMAILS_A, EMAILS_B)
    assert shared_values(b.dir, first["round_id"]) == truth(EMAILS_B, EMAILS_A)
    assert "blinded 128 own elements (0 from the epoch cache)" in work_line(b, first["round_id"])
    for lab in (a, b):
        for f in lab.dir.iterdir():
            if f.name.startswith(CACHE_FILE):
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    # Churn: lab-a gains 2 (one also new at lab-b), lab-b gains 1. Still within the bucket.
    import_values(a.dir, "email", ["new1@a.example", "fresh@both.example"], tmp_path)
    import_values(b.dir, "email", ["fresh@both.example"], tmp_path)
    second = round_now(a)
    assert second["own_sizes"] == {"email": 128} and second["peer_sizes"] == {"email": 128}
    emails_a = EMAILS_A + ["new1@a.example", "fresh@both.example"]
    emails_b = EMAILS_B + ["fresh@both.example"]
    assert shared_values(a.dir, second["round_id"]) == truth(emails_a, emails_b)
    assert shared_values(b.dir, second["round_id"]) == truth(emails_b, emails_a)
    # lab-b blinded only its new element and re-blinded only lab-a's two new ones: every
    # other element, dummies included (same seed within the epoch), came from the cache.
    line = work_line(b, second["round_id"])
    assert "blinded 1 own elements (127 from the epoch cache)" in line, line
    assert "re-blinded 2 peer elements (126 from the cache)" in line, line

    # A count round uses a fresh key and no cache (and leaves the epoch cache alone).
    run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email", "--mode", "count")
    count = rounds_json(a.dir)[0]
    assert count["intersection_sizes"] == {"email": 21}
    assert "blinded 128 own elements (0 from the epoch cache)" in work_line(b, count["round_id"])
    assert matches_json(a.dir, "--round", count["round_id"]) == []

    keys_before = epoch_keys(b.dir)
    third = round_now(a)
    assert "blinded 0 own elements (128 from the epoch cache)" in work_line(b, third["round_id"])

    # Eight days later both epochs are over: new keys, nothing reused.
    eight_days = str(8 * 86400)
    monkeypatch.setenv(CLOCK_OFFSET_ENV, eight_days)
    b.stop()
    b.set_clock_offset(8 * 86400)
    b.start()
    run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
    fourth = round_now(a)
    line = work_line(b, fourth["round_id"])
    assert "blinded 128 own elements (0 from the epoch cache)" in line, line
    assert "re-blinded 128 peer elements (0 from the cache)" in line, line
    keys_after = epoch_keys(b.dir)
    name = "lab-a/ristretto255-v1"  # node/state/epochs.py key_name
    assert set(keys_after) == {name} and keys_after[name] != keys_before[name]
    assert shared_values(b.dir, fourth["round_id"]) == truth(emails_b, emails_a)
    audit_ok(a.dir)
    audit_ok(b.dir)


def epoch_keys(node_dir) -> dict[str, str]:
    db = sqlite3.connect(node_dir / CACHE_FILE)
    try:
        return dict(db.execute("SELECT peer, key_id FROM epoch_keys"))
    finally:
        db.close()


def test_a_broken_cache_file_never_fails_a_round(padded_pair):
    a = padded_pair.labs["lab-a"]
    cache = a.dir / CACHE_FILE
    for f in a.dir.iterdir():
        if f.name.startswith(CACHE_FILE):
            f.unlink()
    cache.write_bytes(b"not a database" * 100)
    cache.chmod(0o600)
    out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email")
    assert "completed" in out.stdout
    assert "epoch keys unavailable" in out.stderr
    rid = rounds_json(a.dir)[0]["round_id"]
    assert shared_values(a.dir, rid) >= truth(EMAILS_A, EMAILS_B)
    cache.unlink()
