"""What `crossmatch cert show` and `status` print about a node certificate: parsed with the
identity rules of identity.py, not verified against the CA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocol.identity import (
    certificate_fingerprint,
    key_fingerprint,
    load_certificate,
    node_identity_fields,
)
from protocol.rules import Rule


@dataclass(frozen=True)
class CertificateSummary:
    """What `crossmatch cert show` prints; parsed, not verified."""

    lab: str
    serial: int
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    audit_key_fingerprint: str


def summarize_certificate(cert_pem: bytes) -> CertificateSummary:
    cert = load_certificate(cert_pem, rule=Rule.CERTIFICATE_MALFORMED)
    lab, audit_key = node_identity_fields(cert)
    return CertificateSummary(
        lab=lab,
        serial=cert.serial_number,
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=certificate_fingerprint(cert),
        audit_key_fingerprint=key_fingerprint(audit_key),
    )
