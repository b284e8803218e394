"""Size padding: hide a set's exact size behind a bucket, with dummy elements that never match.

A round announces each side's set size per kind. With padding on, a side fills
each kind's section up to the next bucket (a power of two, or a multiple of a
fixed bucket size) with dummy elements, so the peer learns the bucket, not the
size. Dummies are ``HMAC-SHA256(seed, domain | kind | index)``: pseudorandom
32-byte values in the fingerprint space, so once blinded they look like any
other element, and they match a peer's element only with probability 2^-256.

Within an epoch the seed is fixed (it lives with the epoch key, in verified reveal
rounds; every other round draws a fresh seed with its fresh key), so dummy ``i``
is the same value in every round: a peer that links blinded values across
rounds (see docs/threat-model.md) sees the dummies recur like real elements,
instead of spotting them as the values that never come back.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from protocol.errors import ConfigError

DUMMY_DOMAIN = b"crossmatch/v1/dummy"
SEED_BYTES = 32


@dataclass(frozen=True)
class Padding:
    """``mode`` is "off", "pow2" or "bucket"; ``bucket`` is the bucket size of mode "bucket"."""

    mode: str = "off"
    bucket: int = 0

    def size(self, n: int, cap: int | None = None) -> int:
        """The padded size of a set of ``n``: never below ``n``, never above ``cap`` (if given)."""
        if n < 0:
            raise ValueError("a set size is never negative")
        if self.mode == "off":
            return n
        if self.mode == "pow2":
            padded = 1 << max(0, (max(n, 1) - 1).bit_length())
        else:
            padded = max(1, -(-n // self.bucket)) * self.bucket
        if cap is not None:
            padded = min(padded, cap)
        return max(padded, n)

    def spec(self) -> str | int:
        """The setting that reads back as this padding (``parse_padding``)."""
        return self.bucket if self.mode == "bucket" else self.mode


OFF = Padding()


def parse_padding(value: object) -> Padding:
    """Read ``[round] pad_to``: "off" (or 0, false), "pow2", or a bucket size (a positive int)."""
    if value in ("off", "", 0, False, None):
        return OFF
    if value == "pow2":
        return Padding("pow2")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return Padding("bucket", value)
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return Padding("bucket", int(value))
    raise ConfigError(
        f'round.pad_to must be "off", "pow2" or a positive bucket size, not {value!r}'
    )


def dummy_elements(seed: bytes, kind: str, count: int) -> list[bytes]:
    """Dummies 0..count-1 of ``kind`` under ``seed``; a prefix of any larger count."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"dummy seed must be {SEED_BYTES} bytes")
    mac = hmac.new(seed, DUMMY_DOMAIN + b"|" + kind.encode("utf-8") + b"|", hashlib.sha256)
    out = []
    for i in range(count):
        one = mac.copy()
        one.update(struct.pack(">Q", i))
        out.append(one.digest())
    return out
