"""Who a lab is: the one lab-id rule, identity from a certificate, CSR vetting and the one
audit-key fingerprint (the CRL is read in revocation.py, install rules are in rollback.py).

Identity binding (everything else relies on it):

* A lab id is a lowercase DNS label (``validate_lab_id``); this module holds the only rule.
* A node certificate has subject CN = lab id, O = ``crossmatch consortium``, and SANs
  ``URI:urn:crossmatch:lab:<lab>`` and ``DNS:<lab>.crossmatch.invalid``. The DNS name is the
  TLS target name an initiator asks for, so TLS hostname verification proves the responder
  is the lab the initiator meant to reach.
* The node's Ed25519 audit public key is certified in the same certificate, in a non-critical
  extension (``AUDIT_KEY_EXTENSION_OID``), so one CA signature binds lab + TLS key + audit key.

A responder takes the peer's lab from the verified certificate (``identity_from_certificate``
on the certificate the TLS layer verified), never from a message.

Pure: PEM bytes in, values out, ``PolicyError``/``ConfigError`` naming the rule otherwise.
Time is always a parameter (``now``). The files, the CA key and gRPC live in ``node/pki``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from protocol.errors import ConfigError, PolicyError
from protocol.rules import Rule
from protocol.timestamps import format_utc

ORGANIZATION = "crossmatch consortium"
LAB_URI_PREFIX = "urn:crossmatch:lab:"
TLS_NAME_SUFFIX = ".crossmatch.invalid"

# Our private OID arc: 2.25.<UUID as integer> (ITU-T X.667), from the UUID
# 28b00059-fc5b-44c0-8667-128e7ca24a79, generated once for crossmatch. Below it:
#   .1.1  audit public key, format version 1: extnValue = DER OCTET STRING of the
#         32 raw bytes of an Ed25519 public key (RFC 8032). A new format gets a new OID.
CROSSMATCH_OID_ARC = "2.25.54082971207905787745244011379088837241"
AUDIT_KEY_EXTENSION_OID = x509.ObjectIdentifier(CROSSMATCH_OID_ARC + ".1.1")

# Clock skew tolerated between nodes and the CA: certificates are backdated by this much and
# verification accepts this much on either side of the validity window.
CLOCK_SKEW = timedelta(minutes=5)

_LAB_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_ED25519_KEY_LEN = 32
_DER_OCTET_STRING_32 = bytes([0x04, _ED25519_KEY_LEN])
FINGERPRINT_HEX_DIGITS = 16


# --- lab ids and names -------------------------------------------------------------------------


def is_valid_lab_id(lab: object) -> TypeGuard[str]:
    """A lowercase DNS label: a-z, 0-9, '-', 1-63 chars, no leading/trailing '-'.

    ``fullmatch``, not ``^...$``: a ``$`` would let a trailing newline through.
    """
    return isinstance(lab, str) and _LAB_ID.fullmatch(lab) is not None


def validate_lab_id(lab: object, *, where: str | None = None) -> str:
    """Return ``lab`` if it is a lab id; ConfigError naming the value otherwise."""
    if not is_valid_lab_id(lab):
        raise ConfigError(
            f"invalid lab id {shown(lab)}: must be a lowercase DNS label "
            "(a-z, 0-9, '-', 1-63 chars, no leading/trailing '-')",
            where=where,
            rule=Rule.LAB_ID_SYNTAX,
        )
    return lab


def tls_server_name(lab: str) -> str:
    """The TLS target name of a lab's node (a DNS SAN of its certificate)."""
    return f"{validate_lab_id(lab)}{TLS_NAME_SUFFIX}"


def lab_uri(lab: str) -> str:
    return f"{LAB_URI_PREFIX}{validate_lab_id(lab)}"


