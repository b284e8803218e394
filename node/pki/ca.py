"""The consortium CA directory: its key and certificate, an index of issued and revoked
serials, and the CRL it publishes. Issue and revoke hold a file lock, one at a time."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from node.pki.certs import build_node_certificate, key_usage, subject_name
from node.pki.keys import generate_tls_key, load_private_key, write_private_key
from node.state.files import atomic_write, read_or_raise
from protocol.errors import ConfigError
from protocol.identity import (
    CLOCK_SKEW,
    as_utc,
    certificate_fingerprint,
    load_ca_certificate,
    vet_csr,
)
from protocol.rules import Rule
from protocol.timestamps import format_utc

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_INDEX_FILE = "index.json"  # issued and revoked serials (CA bookkeeping)
CA_CRL_FILE = "crl.pem"
_CA_LOCK_FILE = ".lock"
_CA_INDEX_VERSION = 1
CRL_VALIDITY = timedelta(days=30)


@dataclass(frozen=True)
class _CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def init_ca(
    ca_dir: Path,
    *,
    now: datetime,
    name: str = "crossmatch consortium CA",
    valid_days: int = 3650,
) -> None:
    """Create a self-signed consortium CA in ``ca_dir``; refuses to overwrite an existing one."""
    ca_dir = Path(ca_dir)
    now = as_utc(now)
    existing = [f for f in (CA_KEY_FILE, CA_CERT_FILE, CA_INDEX_FILE) if (ca_dir / f).exists()]
    if existing:
        raise ConfigError(f"a CA already exists here ({', '.join(existing)})", where=str(ca_dir))
    if valid_days < 1:
        raise ConfigError(f"CA validity must be at least 1 day, got {valid_days}")
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_tls_key()
    subject = subject_name(name)
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
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private_key(ca_dir / CA_KEY_FILE, key)
    atomic_write(ca_dir / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    _save_index(ca_dir, {"version": _CA_INDEX_VERSION, "issued": [], "revoked": [], "crl": 0})
    _write_crl(ca_dir, _CA(key, cert), revoked=[], crl_number=0, now=now)


def _load_ca(ca_dir: Path) -> _CA:
    ca_dir = Path(ca_dir)
    key = load_private_key(ca_dir / CA_KEY_FILE)
    cert_path = ca_dir / CA_CERT_FILE
    cert = load_ca_certificate(read_or_raise(cert_path, "CA certificate"), where=str(cert_path))
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ConfigError("CA key does not match CA certificate", where=str(ca_dir))
    return _CA(key=key, cert=cert)


def ca_signing_key(ca_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The consortium CA's private key, after checking it belongs to the CA certificate
    (what signs policies and warninglists)."""
    return _load_ca(ca_dir).key


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
        index = json.loads(read_or_raise(path, "CA index"))
    except ValueError as e:
        raise ConfigError(f"CA index is not valid JSON: {e}", where=str(path)) from e
    if not isinstance(index, dict) or index.get("version") != _CA_INDEX_VERSION:
        raise ConfigError(
            f"unsupported CA index (want version {_CA_INDEX_VERSION})", where=str(path)
        )
    return index


def _save_index(ca_dir: Path, index: dict[str, Any]) -> None:
    data = json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"
    atomic_write(Path(ca_dir) / CA_INDEX_FILE, data, mode=0o600)


def issue_certificate(
    ca_dir: Path, csr_pem: bytes, *, now: datetime, valid_days: int = 365
) -> bytes:
    """Sign a vetted node CSR with the consortium CA; returns the certificate PEM.

    Only the lab id, the TLS public key and the audit key are taken from the CSR; every other
    field is set here. The serial is random and unique in the CA's index. ``not_before`` is
    backdated by CLOCK_SKEW; ``not_after`` never outlives the CA certificate.
    """
    now = as_utc(now)
    if valid_days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, got {valid_days}")
    request = vet_csr(csr_pem)
    with _ca_locked(ca_dir):
        ca = _load_ca(ca_dir)
        if now > ca.cert.not_valid_after_utc:
            raise ConfigError(
                "the CA certificate has expired",
                where=str(ca_dir),
                rule=Rule.CA_CERTIFICATE_EXPIRED,
            )
        index = _load_index(ca_dir)
        serial = _fresh_serial(index)
        not_after = min(now + timedelta(days=valid_days), ca.cert.not_valid_after_utc)
        validity = (now - CLOCK_SKEW, not_after)
        cert = build_node_certificate(ca.key, ca.cert, request, serial, validity)
        index["issued"].append(
            {
                "serial": str(serial),
                "lab": request.lab,
                "not_after": format_utc(not_after, timespec="seconds"),
                "issued_at": format_utc(now, timespec="seconds"),
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


def revoke(ca_dir: Path, serial: int, *, now: datetime) -> None:
    """Add ``serial`` to the CA's revocation list and re-sign ``CA_DIR/crl.pem``.

    The serial must be one this CA issued (guards against typos); revoking twice is a no-op.
    """
    now = as_utc(now)
    with _ca_locked(ca_dir):
        ca = _load_ca(ca_dir)
        index = _load_index(ca_dir)
        if str(serial) not in {entry["serial"] for entry in index["issued"]}:
            raise ConfigError(
                f"serial {serial} was not issued by this CA",
                where=str(ca_dir),
                rule=Rule.UNKNOWN_SERIAL,
            )
        if str(serial) not in {entry["serial"] for entry in index["revoked"]}:
            index["revoked"].append(
                {"serial": str(serial), "revoked_at": format_utc(now, timespec="seconds")}
            )
        index["crl"] = int(index.get("crl", 0)) + 1
        revoked = [
            (int(e["serial"]), datetime.fromisoformat(e["revoked_at"])) for e in index["revoked"]
        ]
        _write_crl(ca_dir, ca, revoked=revoked, crl_number=index["crl"], now=now)
        _save_index(ca_dir, index)


def _write_crl(
    ca_dir: Path,
    ca: _CA,
    *,
    revoked: list[tuple[int, datetime]],
    crl_number: int,
    now: datetime,
) -> None:
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
    )
    for serial, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca.key, hashes.SHA256())
    atomic_write(Path(ca_dir) / CA_CRL_FILE, crl.public_bytes(serialization.Encoding.PEM))
