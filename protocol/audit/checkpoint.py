"""Signed checkpoints: a log's size and root, signed, as a plain-text note.

The layout follows transparency-dev checkpoints inside a signed note::

    crossmatch-audit/lab-a/3f1c...e0        origin: the log id
    42                                      tree size (records covered)
    q6yr...base64...=                       RFC 9162 root of those records
    version crossmatch-checkpoint/v1        extension lines: version tag, time
    time 2025-01-31T12:00:00.000000Z
                                            (blank line)
    — crossmatch-audit/lab-a/3f1c...e0 BASE64(key hash || Ed25519 signature)

The signature covers the note text (every line above the blank line, each
ending in a newline). The key hash is the first 4 bytes of
SHA-256(name || "\\n" || 0x01 || raw public key), 0x01 naming Ed25519, as in
signed notes. The note text starts with the origin, which always begins with
"crossmatch-audit/", and names its version; record signatures and receipt
signatures start with their own NUL-terminated tags, so no signed message of
one kind can be taken for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.audit.merkle import HASH_SIZE
from protocol.audit.records import TIME_RE, format_time, public_key_bytes
from protocol.errors import VerificationError
from protocol.rules import Rule

CHECKPOINT_VERSION = "crossmatch-checkpoint/v1"
SIGNATURE_DASH = "\u2014"
ED25519_ALGORITHM = b"\x01"
SIZE_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")
NAME_RE = re.compile(r"^[^\s+]+$")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: str

    def text(self) -> str:
        """The signed part of the note."""
        root = base64.b64encode(self.root).decode("ascii")
        return (
            f"{self.origin}\n{self.size}\n{root}\nversion {CHECKPOINT_VERSION}\ntime {self.time}\n"
        )


def key_hash(name: str, key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + ED25519_ALGORITHM + public_key_bytes(key)
    ).digest()[:4]


def make_checkpoint(*, origin: str, size: int, root: bytes, now: datetime) -> Checkpoint:
    return Checkpoint(origin=origin, size=size, root=root, time=format_time(now))


def sign_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> str:
    """The full signed note, signed under the name ``checkpoint.origin``."""
    text = checkpoint.text()
    name = checkpoint.origin
    blob = key_hash(name, key.public_key()) + key.sign(text.encode("utf-8"))
    return f"{text}\n{SIGNATURE_DASH} {name} {base64.b64encode(blob).decode('ascii')}\n"


def _format_error(message: str) -> VerificationError:
    return VerificationError(f"checkpoint is malformed: {message}", rule=Rule.CHECKPOINT_FORMAT)


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    text, sep, signature_block = note.rpartition("\n\n")
    if not sep or not signature_block.endswith("\n"):
        raise _format_error("no blank line followed by signature lines")
    signatures = []
    for line in signature_block[:-1].split("\n"):
        dash, _, rest = line.partition(" ")
        name, _, blob = rest.partition(" ")
        if dash != SIGNATURE_DASH or not NAME_RE.match(name):
            raise _format_error(f"signature line {line!r} is not '— NAME BASE64'")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error as e:
            raise _format_error(f"signature of {name} is not base64") from e
        if len(raw) != 4 + 64:
            raise _format_error(f"signature of {name} has {len(raw)} bytes, expected 68")
        signatures.append((name, raw))
    return text + "\n", signatures


def _parse_text(text: str) -> Checkpoint:
    lines = text[:-1].split("\n")
    if len(lines) != 5:
        raise _format_error(f"{len(lines)} lines of text, expected 5")
    origin, size, root_b64, version, time = lines
    if not NAME_RE.match(origin):
        raise _format_error(f"origin {origin!r} is empty or holds spaces")
    if not SIZE_RE.match(size):
        raise _format_error(f"tree size {size!r} is not a decimal number")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except binascii.Error as e:
        raise _format_error("root is not base64") from e
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_b64:
        raise _format_error(f"root is not {HASH_SIZE} bytes of canonical base64")
    if version != f"version {CHECKPOINT_VERSION}":
        raise _format_error(f"version line is {version!r}, expected 'version {CHECKPOINT_VERSION}'")
    if not time.startswith("time ") or not TIME_RE.match(time[5:]):
        raise _format_error(f"time line {time!r} is not 'time YYYY-MM-DDTHH:MM:SS.ffffffZ'")
    return Checkpoint(origin=origin, size=int(size), root=root, time=time[5:])


def parse_checkpoint(note: str) -> Checkpoint:
    """The checkpoint a note states, without checking its signature."""
    text, _ = _split_note(note)
    return _parse_text(text)


def verify_checkpoint(note: str, key: Ed25519PublicKey, *, origin: str | None = None) -> Checkpoint:
    """Parse ``note``, check it names ``origin`` and carries a valid signature by ``key``."""
    text, signatures = _split_note(note)
    checkpoint = _parse_text(text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}",
            rule=Rule.CHECKPOINT_ORIGIN,
        )
    expected_hash = key_hash(checkpoint.origin, key)
    candidates = [
        raw for name, raw in signatures if name == checkpoint.origin and raw[:4] == expected_hash
    ]
    if not candidates:
        raise VerificationError(
            f"checkpoint carries no signature by the key of {checkpoint.origin} "
            f"(key hash {expected_hash.hex()})",
            rule=Rule.CHECKPOINT_SIGNATURE,
        )
    try:
        key.verify(candidates[0][4:], text.encode("utf-8"))
    except InvalidSignature as e:
        raise VerificationError(
            "checkpoint signature does not verify (checkpoint altered, or signed by another key)",
            rule=Rule.CHECKPOINT_SIGNATURE,
        ) from e
    return checkpoint
