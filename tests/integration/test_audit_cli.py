"""`crossmatch audit ...` run as a reviewer runs it: a subprocess on copies of two labs' files.

The logs are written by the real AuditLog with two real key pairs; the rounds are
the bookkeeping end of a round (receipts, records, checkpoints) without the network.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from node.ops.report import EXPORT_COLUMNS, csv_row, export_row
from node.state.auditlog import AuditLog
from protocol.audit.records import make_log_id
from tests.audit_simulator import T0, Lab, fixed_key, forge_log, populate, round_id

ROOT = Path(__file__).resolve().parents[2]
CROSSMATCH = Path(sys.executable).with_name("crossmatch")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ROUNDS = 6


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(*args: object, cwd: Path) -> Result:
    command = [str(CROSSMATCH)] if CROSSMATCH.exists() else [sys.executable, "-m", "node"]
    done = subprocess.run(
        [*command, "audit", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    return Result(done.returncode, done.stdout, done.stderr)


def pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Two node directories (audit.log, audit.checkpoint, keys/audit.pub) and a peer-keys dir."""
    root = tmp_path_factory.mktemp("audit-cli")
    labs = []
    for name in ("lab-a", "lab-b"):
        node = root / name
        (node / "keys").mkdir(parents=True)
        key = fixed_key(name)
        (node / "keys" / "audit.pub").write_bytes(pem(key))
        log = AuditLog.open(
            node / "audit.log", key, log_id=make_log_id(name, key.public_key()), now=T0
        )
        labs.append(Lab(name, key, log))
    populate(labs[0], labs[1], rounds=ROUNDS)
    labs[0].log.append(
        "round_aborted",
        {"round_id": round_id(98), "role": "responder", "peer": "lab-<b>",
         "stage": "exchange", "reason": "<script>alert('x')</script> & more", "rule": "a<b"},
        now=labs[0].now(),
    )  # fmt: skip
    for lab in labs:
        lab.log.close()
    (root / "peers").mkdir()
    for name in ("lab-a", "lab-b"):
        shutil.copy(root / name / "keys" / "audit.pub", root / "peers" / f"{name}.pub")
    return root


@pytest.fixture
def copy(world: Path, tmp_path: Path):
    """A fresh copy of one lab's node directory, to tamper with."""

    def make(name: str) -> Path:
        return Path(shutil.copytree(world / name, tmp_path / name))

    return make


def lines_of(log: Path) -> list[bytes]:
    return log.read_bytes().splitlines(keepends=True)


def index_of(lines: list[bytes], event: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(lines) if json.loads(line)["event"] == event][nth]


# -- verify -------------------------------------------------------------------------------


def test_verify_node_directory_with_peer_keys(world):
    result = run("verify", "lab-a", "--peer-keys", "peers", cwd=world)
    assert result.code == 0, result.err
    assert result.out.startswith("log crossmatch-audit/lab-a/")
    assert "key: " in result.out and "from lab-a/keys/audit.pub" in result.out
    assert f"peer receipts verified with peer keys: {ROUNDS}" in result.out
    assert "external checkpoint at size" in result.out  # the node's audit.checkpoint


def test_verify_bare_file_says_its_key_is_self_asserted(world):
    result = run("verify", "lab-b/audit.log", cwd=world)
    assert result.code == 0, result.err
    assert "embedded in the log" in result.out
    assert f"NOT signature-checked (no key for lab-a): {ROUNDS}" in result.out


def test_node_directory_without_its_public_key_falls_back_to_the_embedded_key(copy, world):
    node = copy("lab-a")
    (node / "keys" / "audit.pub").unlink()
    result = run("verify", node, cwd=world)
    assert result.code == 0, result.err
    assert "embedded in the log" in result.out


def test_verify_json(world):
    result = run("verify", "lab-b", "--json", cwd=world)
    doc = json.loads(result.out)
    assert doc["ok"] is True and doc["lab"] == "lab-b" and doc["key_source"] == "supplied"


def test_verify_fails_after_deleting_one_round_record(copy, world):
    node = copy("lab-b")
    lines = lines_of(node / "audit.log")
    i = index_of(lines, "round_completed", 2)
    (node / "audit.log").write_bytes(b"".join(lines[:i] + lines[i + 1 :]))
    result = run("verify", node, cwd=world)
    assert result.code == 3
    assert f"record {i}: seq is {i + 1}, expected {i}" in result.err
    assert "[rule: seq]" in result.err


def test_verify_fails_on_any_single_byte_change(copy, world):
    node = copy("lab-a")
    data = bytearray((node / "audit.log").read_bytes())
    lines = lines_of(node / "audit.log")
    i = index_of(lines, "round_completed", 1)
    offset = sum(map(len, lines[:i])) + lines[i].index(b'"intersection_sizes":{"email":') + 30
    data[offset] ^= 0x01  # a digit of a count becomes another digit
    (node / "audit.log").write_bytes(bytes(data))
    result = run("verify", node, cwd=world)
    assert result.code == 3 and f"record {i}: signature does not verify" in result.err
    assert "[rule: record-signature]" in result.err


