"""Enforcement hooks against a real HTTP server on 127.0.0.1 (port 0) and a real command:
signature, idempotency across retries, spaced retries, timeouts, dead letter, audit."""

from __future__ import annotations

import http.server
import json
import stat
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.act.hooks import DEAD_LETTER, CaseEvent, Dispatcher, HookConfig, load_hooks
from node.state.auditlog import AuditLog, verify_log
from node.state.files import write_secret
from protocol import hooks as rules
from protocol.audit.records import make_log_id
from protocol.errors import ConfigError, VerificationError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = b"0123456789abcdef0123456789abcdef"
RAW_EMAIL = "mallory.actor@example.com"


class Script:
    """What the server does on each successive request: 'fail', 'slow', 'reject' or 'ok'."""

    def __init__(self) -> None:
        self.plan: list[str] = []
        self.received: list[dict] = []
        self.lock = threading.Lock()

    def next(self, headers: dict, body: bytes) -> str:
        with self.lock:
            self.received.append({"headers": headers, "body": body, "at": time.monotonic()})
            return self.plan.pop(0) if self.plan else "ok"


@pytest.fixture(scope="module")
def server():
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            action = script.next(dict(self.headers), body)
            if action == "slow":
                time.sleep(1.0)  # past the client's timeout
            code = {"fail": 503, "reject": 400}.get(action, 200)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, script
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def node_root(tmp_path: Path) -> Path:
    write_secret(tmp_path / "keys" / "soc.secret", SECRET + b"\n")
    return tmp_path


def webhook(root: Path, url: str, **kw: object) -> HookConfig:
    base: dict = dict(
        name="soc",
        on=("confirmed",),
        secret_file=root / "keys" / "soc.secret",
        url=url,
        max_attempts=4,
        backoff_seconds=2.0,
        backoff_max_seconds=60.0,
        timeout_seconds=0.3,
    )
    base.update(kw)
    return HookConfig(**base)


def event(state: str = "confirmed") -> CaseEvent:
    hashed = {
        "case_id": "case-7",
        "state": state,
        "entities": 3,
        "signals": [{"kind": "email", "value_hmac": "hmac-sha256-v1:ab"}],
    }
    raw = {**hashed, "signals": [{"kind": "email", "value": RAW_EMAIL}]}
    return CaseEvent("case-7", state, revision=2, hashed=hashed, raw=raw)


def dispatcher(root: Path, hooks: list[HookConfig], audit: list, sleeps: list) -> Dispatcher:
    return Dispatcher(
        root=root,
        lab="lab-a",
        hooks=hooks,
        audit=lambda e, b: audit.append((e, b)),
        clock=lambda: NOW,
        sleep=sleeps.append,
        draw=lambda: 0.5,
    )


def url_of(server) -> str:
    httpd, _ = server
    return f"http://127.0.0.1:{httpd.server_address[1]}/hook"


def test_fail_timeout_then_success_keeps_one_key_and_spaces_retries(server, node_root):
    _, script = server
    script.received.clear()
    script.plan = ["fail", "slow", "ok"]
    audit: list = []
    sleeps: list = []
    [result] = dispatcher(
        node_root, [webhook(node_root, url_of(server))], audit, sleeps
    ).case_reached(event())
    assert result.outcome == "delivered" and result.attempts == 3 and result.status == 200
    got = script.received
    assert len(got) == 3
    keys = {r["headers"][rules.IDEMPOTENCY_HEADER] for r in got}
    assert keys == {result.idempotency_key}, "the idempotency key must not change across retries"
    assert {r["body"] for r in got} == {got[0]["body"]}, "every retry sends the same body"
    for r in got:  # the receiver's check accepts every attempt
        rules.verify_signature(
            SECRET, r["headers"][rules.SIGNATURE_HEADER], r["body"], now=int(NOW.timestamp())
        )
    # Exponential with equal jitter at draw 0.5: 2 s * 0.75, then 4 s * 0.75.
    assert sleeps == [1.5, 3.0]
    payload = json.loads(got[0]["body"])
    assert payload["version"] == rules.PAYLOAD_VERSION and payload["event"] == "case.confirmed"
    assert RAW_EMAIL not in got[0]["body"].decode(), "hashed by default"
    [(name, body)] = audit
    assert name == "hook_delivery" and body["outcome"] == "delivered" and body["attempts"] == 3
    assert body["payload_sha256"] == rules.payload_sha256(got[0]["body"])


def test_a_forged_or_replayed_signature_is_refused(server, node_root):
    _, script = server
    script.received.clear()
    script.plan = ["ok"]
    dispatcher(node_root, [webhook(node_root, url_of(server))], [], []).case_reached(event())
    [r] = script.received
    header, body = r["headers"][rules.SIGNATURE_HEADER], r["body"]
    now = int(NOW.timestamp())
    with pytest.raises(VerificationError, match="does not match"):
        rules.verify_signature(SECRET, header, body.replace(b"case-7", b"case-8"), now=now)
    with pytest.raises(VerificationError, match="does not match"):
        rules.verify_signature(b"another-secret-of-enough-bytes", header, body, now=now)
    with pytest.raises(VerificationError, match="tolerance"):
        rules.verify_signature(SECRET, header, body, now=now + 3600)


