"""Consortium PKI: the CA, node certificates, the CSR flow, revocation, gRPC mTLS credentials.

Identity binding (other modules rely on it):

* A lab id is a lowercase DNS label (``validate_lab_id``).
* A node certificate has subject CN = lab id, O = ``crossmatch consortium``, and SANs
  ``URI:urn:crossmatch:lab:<lab>`` and ``DNS:<lab>.crossmatch.invalid``. The DNS name is the
  TLS target name an initiator asks for (``grpc.ssl_target_name_override``), so TLS hostname
  verification proves the responder is the lab the initiator meant to reach.
* The node's Ed25519 audit public key is certified in the same certificate, in a non-critical
  extension (``AUDIT_KEY_EXTENSION_OID``), so one CA signature binds lab id + TLS key + audit key.

A lab never holds the CA key: it writes a key and a CSR (``make_csr``), the consortium signs
it (``issue_certificate``, which copies only vetted fields), the lab installs the result
(``install_certificate``). A responder takes the peer's lab from the verified certificate
(``identity_from_grpc_context``), never from a message.

Time is always a parameter (``now``) so tests are deterministic.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.errors import ConfigError, PolicyError

# --- identity constants ----------------------------------------------------------------------

ORGANIZATION = "crossmatch consortium"
LAB_URI_PREFIX = "urn:crossmatch:lab:"
TLS_NAME_SUFFIX = ".crossmatch.invalid"

# Our private OID arc: 2.25.<UUID as integer> (ITU-T X.667), from the UUID
# 28b00059-fc5b-44c0-8667-128e7ca24a79, generated once for crossmatch. Below it:
#   .1.1  audit public key, format version 1: extnValue = DER OCTET STRING of the
#         32 raw bytes of an Ed25519 public key (RFC 8032). A new format gets a new OID.
CROSSMATCH_OID_ARC = "2.25.54082971207905787745244011379088837241"
AUDIT_KEY_EXTENSION_OID = x509.ObjectIdentifier(CROSSMATCH_OID_ARC + ".1.1")

_LAB_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_ED25519_KEY_LEN = 32
_DER_OCTET_STRING_32 = bytes([0x04, _ED25519_KEY_LEN])

# Clock skew tolerated between nodes and the CA: certificates are backdated by this much and
# verification accepts this much on either side of the validity window.
CLOCK_SKEW = timedelta(minutes=5)
CRL_VALIDITY = timedelta(days=30)

# --- file layout -----------------------------------------------------------------------------

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_INDEX_FILE = "index.json"  # issued and revoked serials (CA bookkeeping)
CA_CRL_FILE = "crl.pem"
_CA_LOCK_FILE = ".lock"
_CA_INDEX_VERSION = 1

TLS_DIR = "tls"  # under NODE_DIR
NODE_KEY_FILE = "node.key"
NODE_CERT_FILE = "node.crt"
NODE_CSR_FILE = "node.csr"
NODE_CA_FILE = "ca.crt"


# --- lab ids ---------------------------------------------------------------------------------


def is_valid_lab_id(lab: object) -> bool:
    return isinstance(lab, str) and _LAB_ID.fullmatch(lab) is not None


def validate_lab_id(lab: str, *, where: str | None = None) -> str:
    """Return ``lab`` if it is a lowercase DNS label; ConfigError naming the value otherwise."""
    if not is_valid_lab_id(lab):
        raise ConfigError(
            f"invalid lab id {_shown(lab)}: must be a lowercase DNS label "
            "(a-z, 0-9, '-', 1-63 chars, no leading/trailing '-')",
            where=where,
            rule="lab-id-syntax",
        )
    return lab


def tls_server_name(lab: str) -> str:
    """The TLS target name of a lab's node (a DNS SAN of its certificate)."""
    return f"{validate_lab_id(lab)}{TLS_NAME_SUFFIX}"


def lab_uri(lab: str) -> str:
    return f"{LAB_URI_PREFIX}{validate_lab_id(lab)}"


def _shown(value: object) -> str:
    # Names a bad value without flooding a log line with an attacker-sized string.
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- keys and files --------------------------------------------------------------------------


