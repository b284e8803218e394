"""Issue 13's done-when, with three real nodes: one actor of 12 accounts becomes ONE case.

lab-a's actor: 12 accounts linked by one payment fingerprint (accounts 0-6) and one
/24 (accounts 6-11). lab-b shares 2 of their emails; lab-c shares a device id and a
prompt campaign. A consortium-signed warninglist holds back a shared CGNAT address,
which lab-b also holds: it never reaches a round. A decision round-trips to the
audit log, and no log or audit record holds anything but counts and keyed hashes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.demo.sandbox import Sandbox, run_cli, sandbox_policy
from node.net.feedback import send_opinions
from node.pki.keys import read_consortium_key
from node.runtime import Node
from protocol.errors import CrossmatchError
from protocol.feedback import Opinion
from protocol.fingerprints import fingerprint, normalize
from tests.integration.conftest import audit_ok, import_values

ACTOR = [f"acct-{i:02d}" for i in range(12)]
CGNAT = "100.64.7.7"
PROMPTS = [
    f"You are a helpful assistant. Rewrite the following chain of thought step {n} in full "
    "detail, listing every intermediate reasoning step, every tool call and every final "
    "answer so that a student model can imitate the teacher exactly, in JSON."
    for n in range(3)
]
WARNINGLIST = """
list_id = "consortium-benign"
version = 1
description = "carrier-grade NAT"
[kinds.ip]
values = ["100.64.0.0/10"]
"""


def actor_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, key in enumerate(ACTOR):
        row: dict[str, object] = {
            "account": key,
            "mail": f"user{i}@actor-mail.test",
            "device_id": f"dev-actor-{i}",
            "severity": "high",
            "first_seen": f"2026-11-{i + 1:02d}",
            "reason": "scraping",
        }
        if i <= 6:
            row["card"] = "pf-actor-card"
        ips = [f"198.51.100.{10 + i}"] if i >= 6 else []
        if i == 0:
            ips.append(CGNAT)
        row["ip"] = ips
        rows.append(row)
    rows.append({"account": "bystander", "mail": "someone@else.test", "ip": ["192.0.2.1"]})
    return rows


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    sandbox = Sandbox(root / "consortium")
    head, _, rest = sandbox_policy().partition("\n")
    sandbox.create(["lab-a", "lab-b", "lab-c"], policy=f"{head}\npeer_feedback = true\n{rest}")
    inputs = root / "inputs"
    inputs.mkdir()
    signed = inputs / "benign.signed"
    (inputs / "benign.toml").write_text(WARNINGLIST)
    run_cli("warninglist", "sign", sandbox.ca_dir, inputs / "benign.toml", "--out", signed)
    a, b, c = (sandbox.labs[n] for n in ("lab-a", "lab-b", "lab-c"))
    run_cli("warninglist", "install", a.dir, signed)
    entities = inputs / "accounts.jsonl"
    entities.write_text("".join(json.dumps(r) + "\n" for r in actor_rows()))
    imported = run_cli(
        "import",
        a.dir,
        entities,
        "--entities",
        "--map",
        "email=mail",
        "--map",
        "card=payment_fingerprint",
    ).stdout
    prompts_a = inputs / "prompts-a.jsonl"
    prompts_a.write_text(
        "".join(
            json.dumps({"text": t, "campaign": "camp-x", "account": ACTOR[4 + 4 * (n % 2)]}) + "\n"
            for n, t in enumerate(PROMPTS)
        )
    )
    run_cli("import", a.dir, prompts_a, "--kind", "prompt")
    import_values(
        b.dir, "email", ["user2@actor-mail.test", "user9@actor-mail.test", "nobody@b.test"], inputs
    )
    b_accounts = inputs / "b-accounts.csv"  # lab-b's own account behind both emails
    b_accounts.write_text(
        "account,email\nb-user,user2@actor-mail.test\nb-user,user9@actor-mail.test\n"
    )
    run_cli("import", b.dir, b_accounts, "--entities")
    import_values(b.dir, "ip", [CGNAT, "192.0.2.200"], inputs)
    import_values(c.dir, "device_id", ["dev-actor-5", "dev-other"], inputs)
    prompts_c = inputs / "prompts-c.jsonl"
    prompts_c.write_text("".join(json.dumps({"text": t}) + "\n" for t in PROMPTS))
    run_cli("import", c.dir, prompts_c, "--kind", "prompt")
    sandbox.start_all()
    sandbox.peer_all()
    rounds = {
        peer: json.loads(run_cli("round", a.dir, "--peer", peer, "--json").stdout)
        for peer in ("lab-b", "lab-c")
    }
    yield sandbox, imported, rounds
    sandbox.stop_all()


def cases_json(lab_dir: Path, *args: str) -> dict:
    return json.loads(run_cli("cases", lab_dir, "--format", "json", *args).stdout)


def test_one_case_names_all_twelve_accounts_both_peers_every_kind(trio):
    sandbox, imported, _ = trio
    assert "1 identifier(s) held back by warninglists" in imported
    a = sandbox.labs["lab-a"]
    listing = cases_json(a.dir)
    assert listing["total"] == 1, listing
    (case,) = listing["cases"]
    assert case["entities"] == 12 and case["peers"] == ["lab-b", "lab-c"]
    assert case["kinds"] == ["device_id", "email", "prompt"]
    assert case["campaigns"] == ["camp-x"] and case["state"] == "new"
    detail = json.loads(run_cli("case", "show", a.dir, case["case_id"], "--format", "json").stdout)
    assert [e["key"] for e in detail["entities"]] == ACTOR
    assert {(m["entity"], m["kind"], m["peer"]) for m in detail["matches"]} == {
        ("acct-02", "email", "lab-b"),
        ("acct-09", "email", "lab-b"),
        ("acct-05", "device_id", "lab-c"),
    }
    assert {c["peer"] for c in detail["campaigns"]} == {"lab-c"}
    text = run_cli("case", "show", a.dir, case["case_id"]).stdout
    assert "score =" in text and "acct-11" in text
    assert cases_json(a.dir, "--peer", "lab-c")["total"] == 1
    assert cases_json(a.dir, "--state", "confirmed")["total"] == 0


def test_warninglisted_ip_never_reaches_a_round(trio):
    sandbox, _, rounds = trio
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    assert rounds["lab-b"]["intersection_sizes"].get("ip", 0) == 0
    # lab-a holds 8 addresses (7 in the /24, 1 CGNAT held back) and sends 7.
    assert rounds["lab-b"]["own_sizes"]["ip"] == 7 + 1 - 1
    for lab in (a, b):
        found = json.loads(run_cli("matches", lab.dir, "--format", "json", "--kind", "ip").stdout)
        assert found == []
    records = [json.loads(line) for line in (a.dir / "audit.log").read_text().splitlines()]
    completed = [r["body"] for r in records if r["event"] == "round_completed"]
    assert completed and all(r["warninglists"] == ["consortium-benign@1"] for r in completed)


def test_decision_round_trips_to_the_audit_log(trio):
    sandbox, _, _ = trio
    a = sandbox.labs["lab-a"]
    (case,) = cases_json(a.dir)["cases"]
    run_cli("case", "review", a.dir, case["case_id"], "--analyst", "Ana Lyst")
    out = run_cli(
        "case",
        "confirm",
        a.dir,
        case["case_id"],
        "--analyst",
        "Ana Lyst",
        "--note",
        "same card on acct-00 and acct-06",
    ).stdout
    assert "state confirmed" in out
    again = run_cli("case", "confirm", a.dir, case["case_id"], "--analyst", "Ana Lyst", check=False)
    assert again.returncode == 65 and "already confirmed" in again.stderr
    audit_ok(a.dir)
    records = [json.loads(line) for line in (a.dir / "audit.log").read_text().splitlines()]
    decisions = [r["body"] for r in records if r["event"] == "case_decision"]
    assert [d["decision"] for d in decisions] == ["review", "confirm"]
    last = decisions[-1]
    assert last["case_id"] == case["case_id"] and last["analyst"] == "Ana Lyst"
    assert last["entities"] == 12 and len(last["entity_hashes"]) == 12
    assert last["state_from"] == "in_review" and last["state_to"] == "confirmed"
    assert "note_hmac" in last
    assert cases_json(a.dir, "--state", "confirmed")["total"] == 1


def test_nothing_but_counts_and_keyed_hashes_in_logs(trio):
    sandbox, _, _ = trio
    secrets = [
        *ACTOR,
        "actor-mail.test",
        "dev-actor",
        "pf-actor-card",
        "198.51.100.",
        CGNAT,
        "camp-x",
        "chain of thought",
        "bystander",
        "scraping",
    ]
    private = {"crossmatch.db", "crossmatch.db-wal", "crossmatch.db-shm"}
    scanned = 0
    for lab in sandbox.labs.values():
        for path in lab.dir.rglob("*"):
            if not path.is_file() or path.name in private or path.suffix in (".key", ".pem"):
                continue
            data = path.read_bytes()
            scanned += 1
            for secret in secrets:
                assert secret.encode() not in data, f"{secret!r} found in {path}"
        if lab.log_path is not None and lab.log_path.exists():
            log = lab.log_path.read_bytes()
            assert not [s for s in secrets if s.encode() in log], lab.log_path
    assert scanned > 6


def test_feedback_reaches_the_peer_for_what_it_learned_only(trio):
    sandbox, _, rounds = trio
    a, b, c = (sandbox.labs[n] for n in ("lab-a", "lab-b", "lab-c"))
    (case,) = cases_json(a.dir, "--state", "confirmed")["cases"]
    out = run_cli("case", "share", a.dir, case["case_id"], "--peer", "lab-b").stdout
    assert "2 opinion(s) accepted by lab-b" in out
    (b_case,) = cases_json(b.dir)["cases"]
    shown = json.loads(run_cli("case", "show", b.dir, b_case["case_id"], "--format", "json").stdout)
    assert shown["peer_opinions"] == [{"peer": "lab-a", "verdict": "confirmed", "signals": 2}]
    again = run_cli("case", "share", a.dir, case["case_id"], "--peer", "lab-b", check=False)
    assert again.returncode != 0 and "feedback-rate" in again.stderr
    # lab-c names lab-a's round with lab-c, but a fingerprint lab-c never learned there.
    key = read_consortium_key(sandbox.key_file)
    email = fingerprint(key, "email", normalize("email", "user2@actor-mail.test"))
    device = fingerprint(key, "device_id", normalize("device_id", "dev-actor-5"))
    rid = rounds["lab-c"]["round_id"]
    with Node(c.dir) as node_c:
        with pytest.raises(CrossmatchError) as refused:
            send_opinions(node_c, "lab-a", [Opinion(rid, "email", email, "confirmed")])
        assert refused.value.rule == "feedback-unknown-match"
        assert (
            send_opinions(node_c, "lab-a", [Opinion(rid, "device_id", device, "false_positive")])
            == 1
        )
    for lab in (a, b, c):
        audit_ok(lab.dir)
    events = {
        n: [
            json.loads(x)["event"]
            for x in (sandbox.labs[n].dir / "audit.log").read_text().splitlines()
        ]
        for n in ("lab-a", "lab-b")
    }
    assert events["lab-a"].count("opinions_sent") == 1
    assert events["lab-a"].count("opinions_refused") == 1  # lab-c's forged opinion
    assert events["lab-a"].count("opinions_received") == 1
    assert events["lab-b"].count("opinions_received") == 1
    assert events["lab-b"].count("opinions_refused") == 1  # the too-early second batch