def test_dead_letter_after_max_attempts_and_a_real_audit_record(server, node_root):
    _, script = server
    script.received.clear()
    script.plan = ["fail"] * 10
    key = Ed25519PrivateKey.generate()
    log_id = make_log_id("lab-a", key.public_key())
    log = AuditLog.open(node_root / "audit.log", key, log_id=log_id, now=NOW)
    sleeps: list = []
    hook = webhook(node_root, url_of(server), values="raw", max_attempts=3)
    d = Dispatcher(
        root=node_root,
        lab="lab-a",
        hooks=[hook],
        audit=lambda e, b: log.append(e, b, now=NOW),
        clock=lambda: NOW,
        sleep=sleeps.append,
        draw=lambda: 0.0,
    )
    [result] = d.case_reached(event())
    log.close()
    assert result.outcome == "dead_letter" and result.attempts == 3 and result.status == 503
    assert len(script.received) == 3 and sleeps == [1.0, 2.0]
    dead = node_root / DEAD_LETTER
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600
    [line] = dead.read_text().splitlines()
    entry = json.loads(line)
    assert entry["idempotency_key"] == result.idempotency_key and entry["error"] == "http 503"
    assert RAW_EMAIL in entry["payload"], "raw was configured: the dead letter can be replayed"
    report = verify_log(node_root / "audit.log", public_key=key.public_key())
    assert report.size == 2 and report.records[1]["event"] == "hook_delivery"
    text = (node_root / "audit.log").read_text()
    assert result.payload_sha256 in text and RAW_EMAIL not in text, "audit holds the hash only"


def test_a_final_4xx_is_not_retried(server, node_root):
    _, script = server
    script.received.clear()
    script.plan = ["reject"]
    sleeps: list = []
    [result] = dispatcher(node_root, [webhook(node_root, url_of(server))], [], sleeps).case_reached(
        event()
    )
    assert result.outcome == "dead_letter" and result.attempts == 1 and sleeps == []


def test_refused_connection_is_retried_then_dead_lettered(node_root):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list = []
    hook = webhook(node_root, f"http://127.0.0.1:{port}/", max_attempts=2)
    [result] = dispatcher(node_root, [hook], [], sleeps).case_reached(event())
    assert result.outcome == "dead_letter" and result.attempts == 2 and len(sleeps) == 1


def test_only_configured_states_trigger(server, node_root):
    _, script = server
    script.received.clear()
    results = dispatcher(node_root, [webhook(node_root, url_of(server))], [], []).case_reached(
        event("new")
    )
    assert results == [] and script.received == []


def test_command_hook_gets_the_payload_on_stdin(node_root):
    out = node_root / "got.json"
    script = (
        "import os,sys,pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read()"
        "+b'\\n'+os.environ['CROSSMATCH_IDEMPOTENCY_KEY'].encode())"
    )
    hook = HookConfig(
        name="blocker",
        on=("confirmed",),
        secret_file=node_root / "keys/soc.secret",
        command=(sys.executable, "-c", script, str(out)),
        timeout_seconds=30,
    )
    audit: list = []
    [result] = dispatcher(node_root, [hook], audit, []).case_reached(event())
    assert result.outcome == "delivered"
    body, key = out.read_bytes().rsplit(b"\n", 1)
    assert key.decode() == result.idempotency_key
    assert json.loads(body)["case"]["case_id"] == "case-7"
    assert audit[0][1]["transport"] == "command"


def test_a_failing_command_is_retried_with_its_exit_code(node_root):
    hook = HookConfig(
        name="blocker",
        on=("confirmed",),
        secret_file=node_root / "keys/soc.secret",
        command=(sys.executable, "-c", "import sys; sys.exit('nope')"),
        max_attempts=2,
        timeout_seconds=30,
    )
    [result] = dispatcher(node_root, [hook], [], []).case_reached(event())
    assert result.outcome == "dead_letter" and result.status == 1 and "nope" in result.error


def test_a_secret_readable_by_others_is_refused(server, node_root):
    (node_root / "keys" / "soc.secret").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        dispatcher(node_root, [webhook(node_root, url_of(server))], [], []).case_reached(event())


def test_hook_config_errors_name_the_hook(tmp_path):
    good = {"name": "soc", "url": "http://127.0.0.1:1/", "secret_file": "keys/s"}
    assert load_hooks(tmp_path, {"hooks": [good]})[0].on == ("confirmed",)
    for bad, message in (
        ({**good, "command": ["x"]}, "exactly one"),
        ({**good, "on": ["shipped"]}, "unknown states"),
        ({**good, "url": "file:///etc/passwd"}, "http"),
        ({**good, "values": "plain"}, "values"),
        ({k: v for k, v in good.items() if k != "secret_file"}, "secret_file"),
    ):
        with pytest.raises(ConfigError, match=message) as e:
            load_hooks(tmp_path, {"hooks": [bad]})
        assert "hook soc" in str(e.value)
