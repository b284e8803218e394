"""An opened node directory: config, keys, certificates, store and audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node import pki
from node.auditlog import AuditLog
from node.config import NodeConfig, load_config, read_consortium_key
from node.files import atomic_write
from node.store import Store
from protocol.audit.records import make_log_id
from protocol.errors import ConfigError
from protocol.policy import DEFAULT_POLICY, Policy

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def audit_log_id(lab: str, public_key: Ed25519PublicKey) -> str:
    return make_log_id(lab, public_key)


def load_audit_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load audit key {path}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        hint = " (run `crossmatch cert install` first?)" if what == "certificate" else ""
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}{hint}") from e


class Node:
    """Everything a command needs from a node directory, opened once."""

    def __init__(self, node_dir: Path, *, clock: Clock = utc_now, open_audit: bool = True):
        self.clock = clock
        self.config: NodeConfig = load_config(Path(node_dir))
        self.paths = self.config.paths
        self.lab = self.config.lab
        self.consortium_key = read_consortium_key(self.paths.consortium_key)
        self.audit_key = load_audit_key(self.paths.audit_key)
        self.tls_key_pem = read_file(self.paths.tls_key, "TLS key")
        self.tls_cert_pem = read_file(self.paths.tls_cert, "certificate")
        self.ca_pem = read_file(self.paths.ca_cert, "CA certificate")
        self.policy: Policy = DEFAULT_POLICY
        self.log_id = audit_log_id(self.lab, self.audit_key.public_key())
        self.store = Store(self.paths.db)
        self.audit: AuditLog | None = None
        if open_audit:
            self.audit = AuditLog.open(
                self.paths.audit_log, self.audit_key, log_id=self.log_id, now=clock()
            )

    def reload_config(self) -> None:
        self.config = load_config(self.paths.root)

    def remember_peer_key(self, lab: str, key: Ed25519PublicKey) -> None:
        """Keep each peer's CA-certified audit key in NODE_DIR/peers/<lab>.pub, so that
        `audit verify NODE_DIR` checks the peer receipts in our log without any set-up."""
        path = self.paths.root / "peers" / f"{lab}.pub"
        pem = key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        if not path.exists() or path.read_bytes() != pem:
            atomic_write(path, pem)

    def now(self) -> datetime:
        return self.clock()

    def revoked_serials(self) -> frozenset[int]:
        if not self.paths.crl.exists():
            return frozenset()
        return pki.load_revoked_serials(self.paths.crl.read_bytes(), self.ca_pem)

    def peer_identity(self, cert_pem: bytes) -> pki.PeerIdentity:
        return pki.identity_from_certificate(
            cert_pem, self.ca_pem, now=self.now(), revoked=self.revoked_serials()
        )

    def log(self, event: str, body: dict[str, object]) -> dict[str, object]:
        assert self.audit is not None, "node opened without its audit log"
        return self.audit.append(event, body, now=self.now())

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