def test_verify_reports_a_torn_last_line(copy, world):
    node = copy("lab-a")
    with open(node / "audit.log", "ab") as f:
        f.write(b'{"body":{"lab"')
    result = run("verify", node, cwd=world)
    assert result.code == 3 and "torn last line: 14 bytes" in result.err
    assert "[rule: torn-line]" in result.err


def test_verify_fails_with_the_wrong_key(world):
    result = run("verify", "lab-a/audit.log", "--key", "lab-b/keys/audit.pub", cwd=world)
    assert result.code == 3 and "record 0" in result.err and "[rule: log-key]" in result.err


# -- consistent forgery ---------------------------------------------------------------------


@pytest.fixture
def forged_b(world, tmp_path) -> Path:
    """Lab B rebuilds its whole log with its own key, claiming it imported fewer signals."""
    node = tmp_path / "lab-b-forged"
    (node / "keys").mkdir(parents=True)
    shutil.copy(world / "lab-b" / "keys" / "audit.pub", node / "keys" / "audit.pub")
    lines = [line.rstrip(b"\n") for line in lines_of(world / "lab-b" / "audit.log")]

    def edit(record: dict) -> None:
        if record["event"] == "signals_imported":
            record["body"].update(added=12, total=12)

    forged = forge_log(lines, fixed_key("lab-b"), "lab-b", edit=edit)
    (node / "audit.log").write_bytes(forged.data())
    return node


def test_consistent_forgery_verifies_alone(forged_b, world):
    result = run("verify", forged_b, "--peer-keys", "peers", cwd=world)
    assert result.code == 0, result.err


def test_consistent_forgery_is_exposed_by_a_checkpoint_the_peer_holds(forged_b, world):
    held = world / "lab-b" / "audit.checkpoint"  # e.g. a copy lab A kept
    result = run("verify", forged_b, "--checkpoint", held, cwd=world)
    assert result.code == 3, result.out
    assert "the log was rewritten" in result.err and "[rule: checkpoint-root]" in result.err


def test_consistent_forgery_is_exposed_by_reconcile(forged_b, world):
    result = run("reconcile", "lab-a", forged_b, cwd=world)
    assert result.code == 3
    rewritten = [line for line in result.out.splitlines() if "[rule: log-rewritten]" in line]
    assert len(rewritten) == ROUNDS
    assert "DISAGREE" in result.out
    assert "discrepancies between the logs of lab-a and lab-b" in result.err


# -- reconcile ------------------------------------------------------------------------------


def test_reconcile_honest_logs(world):
    result = run("reconcile", "lab-a", "lab-b", cwd=world)
    assert result.code == 0, result.out + result.err
    assert "AGREE" in result.out and f"compared: {ROUNDS}" in result.out


def test_reconcile_bare_files_with_keys(world):
    result = run(
        "reconcile", "lab-b/audit.log", "lab-a/audit.log",
        "--key-a", "peers/lab-b.pub", "--key-b", "peers/lab-a.pub", "--json", cwd=world,
    )  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] and doc["rounds_compared"] == ROUNDS and doc["receipts_anchored"] == 2 * ROUNDS


def test_reconcile_lists_a_round_missing_from_one_log(copy, world):
    node = copy("lab-b")
    lines = lines_of(node / "audit.log")
    last = index_of(lines, "round_completed", ROUNDS - 1)
    (node / "audit.log").write_bytes(b"".join(lines[:last]))  # cut back: still a valid log
    (node / "audit.checkpoint").unlink()
    result = run("reconcile", "lab-a", node, cwd=world)
    assert result.code == 3
    assert (
        f"round {round_id(ROUNDS - 1)}: completed in lab-a's log, absent from lab-b's log"
        in result.out
    )


def test_reconcile_refuses_a_log_that_does_not_verify(copy, world):
    node = copy("lab-b")
    with open(node / "audit.log", "ab") as f:
        f.write(b"{")
    result = run("reconcile", "lab-a", node, cwd=world)
    assert result.code == 3 and "log B does not verify" in result.err


# -- proofs ---------------------------------------------------------------------------------


def test_inclusion_proof_round_trip(world, tmp_path):
    proof = tmp_path / "proof.json"
    assert run("prove", "lab-a", "--record", 3, "--out", proof, cwd=world).code == 0
    doc = json.loads(proof.read_text())
    assert doc["v"] == "crossmatch-inclusion-proof/v1" and doc["leaf_index"] == 3
    result = run("check-proof", proof, "--key", "peers/lab-a.pub", cwd=world)
    assert result.code == 0, result.err
    assert "record signature verified" in result.out and "signature verified" in result.out
    doc["record"] = doc["record"].replace('"mode":"count"', '"mode":"reveal"')
    proof.write_text(json.dumps(doc))
    result = run("check-proof", proof, "--key", "peers/lab-a.pub", cwd=world)
    assert result.code == 3 and "[rule: proof-leaf]" in result.err


