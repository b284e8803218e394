"""The attacks of issue 10 over real gRPC with mutual TLS: a certified member that
modified its node (a hostile server or client built from the generated stubs) against
real ``crossmatch`` processes. Each fails with its rule, and the logs still verify.
"""

from __future__ import annotations

import queue
import secrets
import time
from concurrent import futures
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import private_set_intersection.python as psi_lib
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from node import pki
from node.config import NodePaths
from node.demo.sandbox import Sandbox, run_cli, sandbox_policy_hash
from node.net import proof
from node.net.channel import channel_options
from protocol import PROTOCOL_VERSION
from protocol.disclosure import Disclosure
from protocol.psi import POINT_BYTES, Engine, pack, unpack
from protocol.receipts import parse_receipt
from protocol.transcript import reblind_commitment
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc
from tests.integration.conftest import after_min_interval, audit_ok, import_values, rounds_json


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    root = tmp_path_factory.mktemp("malicious")
    sandbox = Sandbox(root / "consortium")
    sandbox.create(["lab-a", "lab-b"])
    for lab in sandbox.labs.values():
        lab.start()
    sandbox.peer("lab-a", "lab-b")
    sandbox.peer("lab-b", "lab-a")
    data = root / "data"
    data.mkdir()
    import_values(
        sandbox.labs["lab-a"].dir, "email", [f"a{i}@mail.example" for i in range(10)], data
    )
    import_values(
        sandbox.labs["lab-b"].dir, "email", [f"b{i}@mail.example" for i in range(10)], data
    )
    yield sandbox
    sandbox.stop_all()


# -- attack 5: a revoked responder receives our set ------------------------------------------


class HostileResponder(pb_grpc.CrossmatchServicer):
    """Serves with lab-b's revoked TLS key; records whether any element reached it."""

    def __init__(self, key, present_pem: bytes):
        self.key, self.present_pem = key, present_pem
        self.exchanges = 0
        self.points = 0

    def OpenRound(self, request, context):
        response = pb.OpenRoundResponse(
            round_id=request.round_id,
            sizes=[pb.KindSize(kind=s.kind, size=s.size) for s in request.sizes],
            input_commitment=secrets.token_bytes(32),
            certificate_pem=self.present_pem,
            chunk_size=1000,
        )
        response.identity_proof = proof.prove(self.key, request, response)
        return response

    def Exchange(self, request_iterator, context):
        self.exchanges += 1
        for msg in request_iterator:
            if msg.WhichOneof("body") == "own_blinded":
                self.points += len(msg.own_blinded.points) // POINT_BYTES
        return iter(())


def revoked_lab_b_key(sandbox: Sandbox, tmp: Path):
    """A second certificate for lab-b (the one a departed employee kept), then revoked."""
    key = pki.generate_tls_key()
    csr = pki.make_csr(key, "lab-b", ed25519.Ed25519PrivateKey.generate().public_key())
    cert = pki.issue_certificate(sandbox.ca_dir, csr, now=datetime.now(UTC))
    (tmp / "old-lab-b.crt").write_bytes(cert)
    run_cli("ca", "revoke", sandbox.ca_dir, "--cert", tmp / "old-lab-b.crt")
    run_cli("crl", "install", sandbox.labs["lab-a"].dir, sandbox.ca_dir / "crl.pem")
    return key, cert


@pytest.mark.parametrize("presents", ["current-certificate", "revoked-certificate"])
def test_revoked_responder_receives_our_set(labs, tmp_path, presents):
    a, b = labs.labs["lab-a"], labs.labs["lab-b"]
    key, old_cert = revoked_lab_b_key(labs, tmp_path)
    present = (
        NodePaths(b.dir).tls_cert.read_bytes() if presents == "current-certificate" else old_cert
    )
    hostile = HostileResponder(key, present)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_CrossmatchServicer_to_server(hostile, server)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_pem = (labs.ca_dir / "ca.crt").read_bytes()
    port = server.add_secure_port("127.0.0.1:0", pki.server_credentials(key_pem, old_cert, ca_pem))
    server.start()
    try:
        run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", f"127.0.0.1:{port}")
        proc = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email", check=False)
    finally:
        server.stop(0)
        run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
    rule = "responder-proof" if presents == "current-certificate" else "certificate-revoked"
    assert proc.returncode != 0 and f"[rule: {rule}]" in proc.stderr, proc.stderr
    assert hostile.exchanges == 0 and hostile.points == 0  # nothing left lab-a
    assert rounds_json(a.dir)[0]["status"] == "aborted"
    audit_ok(a.dir)


