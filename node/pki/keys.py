"""Private key files: TLS keys (ECDSA P-256) written 0600, loaded only when not group/world
readable, audit public keys read from either half of a PEM pair, and the consortium's
shared fingerprint key (``crossmatch-consortium-key-v1:`` and 64 hex digits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from node.state.files import atomic_write, read_or_raise
from protocol.errors import ConfigError
from protocol.rules import Rule

CONSORTIUM_KEY_HEADER = "crossmatch-consortium-key-v1:"


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


def read_consortium_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read consortium key {path}: {e}") from e
    if not text.startswith(CONSORTIUM_KEY_HEADER):
        raise ConfigError(f"{path} is not a crossmatch consortium key file")
    try:
        key = bytes.fromhex(text[len(CONSORTIUM_KEY_HEADER) :])
    except ValueError as e:
        raise ConfigError(f"{path}: consortium key is not hex") from e
    if len(key) != 32:
        raise ConfigError(f"{path}: consortium key must be 32 bytes, got {len(key)}")
    return key


def format_consortium_key(key: bytes) -> bytes:
    return (CONSORTIUM_KEY_HEADER + key.hex() + "\n").encode("ascii")
