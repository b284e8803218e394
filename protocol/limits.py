"""Bounds on what a peer may send, and how a peer's text may be quoted.

Every field of every wire message has a size limit here, checked (by
``node/net/wire.py``) before the message is logged, stored or used to size
anything. A peer's string never reaches the audit log, the store, a log line or
a metric label as sent: :func:`peer_text` quotes a bounded, escaped prefix and
the full length; a rule a peer names is kept only through ``protocol.rules.parse_rule``.
"""

from __future__ import annotations

from protocol.errors import ProtocolError
from protocol.rules import Rule

# Per-field limits (characters for text, bytes for binary, items for lists).
MAX_PROTOCOL_VERSION = 32
MAX_ROUND_ID = 32
MAX_LAB = 63  # protocol.audit.records.LAB_RE
MAX_KINDS = 16
MAX_KIND = 32
MAX_PROMPT_PARAMS = 128
COMMITMENT_BYTES = 32
POLICY_HASH_BYTES = 32
MAX_CERTIFICATE_PEM = 16 * 1024
MAX_RECEIPT_BYTES = 64 * 1024
MAX_ABORT_REASON = 1024
MAX_ABORT_RULE = 64
MAX_CHUNK_SIZE = 100_000  # elements per chunk, as in node.toml's round.chunk_size
MAX_NONCE = 64  # the v2 nonce is 32 bytes (checked exactly, rule nonce)
MAX_IDENTITY_PROOF = 256  # a DER ECDSA P-256 signature is at most 72 bytes
MAX_DIGEST = 64  # a re-blinding commitment is 32 bytes (checked exactly later)

QUOTE_CHARS = 48  # how much of a peer's string a message or record quotes


def peer_text(value: str | bytes, limit: int = QUOTE_CHARS) -> str:
    """A peer's string as we may quote it: escaped to printable ASCII, at most ``limit``
    characters between the quotes (an escape such as ``\\U0001f600`` counts in full, and is
    never cut in half), and its length when cut (``'abc...' (8388608 chars)``). Never raises."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    kept: list[str] = []
    used = 0
    for c in value[:limit]:
        escaped = "\\'" if c == "'" else ascii(c)[1:-1]
        if used + len(escaped) > limit:
            break
        kept.append(escaped)
        used += len(escaped)
    body = "".join(kept)
    if len(kept) < len(value):
        return f"'{body}...' ({len(value)} chars)"
    return f"'{body}'"


def check_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ProtocolError(
            f"{name} is {len(value)} characters, at most {limit} allowed", rule=Rule.FIELD_SIZE
        )


def check_bytes(name: str, value: bytes, limit: int, *, exact: bool = False) -> None:
    if (len(value) != limit) if exact else (len(value) > limit):
        want = f"exactly {limit}" if exact else f"at most {limit}"
        raise ProtocolError(f"{name} is {len(value)} bytes, {want} allowed", rule=Rule.FIELD_SIZE)


def check_count(name: str, count: int, limit: int) -> None:
    if count > limit:
        raise ProtocolError(
            f"{name} lists {count} items, at most {limit} allowed", rule=Rule.FIELD_SIZE
        )
