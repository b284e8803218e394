"""The responder's proof that it holds the key of the certificate it presents in
OpenRound (protocol/responder_proof.py), over the fields node/net/wire.py names."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from node.net.wire import OpenRoundRequest, OpenRoundResponse, request_fields, response_fields
from protocol.responder_proof import fields_digest, proof_message, sign_proof, verify_proof


def _message(request: OpenRoundRequest, response: OpenRoundResponse) -> bytes:
    return proof_message(
        fields_digest(request_fields(request)), fields_digest(response_fields(response))
    )


def prove(
    key: ec.EllipticCurvePrivateKey, request: OpenRoundRequest, response: OpenRoundResponse
) -> bytes:
    return sign_proof(key, _message(request, response))


def check(request: OpenRoundRequest, response: OpenRoundResponse, lab: str) -> None:
    cert = x509.load_pem_x509_certificate(response.certificate_pem)
    verify_proof(cert, _message(request, response), response.identity_proof, lab=lab)
