"""What an operator sees and uses: health, reflection, metrics, JSON logs without
identifiers, status, revocation picked up by a running daemon, and the audited
retention purge. Real `serve` processes on loopback."""

from __future__ import annotations

import json
import re

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from node import pki
from node.config import NodePaths
from node.demo.sandbox import Sandbox, run_cli
from node.net.channel import channel_options
from tests.integration.conftest import audit_ok, import_values, matches_json, rounds_json

SHARED = [f"Shared.Person{i}@Mail.Example" for i in range(6)]


def values(name: str) -> list[str]:
    return SHARED + [f"only.{name}{i}@mail.example" for i in range(10)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    sandbox = Sandbox(root / "c")
    sandbox.create(["lab-a", "lab-b"])
    for name in ("lab-a", "lab-b"):
        import_values(sandbox.labs[name].dir, "email", values(name), root)
        sandbox.labs[name].configure(metrics_listen="127.0.0.1:0")
    sandbox.start_all()
    sandbox.peer_all()
    yield sandbox
    sandbox.stop_all()


def channel_as(pair, me: str, target: str) -> grpc.Channel:
    p = NodePaths(pair.labs[me].dir)
    creds = pki.channel_credentials(
        p.tls_key.read_bytes(), p.tls_cert.read_bytes(), p.ca_cert.read_bytes()
    )
    return grpc.secure_channel(pair.labs[target].address, creds, options=channel_options(target))


def test_health_reflection_metrics_and_logs(pair):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    out = json.loads(run_cli("round", a.dir, "--peer", "lab-b", "--json").stdout)
    assert out["intersection_sizes"] == {"email": 6}
    with channel_as(pair, "lab-a", "lab-b") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="crossmatch.v1.Crossmatch"), timeout=5
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"crossmatch.v1.Crossmatch", "grpc.health.v1.Health"} <= names

    samples = b.metrics()
    completed = 'crossmatch_rounds_total{outcome="completed",peer="lab-a",role="responder"}'
    assert samples[completed] == 1
    assert samples['crossmatch_elements_processed_total{kind="email"}'] == 32
    assert (
        samples['crossmatch_round_duration_seconds_count{outcome="completed",role="responder"}']
        == 1
    )
    assert samples['crossmatch_rounds_in_flight{role="responder"}'] == 0
    assert samples["crossmatch_up"] == 1
    assert samples["crossmatch_certificate_expiry_timestamp_seconds"] > 0
    assert samples["crossmatch_policy_expiry_timestamp_seconds"] > 0

    # Logs are JSON lines and, like the audit logs, never carry an identifier.
    raw = [v for name in ("lab-a", "lab-b") for v in values(name)]
    for lab in (a, b):
        log_text = lab.serve_log()
        events = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
        assert any(e.get("event") == "node_started" for e in events)
        if lab is b:  # the responder's daemon logged the round; lab-a ran it from the CLI
            assert any(e.get("event") == "round_completed" and e["peer"] == "lab-a" for e in events)
        assert all({"ts", "level", "logger", "msg"} <= set(e) for e in events)
        audit_text = (lab.dir / "audit.log").read_text()
        for value in raw:
            for form in (value, value.lower()):
                assert form not in log_text and form not in audit_text


def test_status_shows_peers_rounds_and_errors(pair):
    a = pair.labs["lab-a"]
    text = run_cli("status", a.dir).stdout
    assert re.search(r"lab lab-a: serving on 127\.0\.0\.1:\d+, metrics on http://", text)
    assert "policy: sandbox v1" in text and "WARNING" not in text
    assert re.search(r"lab-b\s+lab-a\s+\d+\s+\S+Z\s+completed\s+manual", text), text
    data = json.loads(run_cli("status", a.dir, "--json").stdout)
    assert data["peers"][0]["last_shared"] == {"email": 6}
    assert data["certificate"]["days_left"] > 300


def test_certificate_expiry_is_warned_about(pair, tmp_path):
    node = tmp_path / "short"
    run_cli(
        "init",
        node,
        "--lab",
        "lab-s",
        "--ca-cert",
        pair.ca_dir / "ca.crt",
        "--consortium-key",
        pair.key_file,
        "--listen",
        "127.0.0.1:0",
    )
    run_cli(
        "ca",
        "issue",
        pair.ca_dir,
        node / "tls" / "node.csr",
        "--out",
        tmp_path / "s.crt",
        "--days",
        "10",
    )
    run_cli("cert", "install", node, tmp_path / "s.crt")
    text = run_cli("status", node).stdout
    assert "NOT RUNNING" in text
    assert re.search(r"WARNING: certificate expires in (9|10) days: renew it", text), text
    assert "WARNING: no signed consortium policy installed" in text


def test_revocation_list_is_honoured_by_a_running_responder(pair, tmp_path):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    old_crl = tmp_path / "crl-0.pem"
    old_crl.write_bytes((pair.ca_dir / "crl.pem").read_bytes())
    run_cli("ca", "revoke", pair.ca_dir, "--cert", a.dir / "tls" / "node.crt")
    run_cli("crl", "install", b.dir, pair.ca_dir / "crl.pem")
    proc = run_cli("round", a.dir, "--peer", "lab-b", check=False)
    assert proc.returncode == 77 and "[rule: certificate-revoked]" in proc.stderr
    assert json.loads(run_cli("status", b.dir, "--json").stdout)["revoked_serials"] == 1
    proc = run_cli("crl", "install", b.dir, old_crl, check=False)
    assert proc.returncode == 77 and "[rule: crl-rollback]" in proc.stderr
    assert b.metrics()['crossmatch_refusals_total{rule="certificate-revoked"}'] == 1
    audit_ok(b.dir)


def test_retention_purge_runs_in_the_daemon_and_is_audited(pair):
    a = pair.labs["lab-a"]
    assert matches_json(a.dir)
    a.stop()
    accounts = a.dir.parent / "accounts.csv"  # two flagged accounts, imported today
    accounts.write_text(f"account,email\nacct-1,{SHARED[0]}\nacct-2,{SHARED[1]}\n")
    run_cli("import", a.dir, accounts, "--entities")
    a.set_clock_offset(91 * 86400)  # the sandbox policy keeps matches (and entities) 90 days
    a.start()
    a.stop()
    assert matches_json(a.dir) == []
    assert any(r["status"] == "completed" for r in rounds_json(a.dir))  # rounds are kept
    purges = [
        json.loads(line)
        for line in (a.dir / "audit.log").read_text().splitlines()
        if '"matches_purged"' in line
    ]
    assert len(purges) == 1 and purges[0]["body"]["count"] == 6
    assert purges[0]["body"]["retention_days"] == 90
    (entities,) = [
        json.loads(line)["body"]
        for line in (a.dir / "audit.log").read_text().splitlines()
        if '"entities_purged"' in line
    ]
    assert (entities["entities"], entities["links"]) == (2, 2)
    assert entities["before"] == purges[0]["body"]["before"]
    assert "acct-1" not in (a.dir / "audit.log").read_text()  # counts, never accounts
    audit_ok(a.dir)