def generate_tls_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (what gRPC's BoringSSL handles everywhere)."""
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(path: Path, key: Any, *, overwrite: bool = False) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, mode 0600 from the first byte, atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError("refusing to overwrite an existing private key", where=str(path))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, pem, mode=0o600)


def load_private_key(path: Path) -> Any:
    """Load a PEM private key; ConfigError naming the path on any problem.

    Like ssh, refuses a key file that group or others can read: such a key may already be leaked.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read private key: {e.strerror}", where=str(path)) from e
    if mode & 0o077:
        raise ConfigError(
            f"private key is accessible by group/others (mode {mode & 0o777:o}); chmod 600 it",
            where=str(path),
            rule="key-file-permissions",
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"not a valid unencrypted PEM private key: {e}", where=str(path)) from e


def load_audit_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    """An Ed25519 audit key from a PEM file holding either the private or the public key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read audit key: {e.strerror}", where=str(path)) from e
    key: Any
    if b"PRIVATE KEY" in data:
        key = load_private_key(path)
        key = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
    else:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise ConfigError(f"not a PEM key: {e}", where=str(path)) from e
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError("audit key must be Ed25519", where=str(path))
    return key


def _write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    The temporary file is created with ``mode`` (mkstemp creates 0600; we only widen it for
    public files), so a private key is never readable by others, not even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {what}: {e.strerror}", where=str(path)) from e


# --- certificate parsing helpers -------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _load_cert(pem: bytes, *, rule: str, where: str | None = None) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as e:
        raise PolicyError(f"not a PEM X.509 certificate: {e}", where=where, rule=rule) from e


def _load_ca_cert(ca_cert_pem: bytes, *, where: str | None = None) -> x509.Certificate:
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"CA certificate is not PEM X.509: {e}", where=where) from e
    if not _is_ca(ca):
        raise ConfigError("CA certificate lacks BasicConstraints CA=true", where=where)
    return ca


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _common_names(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _encode_audit_key(key: ed25519.Ed25519PublicKey) -> bytes:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _DER_OCTET_STRING_32 + raw


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
        raise ValueError(f"subject must have exactly one CN that is a lab id, got {_shown(cns)}")
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
            f" for CN {lab!r}, got {_shown([str(g.value) for g in san])}"
        )
    return lab


