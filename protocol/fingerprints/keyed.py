"""Keyed, domain-separated fingerprints of normalized identifiers.

A fingerprint is 32 bytes::

    HMAC-SHA256(consortium_key,
                b"crossmatch/v1|" + kind + b"|" + NORMALIZATION_VERSION + b"|" + normalized)

with ``kind`` and ``NORMALIZATION_VERSION`` in ASCII (e.g. ``b"email"``, ``b"n1"``)
and ``normalized`` in UTF-8, for example
``b"crossmatch/v1|email|n1|alice@example.com"``.

- ``crossmatch/v1`` separates these fingerprints from every other use of the key
  and versions this layout.
- ``kind`` makes an email never equal a phone number with the same text.
- The normalization version makes data normalized under old rules never silently
  match (or silently miss) data normalized under new ones: it simply stops matching.

The first three fields come from fixed ASCII sets without ``|``; the normalized
value is last, so it may contain ``|`` and the layout still parses one way.

The key is shared by the member labs only, so a leaked fingerprint cannot be
dictionary-attacked by an outsider (a member can, which the threat model states).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from protocol.errors import ConfigError, InputError
from protocol.fingerprints.identifiers import IDENTIFIER_KINDS, NORMALIZATION_VERSION

FINGERPRINT_DOMAIN = b"crossmatch/v1"
FINGERPRINT_SIZE = 32
MIN_KEY_SIZE = 16


def fingerprint(key: bytes, kind: str, normalized: str) -> bytes:
    """Fingerprint one value; ``normalized`` must be the output of ``normalize(kind, ...)``."""
    keyed = _keyed_prefix(key, kind)
    keyed.update(normalized.encode("utf-8"))
    return keyed.digest()


def fingerprint_many(key: bytes, kind: str, normalized: Iterable[str]) -> list[bytes]:
    """Fingerprint many values of one kind: the key and prefix are absorbed once, then copied."""
    keyed = _keyed_prefix(key, kind)
    digests = []
    for value in normalized:
        one = keyed.copy()
        one.update(value.encode("utf-8"))
        digests.append(one.digest())
    return digests


def _keyed_prefix(key: bytes, kind: str) -> hmac.HMAC:
    if not isinstance(key, bytes | bytearray):
        raise ConfigError(f"consortium key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_SIZE:
        raise ConfigError(
            f"consortium key is {len(key)} bytes; at least {MIN_KEY_SIZE} are required"
        )
    if kind not in IDENTIFIER_KINDS:
        known = ", ".join(sorted(IDENTIFIER_KINDS))
        raise InputError(f"unknown identifier kind {kind!r} (known: {known})")
    prefix = b"|".join((FINGERPRINT_DOMAIN, kind.encode("ascii"), NORMALIZATION_VERSION.encode()))
    return hmac.new(bytes(key), prefix + b"|", "sha256")
