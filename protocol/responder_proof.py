"""The responder proves, in OpenRound, that it holds the key of the certificate it presents.

Why: the gRPC client cannot read the server's TLS certificate, so the initiator used to
check the CRL and expiry against the certificate in the OpenRound response, which anyone
holding *some* key of that lab (for example its revoked one, which TLS still accepts: TLS
here does not read CRLs) could fill with the lab's current, unrevoked certificate. Now the
initiator sends a fresh 32-byte nonce; the responder signs, with the private key of the
certificate it presents (its TLS key),

    "crossmatch/v2/responder-proof" ‖ len32 ‖ SHA-256(request fields) ‖ len32 ‖
    SHA-256(response fields)

where the request fields include the nonce, the round id and both labs, and the response
fields its sizes, input commitment, certificate and chunk size (each field length-prefixed,
``fields_digest``). The initiator checks that signature and then the certificate's chain,
lab, expiry and the CRL (``identity_from_certificate``) before any element leaves the node.
A replayed proof fails (the nonce is fresh); a relayed one fails too, because the real lab
checks that ``initiator_lab`` in the signed request is its TLS client's lab.

Pure: values in, ``VerificationError`` (rule ``responder-proof``) out. Signatures are
ECDSA P-256 with SHA-256, the key type of node TLS certificates.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.errors import ProtocolError, VerificationError
from protocol.rules import Rule

PROOF_DOMAIN = b"crossmatch/v2/responder-proof"
FIELDS_DOMAIN = b"crossmatch/v2/open-round-fields"
NONCE_BYTES = 32
MAX_SIGNATURE_BYTES = 80  # DER ECDSA P-256 signatures are at most 72 bytes

Field = bytes | str | int


def _encode(value: Field) -> bytes:
    if isinstance(value, int):
        return struct.pack(">Q", value)
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def fields_digest(fields: Iterable[Field]) -> bytes:
    """SHA-256 over typed, length-prefixed values: no serializer differences matter."""
    h = hashlib.sha256(FIELDS_DOMAIN)
    for value in fields:
        h.update(b"i" if isinstance(value, int) else b"s")
        h.update(_encode(value))
    return h.digest()


def proof_message(request_digest: bytes, response_digest: bytes) -> bytes:
    return PROOF_DOMAIN + _encode(request_digest) + _encode(response_digest)


def check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_BYTES:
        raise ProtocolError(
            f"OpenRound nonce must be {NONCE_BYTES} bytes, got {len(nonce)}", rule=Rule.NONCE
        )


def sign_proof(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def verify_proof(cert: x509.Certificate, message: bytes, signature: bytes, *, lab: str) -> None:
    """Raise VerificationError unless ``signature`` is the certificate key's over ``message``."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not 0 < len(signature) <= (
        MAX_SIGNATURE_BYTES
    ):
        raise VerificationError(
            f"responder {lab!r} sent no usable proof of its certificate key",
            rule=Rule.RESPONDER_PROOF,
        )
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise VerificationError(
            f"responder {lab!r} did not prove it holds the key of the certificate it presented",
            rule=Rule.RESPONDER_PROOF,
        ) from e
