"""A consortium on the ristretto255-v1 suite: real processes, mutual TLS, verified matches.

One module-scoped pair of serving labs under a signed policy naming the suite. The
hostile initiator is this test process holding lab A's node directory and running
the real initiator code with one change (a swap in the re-blinding it releases,
committed to like an honest one); the honest responder is a real ``serve`` process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from node.demo.sandbox import Sandbox, run_cli, sandbox_policy, sandbox_policy_hash
from protocol.round import RoundSide
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from tests.integration.conftest import audit_ok, import_values, matches_json, rounds_json
from tests.integration.test_hostile_peers import open_request, refused, stub_as

SUITE = "ristretto255-v1"
A_VALUES = [f"acct-{i:05d}" for i in range(0, 300)]
B_VALUES = [f"acct-{i:05d}" for i in range(250, 520)]
SHARED = set(A_VALUES) & set(B_VALUES)


@pytest.fixture(scope="module")
def rpair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ristretto")
    sandbox = Sandbox(root / "consortium")
    sandbox.create(["lab-a", "lab-b"], policy=sandbox_policy(suite=SUITE))
    sandbox.start_all()
    sandbox.peer_all()
    for name, values in (("lab-a", A_VALUES), ("lab-b", B_VALUES)):
        import_values(sandbox.labs[name].dir, "account_id", values, root)
    yield sandbox
    sandbox.stop_all()


def log_events(lab_dir: Path, event: str) -> list[dict]:
    lines = (lab_dir / "audit.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r["body"] for r in records if r.get("event") == event]


def test_a_verified_reveal_round_stores_exactly_the_intersection(rpair):
    a, b = rpair.labs["lab-a"], rpair.labs["lab-b"]
    out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "account_id")
    assert "completed" in out.stdout
    rid = rounds_json(a.dir)[0]["round_id"]
    for lab in (a, b):
        assert {m["value"] for m in matches_json(lab.dir, "--round", rid)} == SHARED
        done = [e for e in log_events(lab.dir, "round_completed") if e["round_id"] == rid]
        assert done[0]["suite"] == SUITE and done[0]["verified_matches"] == len(SHARED)
        audit_ok(lab.dir)
    # The repeat round in the same epoch reuses the cache; the pairs proven in the first
    # round are not proven again.
    run_cli("round", b.dir, "--peer", "lab-a", "--kinds", "account_id")
    rid2 = rounds_json(b.dir)[0]["round_id"]
    assert {m["value"] for m in matches_json(b.dir, "--round", rid2)} == SHARED
    for lab in (a, b):  # every match verified, none proven again: proven earlier this epoch
        done = [e for e in log_events(lab.dir, "round_completed") if e["round_id"] == rid2]
        assert (done[0]["verified_matches"], done[0]["proven_matches"]) == (len(SHARED), 0)


def test_a_count_round_on_the_suite(rpair):
    a = rpair.labs["lab-a"]
    out = run_cli("round", a.dir, "--peer", "lab-b", "--mode", "count", "--kinds", "account_id")
    assert f"account_id={len(SHARED)}" in out.stdout
    rid = rounds_json(a.dir)[0]["round_id"]
    assert matches_json(a.dir, "--round", rid) == []


def test_a_swapping_initiator_is_caught_by_the_proof_and_nothing_is_stored(rpair, monkeypatch):
    from node.net.initiator import run_round
    from node.runtime import Node
    from protocol.errors import CrossmatchError

    a, b = rpair.labs["lab-a"], rpair.labs["lab-b"]
    honest_release = RoundSide._release_stream

    def reversed_release(self: RoundSide) -> bytes:
        # Relabel B's matches: release B's values in reverse order. The set of values is
        # the same (no duplicate, the same count), the commitment covers the bent stream,
        # so only the proof can tell that B's matches now sit at the wrong positions.
        stream = np.frombuffer(honest_release(self), np.uint8).reshape(-1, self._w)
        return stream[::-1].tobytes()

    monkeypatch.setattr(RoundSide, "_release_stream", reversed_release)
    before_b = len(matches_json(b.dir))
    with Node(a.dir) as node, pytest.raises(CrossmatchError):
        run_round(node, "lab-b", kinds=["account_id"])
    row_b = rounds_json(b.dir)[0]
    assert row_b["status"] == "aborted" and "proof-invalid" in row_b["reason"]
    assert matches_json(b.dir, "--round", row_b["round_id"]) == []
    assert len(matches_json(b.dir)) == before_b
    aborted = [x for x in log_events(b.dir, "round_aborted") if x["round_id"] == row_b["round_id"]]
    assert aborted[0]["rule"] == "proof-invalid" and aborted[0]["suite"] == SUITE
    audit_ok(a.dir)
    audit_ok(b.dir)


def test_a_proposal_on_another_suite_is_refused_by_rule(rpair):
    # A raw client with lab A's credentials and the right policy hash proposes the
    # P-256 suite: the responder refuses at OpenRound, before any work.
    a, b = rpair.labs["lab-a"], rpair.labs["lab-b"]
    channel, stub = stub_as(a.dir, "lab-b", b.address)
    with channel:
        for suite, rule in (("openmined-p256-v1", "suite-policy"), ("", "suite-policy"),
                            ("x25519-v1" * 40, "suite-policy")):  # fmt: skip
            request = open_request(
                sizes=[pb.KindSize(kind="account_id", size=3)],
                policy_hash=sandbox_policy_hash(suite=SUITE),
                suite=suite,
            )
            code, details, got = refused(stub, request)
            assert got == rule, (suite, got, details)
            assert len(details) < 200  # the peer's text is cut before it reaches a log
            assert code == grpc.StatusCode.FAILED_PRECONDITION
    audit_ok(b.dir)


def _stream_as_a(rpair, messages) -> str:
    """Open a real ristretto round as lab-a with a raw client, then send ``messages``."""
    a, b = rpair.labs["lab-a"], rpair.labs["lab-b"]
    channel, stub = stub_as(a.dir, "lab-b", b.address)
    request = open_request(
        sizes=[pb.KindSize(kind="account_id", size=4)],
        policy_hash=sandbox_policy_hash(suite=SUITE),
        suite=SUITE,
    )
    with channel:
        stub.OpenRound(request, timeout=10)

        def requests():
            yield pb.ExchangeMessage(start=pb.Start(round_id=request.round_id))
            yield from messages

        try:
            for _ in stub.Exchange(requests(), timeout=20):
                pass
        except grpc.RpcError:
            pass
    return request.round_id


GOOD_KEY = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
HIGH_BIT = bytes.fromhex("3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0ac6")


@pytest.mark.parametrize(
    "key, point, rule",
    [
        (GOOD_KEY, bytes(32), "element-identity"),
        (GOOD_KEY, HIGH_BIT, "element-noncanonical"),
        (HIGH_BIT, GOOD_KEY, "element-noncanonical"),  # the public key is decoded too
        (None, GOOD_KEY, "message-order"),  # a point before the public key
    ],
    ids=["identity", "bit-255", "bad-key", "no-key"],
)
def test_bad_encodings_from_a_raw_peer_abort_and_nothing_is_stored(rpair, key, point, rule):
    b = rpair.labs["lab-b"]
    before = len(matches_json(b.dir))
    messages = [] if key is None else [pb.ExchangeMessage(public_key=pb.PublicKey(key=key))]
    two_g = bytes.fromhex("6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919")
    points = point + two_g  # one bad point, then a good one
    messages.append(pb.ExchangeMessage(own_blinded=pb.Chunk(seq=0, points=points)))
    rid = _stream_as_a(rpair, messages)
    deadline = time.monotonic() + 20
    while not [r for r in rounds_json(b.dir) if r["round_id"] == rid]:
        assert time.monotonic() < deadline, "round not recorded"
        time.sleep(0.2)
    row = next(r for r in rounds_json(b.dir) if r["round_id"] == rid)
    assert row["status"] == "aborted" and rule in row["reason"], row
    assert len(matches_json(b.dir)) == before
    audit_ok(b.dir)
