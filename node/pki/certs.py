"""Node certificates: what a crossmatch certificate and CSR contain, a node's TLS files, and
the request/install half of the enrolment flow (the CA half is ``node.pki.ca``).

A lab never holds the CA key: it writes a key and a CSR (``request_certificate``), the
consortium signs it (``ca.issue_certificate``, which copies only vetted fields), the lab
installs the result (``install_certificate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.pki.keys import generate_tls_key, load_private_key, write_private_key
from node.state.files import atomic_write, read_or_raise
from protocol.errors import ConfigError
from protocol.identity import (
    AUDIT_KEY_EXTENSION_OID,
    CLOCK_SKEW,
    ORGANIZATION,
    VettedRequest,
    as_utc,
    check_matches_request,
    encode_audit_key,
    identity_from_certificate,
    lab_uri,
    load_certificate,
    tls_server_name,
    validate_lab_id,
)
from protocol.rules import Rule

TLS_DIR = "tls"  # under NODE_DIR
NODE_KEY_FILE = "node.key"
NODE_CERT_FILE = "node.crt"
NODE_CSR_FILE = "node.csr"
NODE_CA_FILE = "ca.crt"


# --- what a certificate contains ---------------------------------------------------------------


def subject_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def _node_san(lab: str) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(lab_uri(lab)), x509.DNSName(tls_server_name(lab))]
    )


def _audit_extension(key: ed25519.Ed25519PublicKey) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(AUDIT_KEY_EXTENSION_OID, encode_audit_key(key))


def key_usage(*, cert_sign: bool) -> x509.KeyUsage:
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


def make_csr(
    tls_key: ec.EllipticCurvePrivateKey,
    lab: str,
    audit_public_key: ed25519.Ed25519PublicKey,
) -> bytes:
    """A PEM CSR for ``lab`` carrying the SANs and the audit key, signed by ``tls_key``."""
    validate_lab_id(lab)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject_name(lab))
        .add_extension(_node_san(lab), critical=False)
        .add_extension(_audit_extension(audit_public_key), critical=False)
        .sign(tls_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def build_node_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    request: VettedRequest,
    serial: int,
    validity: tuple[datetime, datetime],
) -> x509.Certificate:
    """The node certificate for a vetted request; every field but three is set here."""
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    return (
        x509.CertificateBuilder()
        .subject_name(subject_name(request.lab))
        .issuer_name(ca_cert.subject)
        .public_key(request.public_key)
        .serial_number(serial)
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(cert_sign=False), critical=True)
        .add_extension(eku, critical=False)
        .add_extension(_node_san(request.lab), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .add_extension(_audit_extension(request.audit_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


# --- a node's TLS files ------------------------------------------------------------------------


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
            read_or_raise(self.key, "node key"),
            read_or_raise(
                self.cert, "node certificate (install one with `crossmatch cert install`)"
            ),
            read_or_raise(self.ca_cert, "consortium CA certificate"),
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
    atomic_write(files.csr, csr)
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
    cert = load_certificate(
        cert_pem, rule=Rule.CERTIFICATE_MALFORMED, where="certificate to install"
    )
    key = load_private_key(files.key)
    if key.public_key() != cert.public_key():
        raise ConfigError(
            "certificate is not for this node's key",
            where=str(files.key),
            rule=Rule.CERTIFICATE_KEY_MISMATCH,
        )
    check_time = as_utc(now) if now is not None else cert.not_valid_before_utc + CLOCK_SKEW
    identity = identity_from_certificate(cert_pem, ca_cert_pem, now=check_time)
    if files.csr.exists():
        csr = read_or_raise(files.csr, "node CSR")
        check_matches_request(identity, csr, where=str(files.csr))
    atomic_write(files.ca_cert, ca_cert_pem)
    atomic_write(files.cert, cert_pem)