def test_consistency_proof_against_a_held_checkpoint(world, tmp_path):
    proof = tmp_path / "consistency.json"
    result = run("consistency", "lab-b", "--from", 4, cwd=world)
    assert result.code == 0, result.err
    proof.write_text(result.out)
    doc = json.loads(result.out)
    assert doc["size1"] == 4 and doc["size2"] > 4 and doc["proof"]
    result = run(
        "check-proof", proof, "--key", "peers/lab-b.pub",
        "--checkpoint", "lab-b/audit.checkpoint", cwd=world,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "is a prefix of the log at size" in result.out
    wrong = run("check-proof", proof, "--key", "peers/lab-a.pub", cwd=world)
    assert wrong.code == 3 and "is not signed by the given key" in wrong.err


def test_prove_a_record_that_does_not_exist(world):
    result = run("prove", "lab-a", "--record", 10_000, cwd=world)
    assert result.code == 3 and "does not exist" in result.err


# -- export ---------------------------------------------------------------------------------


def test_export_csv_and_jsonl(world):
    records = len(lines_of(world / "lab-a" / "audit.log"))
    table = run("export", "lab-a", "--format", "csv", cwd=world)
    assert table.code == 0, table.err
    rows = list(csv.DictReader(io.StringIO(table.out)))
    assert len(rows) == records and rows[0]["event"] == "log_created"
    completed = [r for r in rows if r["event"] == "round_completed"]
    assert len(completed) == ROUNDS and completed[0]["peer"] == "lab-b"
    assert completed[0]["intersection_sizes"] == "email=9;phone=4"
    aborted = [r for r in rows if r["reason"].startswith("<script>")]
    assert aborted and aborted[0]["rule"] == "a<b"
    jsonl = run("export", "lab-a", "--format", "jsonl", cwd=world)
    docs = [json.loads(line) for line in jsonl.out.splitlines()]
    assert len(docs) == records and docs[3]["intersection_sizes"] == {"email": 9, "phone": 4}


def test_export_defuses_spreadsheet_formulas():
    body = {"reason": '=HYPERLINK("http://x")', "claimed_lab": "@x", "peer": "p", "rule": "r"}
    record = {"seq": 1, "time": "t", "event": "round_refused", "body": body}
    cells = dict(zip(EXPORT_COLUMNS, csv_row(export_row(record, b"\0" * 32)), strict=True))
    assert cells["peer"] == "'@x" and cells["reason"] == '\'=HYPERLINK("http://x")'


# -- report ---------------------------------------------------------------------------------


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    pytest.skip("no chromium binary: install it with `apt-get install -y chromium`")


def render(page: Path, profile: Path) -> str:
    flags = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
    )  # fmt: skip
    done = subprocess.run(
        [chromium(), *flags, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_renders_in_headless_chromium(world, tmp_path):
    page = tmp_path / "report.html"
    result = run("report", "lab-a", "--peer-keys", "peers", "--out", page, cwd=world)
    assert result.code == 0, result.err
    source = page.read_text()
    assert "<script" not in source and "http://" not in source.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # self-contained: no scripts, no external assets
    dom = render(page, tmp_path / "profile")
    assert "Verification: PASSED" in dom
    assert '<svg id="rounds-chart"' in dom
    bars = dom.count('class="bar completed"')
    assert bars >= 1 and 'data-peer="lab-b"' in dom
    completed = [int(chunk.split('"', 1)[0]) for chunk in dom.split('data-count="')[1:]]
    assert sum(completed) == ROUNDS + 2  # six completed, two aborted rounds
    table = dom.split('<table id="rounds-table">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + ROUNDS + 2
    assert "email 9, phone 4" in table and "count" in table and "reveal" in table
    problems = dom.split('<table id="problems-table">', 1)[1].split("</table>", 1)[0]
    assert "peer unavailable: connection refused" in problems
    # the hostile reason is shown as text, never run or parsed as markup
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; more" in problems
    assert "<script>" not in dom and "lab-&lt;b&gt;" in dom


def test_report_of_a_tampered_log_says_failed(copy, world, tmp_path):
    node = copy("lab-a")
    lines = lines_of(node / "audit.log")
    i = index_of(lines, "round_completed", 3)
    (node / "audit.log").write_bytes(b"".join(lines[:i] + lines[i + 1 :]))
    page = tmp_path / "report.html"
    result = run("report", node, "--out", page, cwd=world)
    assert result.code == 3 and f"record {i}" in result.err
    dom = render(page, tmp_path / "profile")
    assert "Verification: FAILED" in dom and "[rule: seq]" in dom
    table = dom.split('<table id="rounds-table">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 3  # only the rounds before the failure are shown