# -- attack 1: planted matches, from a hostile initiator -------------------------------------


def _hostile_round(labs, engine, own: bytes, release, *, n: int = 10):
    """One round as a hostile lab-a, its own client with lab-a's credentials: sends
    ``own`` (n points blinded with ``engine``), re-blinds lab-b's points honestly and
    commits to the release ``release(mine, theirs)`` makes of its honest values and
    lab-b's release; sends it once lab-b's release is in, and stops at lab-b's receipt."""
    a, b = labs.labs["lab-a"], labs.labs["lab-b"]
    p = NodePaths(a.dir)
    creds = pki.channel_credentials(
        p.tls_key.read_bytes(), p.tls_cert.read_bytes(), p.ca_cert.read_bytes()
    )
    request = pb.OpenRoundRequest(
        protocol_version=PROTOCOL_VERSION,
        round_id=secrets.token_hex(16),
        initiator_lab="lab-a",
        responder_lab="lab-b",
        mode=pb.MODE_REVEAL,
        sizes=[pb.KindSize(kind="email", size=n)],
        policy_hash=sandbox_policy_hash(),
        input_commitment=secrets.token_bytes(32),
        chunk_size=1000,
        nonce=secrets.token_bytes(32),
    )
    outbox: queue.Queue = queue.Queue()
    got: dict = {"abort": None, "b_release": b"", "b_points": b"", "receipt": None}
    with grpc.secure_channel(b.address, creds, options=channel_options("lab-b")) as channel:
        stub = pb_grpc.CrossmatchStub(channel)
        response = stub.OpenRound(request, timeout=10)
        outbox.put(pb.ExchangeMessage(start=pb.Start(round_id=request.round_id)))
        outbox.put(pb.ExchangeMessage(own_blinded=pb.Chunk(seq=0, points=own)))
        b_size = sum(s.size for s in response.sizes)
        mine = b""

        def requests():
            while (msg := outbox.get()) is not None:
                yield msg

        try:
            for msg in stub.Exchange(requests(), timeout=30):
                body = msg.WhichOneof("body")
                if body == "own_blinded":
                    got["b_points"] += msg.own_blinded.points
                    if len(got["b_points"]) == b_size * POINT_BYTES:
                        mine = engine.reblind(got["b_points"])
                        committed = release(mine, None)  # before any release
                        digest = reblind_commitment(request.round_id, "initiator", committed)
                        outbox.put(
                            pb.ExchangeMessage(
                                reblind_commitment=pb.ReblindCommitment(digest=digest)
                            )
                        )
                elif body == "peer_reblinded":
                    got["b_release"] += msg.peer_reblinded.points
                    if len(got["b_release"]) == n * POINT_BYTES:
                        sent = release(mine, got["b_release"])
                        outbox.put(pb.ExchangeMessage(peer_reblinded=pb.Chunk(points=sent)))
                elif body == "receipt":
                    got["receipt"] = parse_receipt(msg.receipt.signed_receipt)
                    break
                elif body == "abort":
                    got["abort"] = msg.abort.rule
                    break
        except grpc.RpcError:
            pass
        finally:
            outbox.put(None)
    return request.round_id, got


def _planting_initiator(labs):
    """Blinds 10 values none of which lab-b holds, commits to its honest re-blinding,
    then replaces three of its released values by copies of lab-b's release, at chosen
    positions (so they no longer open its commitment)."""

    def planted(mine: bytes, theirs: bytes | None) -> bytes:
        if theirs is None:
            return mine
        pts = unpack(mine)
        copies = unpack(theirs)
        pts[0], pts[4], pts[7] = copies[1], copies[2], copies[3]
        return pack(pts)

    engine = Engine(psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes())
    try:
        own = engine.blind([secrets.token_bytes(32) for _ in range(10)])
        return _hostile_round(labs, engine, own, planted)
    finally:
        engine.close()