def shown(value: object) -> str:
    """Names a bad value without flooding a log line with an attacker-sized string."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- fingerprints ------------------------------------------------------------------------------


def public_key_bytes(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(key: ed25519.Ed25519PublicKey) -> str:
    """The one name of an audit key: the first 16 hex digits of SHA-256 of its raw 32 bytes.

    The same string is part of every audit log id (``crossmatch-audit/<lab>/<fingerprint>``),
    so `cert show`, `audit verify` and the HTML report all show what the log id shows. It
    identifies, it does not authenticate: every check that matters compares whole keys.
    """
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, ``sha256:<hex>``, as audit records name a peer's cert."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


# --- certificate parsing -----------------------------------------------------------------------


def as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def load_certificate(pem: bytes, *, rule: Rule, where: str | None = None) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as e:
        raise PolicyError(f"not a PEM X.509 certificate: {e}", where=where, rule=rule) from e


def load_ca_certificate(ca_cert_pem: bytes, *, where: str | None = None) -> x509.Certificate:
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"CA certificate is not PEM X.509: {e}", where=where) from e
    if not is_ca(ca):
        raise ConfigError("CA certificate lacks BasicConstraints CA=true", where=where)
    return ca


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _common_names(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def encode_audit_key(key: ed25519.Ed25519PublicKey) -> bytes:
    """The extnValue of the audit-key extension (a DER OCTET STRING of the raw key)."""
    return _DER_OCTET_STRING_32 + public_key_bytes(key)


def _decode_audit_key(extensions: x509.Extensions) -> ed25519.Ed25519PublicKey:
    """The certified audit key; ValueError if missing or malformed."""
    try:
        ext = extensions.get_extension_for_oid(AUDIT_KEY_EXTENSION_OID)
    except x509.ExtensionNotFound as e:
        raise ValueError("audit key extension missing") from e
    value = ext.value
    data = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if len(data) != 2 + _ED25519_KEY_LEN or data[:2] != _DER_OCTET_STRING_32:
        raise ValueError("audit key extension is not a 32-byte OCTET STRING")
    return ed25519.Ed25519PublicKey.from_public_bytes(data[2:])


def _lab_from_names(subject: x509.Name, extensions: x509.Extensions) -> str:
    """The one lab id that CN and both SANs agree on; ValueError otherwise."""
    cns = _common_names(subject)
    if len(cns) != 1 or not is_valid_lab_id(cns[0]):
        raise ValueError(f"subject must have exactly one CN that is a lab id, got {shown(cns)}")
    lab = cns[0]
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as e:
        raise ValueError("subjectAltName missing") from e
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    dns = san.get_values_for_type(x509.DNSName)
    if uris != [lab_uri(lab)] or dns != [tls_server_name(lab)] or len(list(san)) != 2:
        raise ValueError(
            f"subjectAltName must be exactly URI:{lab_uri(lab)} and DNS:{tls_server_name(lab)}"
            f" for CN {lab!r}, got {shown([str(g.value) for g in san])}"
        )
    return lab


# --- verification: who is this peer? -----------------------------------------------------------


@dataclass(frozen=True)
class PeerIdentity:
    """A peer as certified by the consortium CA.

    ``fingerprint`` is the certificate's (``certificate_fingerprint``), for audit records;
    the audit key's own name is ``key_fingerprint(audit_public_key)``.
    """

    lab: str
    audit_public_key: ed25519.Ed25519PublicKey
    serial: int
    not_after: datetime
    fingerprint: str


def identity_from_certificate(
    cert_pem: bytes,
    ca_cert_pem: bytes,
    *,
    now: datetime,
    revoked: frozenset[int] = frozenset(),
    skew: timedelta = CLOCK_SKEW,
) -> PeerIdentity:
    """Verify a node certificate against the CA and return the identity it certifies.

    Rules (PolicyError.rule): certificate-malformed, certificate-wrong-ca,
    certificate-not-yet-valid, certificate-expired, certificate-revoked,
    ca-certificate-expired.
    """
    now = as_utc(now)
    cert = load_certificate(cert_pem, rule=Rule.CERTIFICATE_MALFORMED)
    ca = load_ca_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise PolicyError(
            f"certificate (issuer {cert.issuer.rfc4514_string()!r}) is not signed by the "
            "consortium CA",
            rule=Rule.CERTIFICATE_WRONG_CA,
        ) from e
    lab, audit_key = node_identity_fields(cert)
    check_validity(cert, ca, lab, now, skew)
    if cert.serial_number in revoked:
        raise PolicyError(
            f"certificate serial {cert.serial_number} of lab {lab!r} is revoked",
            rule=Rule.CERTIFICATE_REVOKED,
        )
    return PeerIdentity(
        lab=lab,
        audit_public_key=audit_key,
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        fingerprint=certificate_fingerprint(cert),
    )


def node_identity_fields(cert: x509.Certificate) -> tuple[str, ed25519.Ed25519PublicKey]:
    """(lab, audit key) of a node certificate; PolicyError certificate-malformed otherwise."""
    try:
        if is_ca(cert):
            raise ValueError("a CA certificate is not a node certificate")
        lab = _lab_from_names(cert.subject, cert.extensions)
        return lab, _decode_audit_key(cert.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise PolicyError(
            f"not a crossmatch node certificate: {e}", rule=Rule.CERTIFICATE_MALFORMED
        ) from e


def check_validity(
    cert: x509.Certificate, ca: x509.Certificate, lab: str, now: datetime, skew: timedelta
) -> None:
    if now + skew < cert.not_valid_before_utc:
        raise PolicyError(
            f"certificate of lab {lab!r} is not valid before "
            f"{_shown_time(cert.not_valid_before_utc)} (now {_shown_time(now)})",
            rule=Rule.CERTIFICATE_NOT_YET_VALID,
        )
    if now - skew > cert.not_valid_after_utc:
        raise PolicyError(
            f"certificate of lab {lab!r} expired at {_shown_time(cert.not_valid_after_utc)}",
            rule=Rule.CERTIFICATE_EXPIRED,
        )
    if now - skew > ca.not_valid_after_utc:
        raise PolicyError(
            f"consortium CA certificate expired at {_shown_time(ca.not_valid_after_utc)}",
            rule=Rule.CA_CERTIFICATE_EXPIRED,
        )


def _shown_time(moment: datetime) -> str:
    return format_utc(moment, timespec="seconds")


def days_until_expiry(cert_pem: bytes, *, now: datetime) -> float:
    cert = load_certificate(cert_pem, rule=Rule.CERTIFICATE_MALFORMED)
    return (cert.not_valid_after_utc - as_utc(now)).total_seconds() / 86400


# --- certificate requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class VettedRequest:
    """The only three things a CA copies from a CSR."""

    lab: str
    public_key: ec.EllipticCurvePublicKey
    audit_key: ed25519.Ed25519PublicKey


def vet_csr(csr_pem: bytes) -> VettedRequest:
    """Everything issuance copies, checked; PolicyError naming the rule otherwise."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise PolicyError(f"not a PEM CSR: {e}", rule=Rule.CSR_MALFORMED) from e
    if not csr.is_signature_valid:
        raise PolicyError("CSR signature does not verify", rule=Rule.CSR_SIGNATURE_INVALID)
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise PolicyError("CSR key must be ECDSA P-256", rule=Rule.CSR_KEY_TYPE)
    cns = _common_names(csr.subject)
    if len(cns) == 1 and not is_valid_lab_id(cns[0]):
        raise PolicyError(f"invalid lab id {shown(cns[0])} in CSR", rule=Rule.LAB_ID_SYNTAX)
    try:
        lab = _lab_from_names(csr.subject, csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise PolicyError(f"CSR identity: {e}", rule=Rule.CSR_SAN_MISMATCH) from e
    try:
        audit_key = _decode_audit_key(csr.extensions)
    except ValueError as e:
        raise PolicyError(f"CSR for lab {lab!r}: {e}", rule=Rule.CSR_AUDIT_KEY) from e
    return VettedRequest(lab=lab, public_key=public_key, audit_key=audit_key)


def check_matches_request(identity: PeerIdentity, csr_pem: bytes, *, where: str) -> None:
    """An issued certificate must certify the lab and audit key the node asked for."""
    request = vet_csr(csr_pem)
    if request.lab != identity.lab:
        raise ConfigError(
            f"certificate is for lab {identity.lab!r}, the request was for {request.lab!r}",
            where=where,
            rule=Rule.CERTIFICATE_LAB_MISMATCH,
        )
    if request.audit_key != identity.audit_public_key:
        raise ConfigError(
            "certificate certifies a different audit key than requested",
            where=where,
            rule=Rule.CERTIFICATE_AUDIT_KEY_MISMATCH,
        )
