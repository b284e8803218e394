"""Private key files: TLS keys (ECDSA P-256) written 0600, loaded only when not group/world
readable, and audit public keys read from either half of a PEM pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from node.state.files import atomic_write, read_or_raise
from protocol.errors import ConfigError
from protocol.rules import Rule


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
    atomic_write(path, pem, mode=0o600)


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
            rule=Rule.KEY_FILE_PERMISSIONS,
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"not a valid unencrypted PEM private key: {e}", where=str(path)) from e


def load_audit_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    """An Ed25519 audit key from a PEM file holding either the private or the public key."""
    path = Path(path)
    data = read_or_raise(path, "audit key")
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
