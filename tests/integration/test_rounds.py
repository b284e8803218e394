"""Two labs' nodes, started from the CLI in separate processes, run reveal and count rounds."""

from __future__ import annotations

import random

from node.demo.sandbox import run_cli
from protocol.fingerprints import normalize
from tests.integration.conftest import audit_ok, import_values, matches_json, rounds_json

EMAILS_A = [
    "John.Smith+promo@gmail.com",
    "ceo@Corp.example",
    "only.a@mail.example",
    "JANE.DOE@googlemail.com",
    "x.y.z@gmail.com",
]
EMAILS_B = ["johnsmith@gmail.com", "CEO@corp.example", "only.b@mail.example", "janedoe+x@gmail.com"]
PHONES_A = ["(201) 555-0123", "+44 20 7946 0958", "212-555-0199"]
PHONES_B = ["+1 201 555 0123", "+442079460958", "+1 305 555 0100"]
IPS_A = ["203.0.113.7", "::ffff:198.51.100.9", "2001:db8::1"]
IPS_B = ["::ffff:203.0.113.7", "198.51.100.9", "2001:DB8:0:0::2"]


def truth(kind: str, mine: list[str], theirs: list[str]) -> set[str]:
    """My own spellings of the values both labs hold, by plain set intersection."""
    shared = {normalize(kind, v) for v in mine} & {normalize(kind, v) for v in theirs}
    return {v for v in mine if normalize(kind, v) in shared}


def test_reveal_and_count_rounds(pair, tmp_path):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    data = {"email": (EMAILS_A, EMAILS_B), "phone": (PHONES_A, PHONES_B), "ip": (IPS_A, IPS_B)}
    for kind, (va, vb) in data.items():
        import_values(a.dir, kind, va, tmp_path)
        import_values(b.dir, kind, vb, tmp_path)

    out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email,phone,ip")
    assert "completed" in out.stdout
    rid = rounds_json(a.dir)[0]["round_id"]
    for lab, mine, theirs in ((a, 0, 1), (b, 1, 0)):
        found = matches_json(lab.dir, "--round", rid)
        for kind, values in data.items():
            got = {m["value"] for m in found if m["kind"] == kind}
            assert got == truth(kind, values[mine], values[theirs]), (lab.name, kind)
            assert got, "fixtures must overlap"
        assert all(m["peer"] == ("lab-b" if lab is a else "lab-a") for m in found)

    # Count mode: both learn the sizes; neither stores which.
    out = run_cli("round", b.dir, "--peer", "lab-a", "--mode", "count", "--kinds", "email,phone")
    assert "email=3" in out.stdout and "phone=2" in out.stdout
    rid_count = rounds_json(b.dir)[0]["round_id"]
    assert matches_json(a.dir, "--round", rid_count) == []
    assert matches_json(b.dir, "--round", rid_count) == []
    row_a = next(r for r in rounds_json(a.dir) if r["round_id"] == rid_count)
    assert row_a["status"] == "completed" and row_a["role"] == "responder"
    assert row_a["intersection_sizes"] == {"email": 3, "phone": 2}
    audit_ok(a.dir)
    audit_ok(b.dir)


def test_two_hundred_thousand_elements_a_side(pair, tmp_path):
    """Far above gRPC's 4 MiB message limit: the exchange must stream in chunks."""
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    n, overlap = 200_000, 20_000
    rng = random.Random(5)
    ids = [f"acct-{i:08d}" for i in rng.sample(range(10**8), 2 * n - overlap)]
    va, vb = ids[:n], ids[n - overlap :]
    import_values(a.dir, "account_id", va, tmp_path)
    import_values(b.dir, "account_id", vb, tmp_path)
    run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "account_id")
    rid = rounds_json(a.dir)[0]["round_id"]
    expected = set(va) & set(vb)
    assert len(expected) == overlap
    for lab in (a, b):
        got = {m["value"] for m in matches_json(lab.dir, "--round", rid)}
        assert got == expected
