"""The consortium policy as labs use it: sign, show, install, and rounds refused under a
different, unsigned or expired policy, with the rule named. Real CLI, real daemons."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from node.demo.sandbox import Sandbox, run_cli, sandbox_policy
from protocol.policy_document import parse_policy_toml
from tests.integration.conftest import audit_ok, import_values, rounds_json


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    sandbox = Sandbox(root / "c")
    sandbox.create(["lab-a", "lab-b"])
    for name in ("lab-a", "lab-b"):
        import_values(
            sandbox.labs[name].dir,
            "email",
            [f"s{i}@mail.example" for i in range(5)] + [f"{name}@mail.example"],
            root,
        )
    sandbox.start_all()
    sandbox.peer_all()
    yield sandbox
    sandbox.stop_all()


def round_from_a(pair) -> tuple[int, str]:
    proc = run_cli("round", pair.labs["lab-a"].dir, "--peer", "lab-b", "--json", check=False)
    return proc.returncode, proc.stderr + proc.stdout


def test_sign_show_install(pair, tmp_path):
    template = run_cli("policy", "template").stdout
    source = tmp_path / "policy.toml"
    source.write_text(template)
    signed = tmp_path / "policy.signed"
    out = run_cli("policy", "sign", pair.ca_dir, source, "--out", signed).stdout
    assert "signed policy example-consortium v1" in out
    shown = run_cli("policy", "show", signed, "--ca-cert", pair.ca_dir / "ca.crt").stdout
    assert "signature verifies with the given CA" in shown
    assert "prompt" in shown and "count only" in shown
    as_json = json.loads(run_cli("policy", "show", signed, "--json").stdout)
    assert as_json["hash"] == parse_policy_toml(template).hash().hex()
    assert "present, not checked" in run_cli("policy", "show", signed).stdout
    assert "NONE (unsigned TOML)" in run_cli("policy", "show", source).stdout
    node = tmp_path / "spare"
    run_cli(
        "init",
        node,
        "--lab",
        "lab-s",
        "--ca",
        pair.ca_dir,
        "--listen",
        "127.0.0.1:0",
        "--consortium-key",
        pair.key_file,
    )
    assert (
        "installed policy example-consortium v1"
        in run_cli("policy", "install", node, signed).stdout
    )
    status = json.loads(run_cli("status", node, "--json").stdout)
    assert status["policy"]["policy_id"] == "example-consortium"
    audit = (node / "audit.log").read_text()
    assert '"policy_installed"' in audit and as_json["hash"] in audit
    audit_ok(node)


def test_install_refuses_what_does_not_verify(pair, tmp_path):
    lab = pair.labs["lab-a"].dir
    rogue = tmp_path / "rogue"
    run_cli("ca", "init", rogue)
    source = tmp_path / "p.toml"
    source.write_text(sandbox_policy(policy_id="rogue"))
    run_cli("policy", "sign", rogue, source, "--out", tmp_path / "rogue.signed")
    proc = run_cli("policy", "install", lab, tmp_path / "rogue.signed", check=False)
    assert proc.returncode == 3 and "[rule: policy-signature]" in proc.stderr

    run_cli("policy", "sign", pair.ca_dir, source, "--out", tmp_path / "good.signed")
    doc = json.loads((tmp_path / "good.signed").read_text())
    doc["policy_toml"] = doc["policy_toml"].replace(
        "max_set_size = 5000000", "max_set_size = 5000001", 1
    )
    (tmp_path / "tampered.signed").write_text(json.dumps(doc))
    proc = run_cli("policy", "install", lab, tmp_path / "tampered.signed", check=False)
    assert proc.returncode == 3 and "[rule: policy-signature]" in proc.stderr

    proc = run_cli("policy", "install", lab, source, check=False)  # plain TOML, unsigned
    assert proc.returncode == 65 and "[rule: policy-syntax]" in proc.stderr

    now = datetime.now(UTC)
    source.write_text(
        sandbox_policy(
            policy_id="old", not_before=now - timedelta(days=9), not_after=now - timedelta(days=1)
        )
    )
    run_cli("policy", "sign", pair.ca_dir, source, "--out", tmp_path / "old.signed")
    proc = run_cli("policy", "install", lab, tmp_path / "old.signed", check=False)
    assert proc.returncode == 77 and "[rule: policy-expired]" in proc.stderr
    assert round_from_a(pair)[0] == 0  # nothing of that was installed


def test_rounds_under_a_different_policy_are_refused_then_a_new_policy_is_picked_up(pair):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    v2 = sandbox_policy(version=2)
    signed = pair.sign_policy(v2, "v2")
    run_cli("policy", "install", a.dir, signed)
    code, err = round_from_a(pair)
    assert code == 77 and "[rule: policy-mismatch]" in err and "sandbox v1" in err
    refusal = [r for r in rounds_json(b.dir) if r["status"] == "refused"][0]
    assert "policy-mismatch" in refusal["reason"]
    # Installed on the running responder too: no restart needed.
    run_cli("policy", "install", b.dir, signed)
    code, out = round_from_a(pair)
    assert code == 0, out
    rid = json.loads(out)["round_id"]
    for lab in (a, b):
        row = next(r for r in rounds_json(lab.dir) if r["round_id"] == rid)
        assert row["policy_hash"] == parse_policy_toml(v2).hash().hex()
    # Going back to version 1 is a rollback: refused unless forced.
    v1 = pair.sign_policy(sandbox_policy(), "v1")
    proc = run_cli("policy", "install", a.dir, v1, check=False)
    assert proc.returncode == 77 and "[rule: policy-rollback]" in proc.stderr
    for lab in (a, b):
        run_cli("policy", "install", lab.dir, v1, "--force")
    assert round_from_a(pair)[0] == 0


def test_no_signed_policy_refuses_rounds_on_either_side(pair):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    saved = (b.dir / "policy.signed").read_bytes()
    (b.dir / "policy.signed").unlink()  # the running responder notices
    code, err = round_from_a(pair)
    assert code == 77 and "[rule: policy-unsigned]" in err and "refused by peer" in err
    (b.dir / "policy.signed").write_bytes(saved)
    (a.dir / "policy.signed").unlink()
    code, err = round_from_a(pair)
    assert code == 77 and "[rule: policy-unsigned]" in err and "refused by peer" not in err
    (a.dir / "policy.signed").write_bytes(saved)
    assert round_from_a(pair)[0] == 0
    audit_ok(a.dir)
    audit_ok(b.dir)


def test_expired_policy_is_refused_by_the_responder(pair):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    now = datetime.now(UTC)
    short = pair.sign_policy(
        sandbox_policy(
            version=3, not_before=now - timedelta(days=1), not_after=now + timedelta(days=1)
        ),
        "short",
    )
    for lab in (a, b):
        run_cli("policy", "install", lab.dir, short)
    b.stop()
    b.set_clock_offset(2 * 86400)  # two days later at lab-b; its certificates are still valid
    b.start()
    run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
    code, err = round_from_a(pair)
    assert code == 77 and "[rule: policy-expired]" in err
    b.stop()
    b.env.clear()
    b.start()
    run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
    assert round_from_a(pair)[0] == 0
    audit_ok(a.dir)
    audit_ok(b.dir)
