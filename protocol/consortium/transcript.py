"""The consortium round's header, its transcript hash, and one lab's result digest.

The header is everything the hub announces in the roster and every participant
checks against the signed policy: round id, hub, participants in ring order,
policy hash, k, whether counts are revealed, the kinds and every lab's set sizes.
All participants and the hub hash the same header to the same 32 bytes
(length-prefixed fields, no serializer trusted). Each lab's own part of the
round (the points it sent, the results it got) is bound into its receipts by
:class:`LabDigest`, which only that lab and the hub can compute.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.rules import Rule

VERSION = "crossmatch-consortium/v1"
HEADER_DOMAIN = b"crossmatch/v1/consortium-header"
TRANSCRIPT_DOMAIN = b"crossmatch/v1/consortium-transcript"
OWN_STREAM_DOMAIN = b"crossmatch/v1/consortium-own-stream"
RESULT_STREAM_DOMAIN = b"crossmatch/v1/consortium-results"
ROUND_ID = re.compile(r"^[0-9a-f]{32}$")


def _field(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _text(value: str) -> bytes:
    return _field(value.encode("utf-8"))


@dataclass(frozen=True)
class ConsortiumHeader:
    round_id: str
    hub: str
    participants: tuple[str, ...]
    policy_hash: bytes
    k: int
    reveal_count: bool
    kinds: tuple[str, ...]
    sizes: tuple[tuple[int, ...], ...]  # sizes[i][j]: participant i's set of kinds[j]

    def __post_init__(self) -> None:
        if not ROUND_ID.match(self.round_id):
            raise ProtocolError("round id must be 32 lowercase hex digits", rule=Rule.ROUND_ID)
        if len(self.sizes) != len(self.participants) or any(
            len(s) != len(self.kinds) for s in self.sizes
        ):
            raise ProtocolError(
                "sizes do not line up with participants and kinds", rule=Rule.CONSORTIUM_ROSTER
            )
        if not 1 <= self.k <= len(self.participants):
            raise ProtocolError(f"k = {self.k} is out of range", rule=Rule.CONSORTIUM_ROSTER)

    @property
    def n(self) -> int:
        return len(self.participants)

    def index_of(self, lab: str) -> int:
        return self.participants.index(lab)

    def total(self, index: int) -> int:
        return sum(self.sizes[index])

    def sizes_of(self, lab: str) -> dict[str, int]:
        return dict(zip(self.kinds, self.sizes[self.index_of(lab)], strict=True))

    def all_sizes(self) -> dict[str, dict[str, int]]:
        return {lab: self.sizes_of(lab) for lab in self.participants}

    def canonical_bytes(self) -> bytes:
        parts = [
            HEADER_DOMAIN,
            _text(VERSION),
            _text(self.round_id),
            _text(self.hub),
            struct.pack(">I", self.n),
            *[_text(p) for p in self.participants],
            _field(self.policy_hash),
            struct.pack(">I?", self.k, self.reveal_count),
            struct.pack(">I", len(self.kinds)),
            *[_text(kind) for kind in self.kinds],
            *[struct.pack(">Q", size) for row in self.sizes for size in row],
        ]
        return b"".join(parts)

    def transcript_hash(self) -> bytes:
        return hashlib.sha256(TRANSCRIPT_DOMAIN + self.canonical_bytes()).digest()


class LabDigest:
    """Running hashes of one lab's part of a round, fed in the order the values travel."""

    def __init__(self, header: ConsortiumHeader, lab: str):
        prefix = header.transcript_hash() + _text(lab)
        self._own = hashlib.sha256(OWN_STREAM_DOMAIN + prefix)
        self._results = hashlib.sha256(RESULT_STREAM_DOMAIN + prefix)

    def own(self, points: bytes) -> None:
        self._own.update(points)

    def results(self, values: bytes) -> None:
        self._results.update(values)

    def hexdigests(self) -> tuple[str, str]:
        return self._own.hexdigest(), self._results.hexdigest()
