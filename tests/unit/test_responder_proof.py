"""The responder's proof of its certificate key (attack 5 of issue 10, in memory)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import pki
from node.net import proof
from protocol.errors import ProtocolError, VerificationError
from protocol.responder_proof import check_nonce
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lab_b(tmp_path_factory):
    """lab-b's old (revoked) key and certificate, and its new ones."""
    ca = tmp_path_factory.mktemp("ca")
    pki.init_ca(ca, now=NOW)

    def cert():
        key = pki.generate_tls_key()
        from cryptography.hazmat.primitives.asymmetric import ed25519

        csr = pki.make_csr(key, "lab-b", ed25519.Ed25519PrivateKey.generate().public_key())
        return key, pki.issue_certificate(ca, csr, now=NOW)

    return cert(), cert()


def request() -> pb.OpenRoundRequest:
    return pb.OpenRoundRequest(
        protocol_version="crossmatch/v2",
        round_id=secrets.token_hex(16),
        initiator_lab="lab-a",
        responder_lab="lab-b",
        mode=pb.MODE_REVEAL,
        sizes=[pb.KindSize(kind="email", size=8)],
        policy_hash=b"p" * 32,
        input_commitment=b"c" * 32,
        chunk_size=100,
        nonce=secrets.token_bytes(32),
    )


def response(req: pb.OpenRoundRequest, cert_pem: bytes) -> pb.OpenRoundResponse:
    return pb.OpenRoundResponse(
        round_id=req.round_id,
        sizes=[pb.KindSize(kind="email", size=8)],
        input_commitment=b"r" * 32,
        certificate_pem=cert_pem,
        chunk_size=100,
    )


def test_a_proof_by_the_certificate_key_verifies(lab_b):
    (key, cert), _ = lab_b
    req = request()
    resp = response(req, cert)
    resp.identity_proof = proof.prove(key, req, resp)
    proof.check(req, resp, "lab-b")


def test_revoked_responder_presenting_the_current_certificate(lab_b):
    """Attack 5: the server holds lab-b's revoked key (TLS accepts it) and presents lab-b's
    current, unrevoked certificate in the response. It cannot sign for that certificate."""
    (old_key, _old_cert), (_new_key, new_cert) = lab_b
    req = request()
    resp = response(req, new_cert)
    resp.identity_proof = proof.prove(old_key, req, resp)
    with pytest.raises(VerificationError) as err:
        proof.check(req, resp, "lab-b")
    assert err.value.rule == "responder-proof"


def test_proof_replayed_for_another_nonce_fails(lab_b):
    (key, cert), _ = lab_b
    req = request()
    resp = response(req, cert)
    resp.identity_proof = proof.prove(key, req, resp)
    req.nonce = secrets.token_bytes(32)
    with pytest.raises(VerificationError):
        proof.check(req, resp, "lab-b")


FIELDS = [
    "round_id",
    "initiator_lab",
    "responder_lab",
    "policy_hash",
    "input_commitment",
    "nonce",
    "chunk_size",
    "r.input_commitment",
    "r.chunk_size",
    "r.sizes",
    "missing",
]


@settings(max_examples=30, deadline=None)
@given(field=st.sampled_from(FIELDS), seed=st.binary(min_size=1, max_size=8))
def test_any_changed_field_breaks_the_proof(lab_b, field, seed):
    (key, cert), _ = lab_b
    req = request()
    resp = response(req, cert)
    resp.identity_proof = proof.prove(key, req, resp)
    if field == "missing":
        resp.identity_proof = b""
    elif field == "r.sizes":
        resp.sizes[0].size += 1
    elif field == "r.chunk_size":
        resp.chunk_size += 1
    elif field == "r.input_commitment":
        resp.input_commitment += seed
    elif field == "chunk_size":
        req.chunk_size += 1
    else:
        value = getattr(req, field)
        setattr(req, field, value + (seed.hex() if isinstance(value, str) else seed))
    with pytest.raises(VerificationError):
        proof.check(req, resp, "lab-b")


def test_nonce_must_be_32_bytes():
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(ProtocolError) as err:
            check_nonce(bad)
        assert err.value.rule == "nonce"
    check_nonce(b"x" * 32)
