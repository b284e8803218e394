"""The OpenRound fields the responder's proof covers (protocol/responder_proof.py), read
from the generated messages: the only place that knows which fields they are."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.responder_proof import Field, fields_digest, proof_message, sign_proof, verify_proof
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb


def _sizes(sizes) -> list[Field]:  # type: ignore[no-untyped-def]
    out: list[Field] = [len(sizes)]
    for s in sizes:
        out += [s.kind, s.size]
    return out


def request_fields(r: pb.OpenRoundRequest) -> list[Field]:
    return [
        r.protocol_version,
        r.round_id,
        r.initiator_lab,
        r.responder_lab,
        int(r.mode),
        *_sizes(r.sizes),
        r.policy_hash,
        r.input_commitment,
        r.prompt_params,
        r.chunk_size,
        r.nonce,
    ]


def response_fields(r: pb.OpenRoundResponse) -> list[Field]:
    return [r.round_id, *_sizes(r.sizes), r.input_commitment, r.certificate_pem, r.chunk_size]


def _message(request: pb.OpenRoundRequest, response: pb.OpenRoundResponse) -> bytes:
    return proof_message(
        fields_digest(request_fields(request)), fields_digest(response_fields(response))
    )


def prove(
    key: ec.EllipticCurvePrivateKey, request: pb.OpenRoundRequest, response: pb.OpenRoundResponse
) -> bytes:
    return sign_proof(key, _message(request, response))


def check(request: pb.OpenRoundRequest, response: pb.OpenRoundResponse, lab: str) -> None:
    cert = x509.load_pem_x509_certificate(response.certificate_pem)
    verify_proof(cert, _message(request, response), response.identity_proof, lab=lab)
