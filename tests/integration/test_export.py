"""`crossmatch export` after a real round between two real nodes: STIX 2.1 bundles parse back
with stix2 and carry TLP 2.0, MISP events load back with pymisp, CSV is formula-safe, hashed
exports hold no raw value, and every export is in the audit log."""

from __future__ import annotations

import csv
import io
import json

import pytest
import stix2
from pymisp import MISPEvent

from node.demo.sandbox import Sandbox, run_cli
from protocol import exports
from tests.integration.conftest import audit_ok, import_values

SHARED_EMAILS = ["mallory.actor@example.com", "eve+x@example.org"]
HOSTILE_ACCOUNT = "=cmd|' /C calc'!A0"
SHARED_ACCOUNTS = [HOSTILE_ACCOUNT, "<script>alert(1)</script>", "acct-o'brien\\"]
SHARED_IPS = ["203.0.113.7", "2001:db8::1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    sandbox = Sandbox(root / "consortium")
    sandbox.create(["lab-a", "lab-b"])
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    tmp = root / "inputs"
    tmp.mkdir()
    # lab-a's emails come with their accounts: one actor (shared card) -> one case
    accounts = tmp / "accounts.csv"
    accounts.write_text(
        "account,email,payment_fingerprint\n"
        + "".join(
            f"acct-{i},{e},card-1\n" for i, e in enumerate(SHARED_EMAILS + ["only-a@example.com"])
        )
    )
    run_cli("import", a.dir, accounts, "--entities")
    import_values(b.dir, "email", SHARED_EMAILS + ["only-b@example.com"], tmp)
    import_values(a.dir, "account_id", SHARED_ACCOUNTS + ["a-only"], tmp)
    import_values(b.dir, "account_id", SHARED_ACCOUNTS, tmp)
    import_values(a.dir, "ip", SHARED_IPS, tmp)
    import_values(b.dir, "ip", SHARED_IPS, tmp)
    b.start()
    run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
    run_cli("peer", "add", b.dir, "--lab", "lab-a", "--address", "127.0.0.1:1")  # responds only
    run_cli("round", a.dir, "--peer", "lab-b")
    yield sandbox
    sandbox.stop_all()


def export(world, *args: str) -> str:
    return run_cli("export", world.labs["lab-a"].dir, *args).stdout


def test_stix_bundle_parses_back_with_tlp_identities_indicators_and_sightings(world):
    text = export(world, "--format", "stix")
    bundle = stix2.parse(text, allow_custom=False)
    by_type: dict[str, list] = {}
    for obj in bundle.objects:
        by_type.setdefault(obj.type, []).append(obj)
    assert {i.name for i in by_type["identity"]} == {"lab-a", "lab-b"}
    assert len(by_type["indicator"]) == len(SHARED_EMAILS + SHARED_ACCOUNTS + SHARED_IPS)
    assert len(by_type["sighting"]) == len(by_type["indicator"])
    tlp = exports.TLP2_IDS["amber+strict"]
    markings = {m.id: m for m in by_type["marking-definition"]}
    assert markings[tlp].name == "TLP:AMBER+STRICT"
    assert any(m.name == "PAP:AMBER" for m in markings.values())
    for obj in by_type["indicator"] + by_type["sighting"]:
        assert tlp in obj.object_marking_refs
    lab_b = next(i.id for i in by_type["identity"] if i.name == "lab-b")
    assert all(s.where_sighted_refs == [lab_b] for s in by_type["sighting"])
    for raw in SHARED_EMAILS + SHARED_ACCOUNTS + SHARED_IPS + ["only-a@example.com", "acct-0"]:
        assert raw not in text and json.dumps(raw)[1:-1] not in text, "hashed by default"
    # Re-exporting names the same objects (stable ids for a threat-intel platform).
    again = stix2.parse(export(world, "--format", "stix"))
    assert {o.id for o in again.objects if o.type == "indicator"} == {
        o.id for o in by_type["indicator"]
    }


def test_a_case_is_a_grouping_and_exports_alone_with_its_accounts(world):
    a = world.labs["lab-a"]
    [case] = json.loads(run_cli("cases", a.dir, "--format", "json").stdout)["cases"]
    bundle = stix2.parse(export(world, "--format", "stix"))
    [grouping] = [o for o in bundle.objects if o.type == "grouping"]
    assert case["case_id"] in grouping.name and grouping.context == "suspicious-activity"
    refs = set(grouping.object_refs)
    email_indicators = {
        o.id
        for o in bundle.objects
        if o.type == "indicator" and "crossmatch-kind:email" in o.labels
    }
    assert len(email_indicators) == len(SHARED_EMAILS) and email_indicators <= refs
    alone = stix2.parse(export(world, "--format", "stix", "--case", case["case_id"]))
    assert {o.id for o in alone.objects if o.type == "indicator"} == email_indicators
    event = MISPEvent()
    event.load(export(world, "--format", "misp", "--case", case["case_id"], "--values", "raw"))
    accounts = sorted(o.get_attributes_by_relation("user-id")[0].value for o in event.objects)
    assert accounts == ["acct-0", "acct-1", "acct-2"]
    assert {a.value for a in event.attributes if a.type == "email"} == set(SHARED_EMAILS)
    hashed = MISPEvent()
    hashed.load(export(world, "--format", "misp", "--case", case["case_id"]))
    assert all(
        o.get_attributes_by_relation("user-id")[0].value.startswith("hmac-sha256-v1:")
        for o in hashed.objects
    )


def test_raw_stix_uses_standard_observables_and_escapes_hostile_values(world):
    text = export(world, "--format", "stix", "--values", "raw", "--tlp", "red")
    bundle = stix2.parse(text)
    patterns = {o.pattern for o in bundle.objects if o.type == "indicator"}
    assert "[email-addr:value = 'mallory.actor@example.com']" in patterns
    assert "[ipv6-addr:value = '2001:db8::1']" in patterns
    assert "[user-account:user_id = 'acct-o\\'brien\\\\']" in patterns
    assert all(
        exports.TLP2_IDS["red"] in o.object_marking_refs
        for o in bundle.objects
        if o.type == "indicator"
    )


def test_misp_event_loads_back_with_tags_attributes_and_sightings(world):
    text = export(world, "--format", "misp")
    event = MISPEvent()
    event.load(text)
    tags = {t.name for t in event.tags}
    assert {"tlp:amber+strict", "PAP:AMBER"} <= tags
    signals = [a for a in event.attributes if a.type != "comment"]  # comments name the cases
    assert len(signals) == len(SHARED_EMAILS + SHARED_ACCOUNTS + SHARED_IPS)
    assert all(a.type == "text" and not a.to_ids for a in signals)
    assert all(a.value.startswith(exports.VALUE_HASH_PREFIX) for a in signals)
    assert all([s.source for s in a.sightings] == ["lab-b"] for a in signals)
    raw = MISPEvent()
    raw.load(export(world, "--format", "misp", "--values", "raw", "--tlp", "green"))
    types = {a.value: a.type for a in raw.attributes}
    assert types["mallory.actor@example.com"] == "email" and types["203.0.113.7"] == "ip-src"
    assert "tlp:green" in {t.name for t in raw.tags}


def test_csv_is_formula_safe(world):
    rows = list(csv.reader(io.StringIO(export(world, "--format", "csv", "--values", "raw"))))
    assert rows[0][:2] == ["kind", "value"]
    values = {r[1] for r in rows[1:]}
    assert "'" + HOSTILE_ACCOUNT in values and HOSTILE_ACCOUNT not in values
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)


def test_every_export_is_audited_by_hash_and_the_log_verifies(world):
    a = world.labs["lab-a"]
    out = a.dir / "exports" / "bundle.json"
    run_cli("export", a.dir, "--format", "stix", "--out", out)
    assert (out.stat().st_mode & 0o777) == 0o600
    import hashlib

    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    log = (a.dir / "audit.log").read_text()
    assert digest in log and '"export_written"' in log
    assert "mallory.actor" not in log
    audit_ok(a.dir)


def test_bad_export_options_fail_in_one_line(world):
    a = world.labs["lab-a"]
    proc = run_cli("export", a.dir, "--format", "stix", "--tlp", "white", check=False)
    assert proc.returncode == 65 and "unknown TLP level" in proc.stderr
    assert "Traceback" not in proc.stderr