def certificate_fingerprint(cert: x509.Certificate) -> str:
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def audit_key_fingerprint(key: ed25519.Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# --- the consortium CA -----------------------------------------------------------------------


def _ca_subject(name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def init_ca(
    ca_dir: Path,
    *,
    now: datetime,
    name: str = "crossmatch consortium CA",
    valid_days: int = 3650,
) -> None:
    """Create a self-signed consortium CA in ``ca_dir``; refuses to overwrite an existing one."""
    ca_dir = Path(ca_dir)
    now = _utc(now)
    existing = [f for f in (CA_KEY_FILE, CA_CERT_FILE, CA_INDEX_FILE) if (ca_dir / f).exists()]
    if existing:
        raise ConfigError(f"a CA already exists here ({', '.join(existing)})", where=str(ca_dir))
    if valid_days < 1:
        raise ConfigError(f"CA validity must be at least 1 day, got {valid_days}")
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_tls_key()
    subject = _ca_subject(name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private_key(ca_dir / CA_KEY_FILE, key)
    _write_atomic(ca_dir / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    _save_index(ca_dir, {"version": _CA_INDEX_VERSION, "issued": [], "revoked": [], "crl": 0})
    _write_crl(ca_dir, key, cert, revoked=[], crl_number=0, now=now)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class _CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _load_ca(ca_dir: Path) -> _CA:
    ca_dir = Path(ca_dir)
    key = load_private_key(ca_dir / CA_KEY_FILE)
    cert = _load_ca_cert(
        _read_file(ca_dir / CA_CERT_FILE, "CA certificate"), where=str(ca_dir / CA_CERT_FILE)
    )
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ConfigError("CA key does not match CA certificate", where=str(ca_dir))
    return _CA(key=key, cert=cert)


@contextlib.contextmanager
def _ca_locked(ca_dir: Path) -> Iterator[None]:
    # Issue and revoke rewrite the index and the CRL: one at a time.
    if not (Path(ca_dir) / CA_CERT_FILE).exists():
        raise ConfigError(
            f"no CA here (missing {CA_CERT_FILE}); run `crossmatch ca init`", where=str(ca_dir)
        )
    with open(Path(ca_dir) / _CA_LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _load_index(ca_dir: Path) -> dict[str, Any]:
    path = Path(ca_dir) / CA_INDEX_FILE
    try:
        index = json.loads(_read_file(path, "CA index"))
    except ValueError as e:
        raise ConfigError(f"CA index is not valid JSON: {e}", where=str(path)) from e
    if not isinstance(index, dict) or index.get("version") != _CA_INDEX_VERSION:
        raise ConfigError(
            f"unsupported CA index (want version {_CA_INDEX_VERSION})", where=str(path)
        )
    return index


def _save_index(ca_dir: Path, index: dict[str, Any]) -> None:
    data = json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"
    _write_atomic(Path(ca_dir) / CA_INDEX_FILE, data, mode=0o600)


# --- CSR and issuance ------------------------------------------------------------------------


def _node_subject(lab: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, lab),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def _node_san(lab: str) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(lab_uri(lab)), x509.DNSName(tls_server_name(lab))]
    )


def _audit_extension(key: ed25519.Ed25519PublicKey) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(AUDIT_KEY_EXTENSION_OID, _encode_audit_key(key))


def make_csr(
    tls_key: ec.EllipticCurvePrivateKey,
    lab: str,
    audit_public_key: ed25519.Ed25519PublicKey,
) -> bytes:
    """A PEM CSR for ``lab`` carrying the SANs and the audit key, signed by ``tls_key``."""
    validate_lab_id(lab)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_node_subject(lab))
        .add_extension(_node_san(lab), critical=False)
        .add_extension(_audit_extension(audit_public_key), critical=False)
        .sign(tls_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _VettedRequest:
    lab: str
    public_key: ec.EllipticCurvePublicKey
    audit_key: ed25519.Ed25519PublicKey


def _vet_csr(csr_pem: bytes) -> _VettedRequest:
    """Everything issue_certificate copies, checked; PolicyError naming the rule otherwise."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise PolicyError(f"not a PEM CSR: {e}", rule="csr-malformed") from e
    if not csr.is_signature_valid:
        raise PolicyError("CSR signature does not verify", rule="csr-signature-invalid")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise PolicyError("CSR key must be ECDSA P-256", rule="csr-key-type")
    cns = _common_names(csr.subject)
    if len(cns) == 1 and not is_valid_lab_id(cns[0]):
        raise PolicyError(f"invalid lab id {_shown(cns[0])} in CSR", rule="lab-id-syntax")
    try:
        lab = _lab_from_names(csr.subject, csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise PolicyError(f"CSR identity: {e}", rule="csr-san-mismatch") from e
    try:
        audit_key = _decode_audit_key(csr.extensions)
    except ValueError as e:
        raise PolicyError(f"CSR for lab {lab!r}: {e}", rule="csr-audit-key") from e
    return _VettedRequest(lab=lab, public_key=public_key, audit_key=audit_key)


def issue_certificate(
    ca_dir: Path, csr_pem: bytes, *, now: datetime, valid_days: int = 365
) -> bytes:
    """Sign a vetted node CSR with the consortium CA; returns the certificate PEM.

    Only the lab id, the TLS public key and the audit key are taken from the CSR; every other
    field is set here. The serial is random and unique in the CA's index. ``not_before`` is
    backdated by CLOCK_SKEW; ``not_after`` never outlives the CA certificate.
    """
    now = _utc(now)
    if valid_days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, got {valid_days}")
    request = _vet_csr(csr_pem)
    with _ca_locked(ca_dir):
        ca = _load_ca(ca_dir)
        if now > ca.cert.not_valid_after_utc:
            raise ConfigError(
                "the CA certificate has expired", where=str(ca_dir), rule="ca-certificate-expired"
            )
        index = _load_index(ca_dir)
        serial = _fresh_serial(index)
        not_after = min(now + timedelta(days=valid_days), ca.cert.not_valid_after_utc)
        cert = _build_node_certificate(ca, request, serial, now - CLOCK_SKEW, not_after)
        index["issued"].append(
            {
                "serial": str(serial),
                "lab": request.lab,
                "not_after": not_after.isoformat(),
                "issued_at": now.isoformat(),
                "fingerprint": certificate_fingerprint(cert),
            }
        )
        _save_index(ca_dir, index)
    return cert.public_bytes(serialization.Encoding.PEM)


def _fresh_serial(index: dict[str, Any]) -> int:
    used = {int(entry["serial"]) for entry in index["issued"]}
    while True:
        serial = x509.random_serial_number()
        if serial not in used:
            return serial


def _build_node_certificate(
    ca: _CA, request: _VettedRequest, serial: int, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    return (
        x509.CertificateBuilder()
        .subject_name(_node_subject(request.lab))
        .issuer_name(ca.cert.subject)
        .public_key(request.public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(eku, critical=False)
        .add_extension(_node_san(request.lab), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .add_extension(_audit_extension(request.audit_key), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


# --- verification: who is this peer? ---------------------------------------------------------


@dataclass(frozen=True)
class PeerIdentity:
    """A peer as certified by the consortium CA.

    ``fingerprint`` is the SHA-256 of the certificate's DER (``sha256:<hex>``), suitable for
    audit records; the audit key's own fingerprint is ``audit_key_fingerprint(...)``.
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
    now = _utc(now)
    cert = _load_cert(cert_pem, rule="certificate-malformed")
    ca = _load_ca_cert(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise PolicyError(
            f"certificate (issuer {cert.issuer.rfc4514_string()!r}) is not signed by the "
            "consortium CA",
            rule="certificate-wrong-ca",
        ) from e
    lab, audit_key = _node_identity_fields(cert)
    _check_validity(cert, ca, lab, now, skew)
    if cert.serial_number in revoked:
        raise PolicyError(
            f"certificate serial {cert.serial_number} of lab {lab!r} is revoked",
            rule="certificate-revoked",
        )
    return PeerIdentity(
        lab=lab,
        audit_public_key=audit_key,
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        fingerprint=certificate_fingerprint(cert),
    )


def _node_identity_fields(cert: x509.Certificate) -> tuple[str, ed25519.Ed25519PublicKey]:
    try:
        if _is_ca(cert):
            raise ValueError("a CA certificate is not a node certificate")
        lab = _lab_from_names(cert.subject, cert.extensions)
        return lab, _decode_audit_key(cert.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise PolicyError(
            f"not a crossmatch node certificate: {e}", rule="certificate-malformed"
        ) from e


def _check_validity(
    cert: x509.Certificate, ca: x509.Certificate, lab: str, now: datetime, skew: timedelta
) -> None:
    if now + skew < cert.not_valid_before_utc:
        raise PolicyError(
            f"certificate of lab {lab!r} is not valid before "
            f"{cert.not_valid_before_utc.isoformat()} (now {now.isoformat()})",
            rule="certificate-not-yet-valid",
        )
    if now - skew > cert.not_valid_after_utc:
        raise PolicyError(
            f"certificate of lab {lab!r} expired at {cert.not_valid_after_utc.isoformat()}",
            rule="certificate-expired",
        )
    if now - skew > ca.not_valid_after_utc:
        raise PolicyError(
            f"consortium CA certificate expired at {ca.not_valid_after_utc.isoformat()}",
            rule="ca-certificate-expired",
        )


def peer_certificate_from_grpc_context(context: grpc.ServicerContext) -> bytes:
    """The client's leaf certificate PEM as the TLS layer verified it (gRPC auth context)."""
    certs = context.auth_context().get("x509_pem_cert") or []
    if len(certs) != 1:
        raise PolicyError("peer presented no client certificate", rule="certificate-missing")
    return bytes(certs[0])


def identity_from_grpc_context(
    context: grpc.ServicerContext,
    ca_cert_pem: bytes,
    *,
    now: datetime,
    revoked: frozenset[int] = frozenset(),
) -> PeerIdentity:
    """What a responder calls first in every RPC: the peer's lab, from its verified cert."""
    return identity_from_certificate(
        peer_certificate_from_grpc_context(context), ca_cert_pem, now=now, revoked=revoked
    )


def days_until_expiry(cert_pem: bytes, *, now: datetime) -> float:
    cert = _load_cert(cert_pem, rule="certificate-malformed")
    return (cert.not_valid_after_utc - _utc(now)).total_seconds() / 86400


@dataclass(frozen=True)
class CertificateSummary:
    """What `crossmatch cert show` prints; parsed, not verified (see ``verified_against``)."""

    lab: str
    serial: int
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    audit_key_fingerprint: str


def summarize_certificate(cert_pem: bytes) -> CertificateSummary:
    cert = _load_cert(cert_pem, rule="certificate-malformed")
    lab, audit_key = _node_identity_fields(cert)
    return CertificateSummary(
        lab=lab,
        serial=cert.serial_number,
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=certificate_fingerprint(cert),
        audit_key_fingerprint=audit_key_fingerprint(audit_key),
    )


# --- revocation ------------------------------------------------------------------------------


def revoke(ca_dir: Path, serial: int, *, now: datetime) -> None:
    """Add ``serial`` to the CA's revocation list and re-sign ``CA_DIR/crl.pem``.

    The serial must be one this CA issued (guards against typos); revoking twice is a no-op.
    """
    now = _utc(now)
    with _ca_locked(ca_dir):
        ca = _load_ca(ca_dir)
        index = _load_index(ca_dir)
        if str(serial) not in {entry["serial"] for entry in index["issued"]}:
            raise ConfigError(
                f"serial {serial} was not issued by this CA",
                where=str(ca_dir),
                rule="unknown-serial",
            )
        if str(serial) not in {entry["serial"] for entry in index["revoked"]}:
            index["revoked"].append({"serial": str(serial), "revoked_at": now.isoformat()})
        index["crl"] = int(index.get("crl", 0)) + 1
        revoked = [
            (int(e["serial"]), datetime.fromisoformat(e["revoked_at"])) for e in index["revoked"]
        ]
        _write_crl(ca_dir, ca.key, ca.cert, revoked=revoked, crl_number=index["crl"], now=now)
        _save_index(ca_dir, index)


def _write_crl(
    ca_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    revoked: list[tuple[int, datetime]],
    crl_number: int,
    now: datetime,
) -> None:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
    )
    for serial, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(key, hashes.SHA256())
    _write_atomic(Path(ca_dir) / CA_CRL_FILE, crl.public_bytes(serialization.Encoding.PEM))


def load_revoked_serials(crl_pem: bytes, ca_cert_pem: bytes) -> frozenset[int]:
    """Serials revoked by a CRL, after checking the consortium CA signed it (ConfigError)."""
    ca = _load_ca_cert(ca_cert_pem)
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as e:
        raise ConfigError(f"not a PEM CRL: {e}", rule="crl-malformed") from e
    public_key = ca.public_key()
    if crl.issuer != ca.subject or not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ConfigError("CRL was not issued by the consortium CA", rule="crl-wrong-ca")
    if not crl.is_signature_valid(public_key):
        raise ConfigError(
            "CRL signature does not verify with the consortium CA key", rule="crl-wrong-ca"
        )
    return frozenset(entry.serial_number for entry in crl)


# --- node TLS files and installation ---------------------------------------------------------


@dataclass(frozen=True)
class NodeTlsFiles:
    """Paths of a node's TLS material: ``NODE_DIR/tls/{node.key,node.crt,node.csr,ca.crt}``."""

    directory: Path

    @classmethod
    def of_node(cls, node_dir: Path) -> NodeTlsFiles:
        return cls(Path(node_dir) / TLS_DIR)

    @property
    def key(self) -> Path:
        return self.directory / NODE_KEY_FILE

    @property
    def cert(self) -> Path:
        return self.directory / NODE_CERT_FILE

    @property
    def csr(self) -> Path:
        return self.directory / NODE_CSR_FILE

    @property
    def ca_cert(self) -> Path:
        return self.directory / NODE_CA_FILE

    def load_pems(self) -> tuple[bytes, bytes, bytes]:
        """(key, cert, ca) PEM bytes for server_credentials / channel_credentials."""
        load_private_key(self.key)  # permission and format check, with a clear error
        return (
            _read_file(self.key, "node key"),
            _read_file(self.cert, "node certificate (install one with `crossmatch cert install`)"),
            _read_file(self.ca_cert, "consortium CA certificate"),
        )


def request_certificate(
    node_tls_dir: Path,
    lab: str,
    audit_public_key: ed25519.Ed25519PublicKey,
    *,
    new_key: bool = False,
) -> bytes:
    """Write ``node.csr`` (and ``node.key`` if absent or ``new_key``); returns the CSR PEM.

    Used by ``init`` without a local CA and for renewal (same key unless ``new_key``).
    """
    files = NodeTlsFiles(Path(node_tls_dir))
    validate_lab_id(lab)
    if new_key or not files.key.exists():
        write_private_key(files.key, generate_tls_key(), overwrite=new_key)
    key = load_private_key(files.key)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("node TLS key must be ECDSA P-256", where=str(files.key))
    csr = make_csr(key, lab, audit_public_key)
    _write_atomic(files.csr, csr)
    return csr


def install_certificate(
    node_tls_dir: Path,
    cert_pem: bytes,
    ca_cert_pem: bytes,
    *,
    now: datetime | None = None,
) -> None:
    """Install ``node.crt`` and ``ca.crt`` after checking the certificate fits this node.

    Checks: it is a crossmatch node certificate signed by ``ca_cert_pem``; its public key is
    ``node.key``'s; if ``node.csr`` is present, lab and audit key match the request; with
    ``now``, it is within its validity window. Files are replaced atomically.
    """
    files = NodeTlsFiles(Path(node_tls_dir))
    cert = _load_cert(cert_pem, rule="certificate-malformed", where="certificate to install")
    key = load_private_key(files.key)
    if key.public_key() != cert.public_key():
        raise ConfigError(
            "certificate is not for this node's key",
            where=str(files.key),
            rule="certificate-key-mismatch",
        )
    check_time = _utc(now) if now is not None else cert.not_valid_before_utc + CLOCK_SKEW
    identity = identity_from_certificate(cert_pem, ca_cert_pem, now=check_time)
    if files.csr.exists():
        _check_matches_request(identity, _read_file(files.csr, "node CSR"), files.csr)
    _write_atomic(files.ca_cert, ca_cert_pem)
    _write_atomic(files.cert, cert_pem)


def _check_matches_request(identity: PeerIdentity, csr_pem: bytes, csr_path: Path) -> None:
    request = _vet_csr(csr_pem)
    if request.lab != identity.lab:
        raise ConfigError(
            f"certificate is for lab {identity.lab!r}, the request was for {request.lab!r}",
            where=str(csr_path),
            rule="certificate-lab-mismatch",
        )
    if request.audit_key != identity.audit_public_key:
        raise ConfigError(
            "certificate certifies a different audit key than requested",
            where=str(csr_path),
            rule="certificate-audit-key-mismatch",
        )


# --- gRPC credentials ------------------------------------------------------------------------


def server_credentials(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> grpc.ServerCredentials:
    """Responder side of mutual TLS: clients must present a certificate from the CA."""
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def channel_credentials(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> grpc.ChannelCredentials:
    """Initiator side; pair with the channel option
    ``("grpc.ssl_target_name_override", tls_server_name(peer_lab))``."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def channel_options(peer_lab: str) -> list[tuple[str, str]]:
    """Channel options that make TLS hostname verification check the peer's lab id."""
    return [("grpc.ssl_target_name_override", tls_server_name(peer_lab))]