def test_planted_matches_from_a_hostile_initiator(labs):
    b = labs.labs["lab-b"]
    rid, got = _planting_initiator(labs)
    assert got["abort"] == "reblind-commitment"
    row = next(r for r in rounds_json(b.dir) if r["round_id"] == rid)
    assert row["status"] == "aborted" and "reblind-commitment" in row["reason"]
    assert run_cli("matches", b.dir, "--round", rid, "--format", "json").stdout.strip() == "[]"
    audit_ok(b.dir)
    audit_ok(labs.labs["lab-a"].dir)
    assert (
        "completed"
        in run_cli("round", labs.labs["lab-a"].dir, "--peer", "lab-b", "--kinds", "email").stdout
    )


def test_a_release_replayed_from_an_earlier_round_plants_nothing(labs):
    """Round 1: a hostile lab-a plays honestly up to lab-b's receipt and keeps lab-b's
    release. Round 2: it commits to, and releases, its honest values with one replaced by
    a value of lab-b's round-1 release, at the position of an element of lab-b's it does
    not hold. Under a key kept across rounds lab-b would find that element matched
    (tests/unit/test_epoch_replay.py); a round without verified matches draws a fresh
    key every round (ADR 0016), so the value matches nothing and lab-b's receipt counts
    no match."""
    b = labs.labs["lab-b"]
    after_min_interval()
    engine = Engine(psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes())
    try:
        own = engine.blind([secrets.token_bytes(32) for _ in range(10)])
        rid1, first = _hostile_round(labs, engine, own, lambda mine, theirs: mine)
        assert first["receipt"]["intersection_sizes"] == {"email": 0}
        after_min_interval()

        def replayed(mine: bytes, theirs: bytes | None) -> bytes:
            values = unpack(mine)
            values[0] = unpack(first["b_release"])[0]
            return pack(values)

        rid2, second = _hostile_round(labs, engine, own, replayed)
    finally:
        engine.close()
    # A fresh key: none of lab-b's points of round 1 comes back in round 2.
    assert not set(unpack(first["b_points"])) & set(unpack(second["b_points"]))
    assert second["receipt"]["intersection_sizes"] == {"email": 0}
    for rid in (rid1, rid2):
        row = next(r for r in rounds_json(b.dir) if r["round_id"] == rid)
        assert row["status"] == "aborted"
        out = run_cli("matches", b.dir, "--round", rid, "--format", "json").stdout
        assert out.strip() == "[]"
    audit_ok(b.dir)


# -- attack 4: commitments bind nothing -> sealed records an auditor checks -----------------


def sealed_record(lab_dir: Path, rid: str) -> Path:
    """A side's sealed record of round ``rid``; the responder writes its own after sending
    Commit, so it may land a moment after the initiator's CLI returned (10 s at most)."""
    deadline = time.monotonic() + 10
    while not (found := list((lab_dir / "disclosures").glob(f"{rid}-*.rec"))):
        assert time.monotonic() < deadline, f"no sealed record of {rid} in {lab_dir}"
        time.sleep(0.05)
    return found[0]


def test_commitments_bind_the_round_disclosure_checks_out(labs, tmp_path):
    import json
    import stat

    a, b = labs.labs["lab-a"], labs.labs["lab-b"]
    after_min_interval()  # the previous test's round was with the same pair
    out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email", "--json").stdout
    rid = json.loads(out)["round_id"]
    files = {}
    for lab in (a, b):
        sealed = sealed_record(lab.dir, rid)
        assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
        files[lab.name] = tmp_path / f"{lab.name}.rec"
        run_cli("audit", "disclose", lab.dir, "--round", rid, "--out", files[lab.name])
        assert stat.S_IMODE(files[lab.name].stat().st_mode) == 0o600
    both = ["--log", a.dir, "--log", b.dir]
    proc = run_cli("audit", "check-disclosure", files["lab-a"], files["lab-b"], *both)
    assert "computed their streams honestly" in proc.stdout and proc.stdout.count("ok ") == 7
    # A record that does not open: another set than the one committed to.
    record = Disclosure.from_bytes(files["lab-b"].read_bytes())
    forged = tmp_path / "forged.rec"
    forged.write_bytes(replace(record, salt=b"\x00" * 32).to_bytes())
    proc = run_cli("audit", "check-disclosure", forged, *both, check=False)
    assert proc.returncode == 3 and "[rule: disclosure-commitment]" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
