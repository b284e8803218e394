"""The round header and the transcript hash both sides sign.

Both sides must arrive at the same 32 bytes without trusting each other's
serializer, so the transcript is built from values, not from protobuf bytes:
the header (every negotiated parameter, in a fixed length-prefixed layout) and
one running SHA-256 per element stream, fed with the points exactly as they
crossed the wire. Chunk boundaries do not matter, order does.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.messages import MODES
from protocol.psi import ELEMENT_BYTES, strictly_increasing
from protocol.rules import Rule
from protocol.suites import DEFAULT_SUITE

TRANSCRIPT_DOMAIN = b"crossmatch/v2/transcript"
# v2: the header ends with the suite and the verified-matches switch.
HEADER_DOMAIN = b"crossmatch/v2/round-header"
REBLIND_COMMITMENT_DOMAIN = b"crossmatch/v2/reblind-commitment"
COMMITMENT_BYTES = 32

# The four element streams of a round, named from the initiator's point of view.
STREAMS = (
    "initiator_blinded",  # H(a)^alpha
    "responder_blinded",  # H(b)^beta
    "responder_reblinded",  # H(a)^alpha*beta, computed by the responder
    "initiator_reblinded",  # H(b)^beta*alpha, computed by the initiator
)

ROLES = ("initiator", "responder")


def _field(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _text(value: str) -> bytes:
    return _field(value.encode("utf-8"))


@dataclass(frozen=True)
class RoundHeader:
    """Every parameter both sides agreed on in OpenRound."""

    round_id: str
    initiator: str
    responder: str
    mode: str
    kinds: tuple[str, ...]
    initiator_sizes: tuple[int, ...]
    responder_sizes: tuple[int, ...]
    policy_hash: bytes
    initiator_commitment: bytes
    responder_commitment: bytes
    prompt_params: str = ""
    suite: str = DEFAULT_SUITE
    # Reveal rounds only: matches are stored behind the peer's DLEQ proof (protocol/verified).
    verified_matches: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ProtocolError(f"unknown mode {self.mode!r}", rule=Rule.MODE)
        if len(set(self.kinds)) != len(self.kinds):
            raise ProtocolError("a kind is listed twice", rule=Rule.KINDS)
        if not (len(self.kinds) == len(self.initiator_sizes) == len(self.responder_sizes)):
            raise ProtocolError("kinds and sizes do not line up", rule=Rule.KINDS)

    def sizes(self, role: str) -> tuple[int, ...]:
        return self.initiator_sizes if role == "initiator" else self.responder_sizes

    def peer_of(self, role: str) -> str:
        return self.responder if role == "initiator" else self.initiator

    def canonical_bytes(self) -> bytes:
        parts = [
            HEADER_DOMAIN,
            _text(self.round_id),
            _text(self.initiator),
            _text(self.responder),
            _text(self.mode),
            struct.pack(">I", len(self.kinds)),
            *[_text(k) for k in self.kinds],
            *[struct.pack(">Q", n) for n in self.initiator_sizes],
            *[struct.pack(">Q", n) for n in self.responder_sizes],
            _field(self.policy_hash),
            _field(self.initiator_commitment),
            _field(self.responder_commitment),
            _text(self.prompt_params),
            _text(self.suite),
            b"\x01" if self.verified_matches else b"\x00",
        ]
        return b"".join(parts)


class Transcript:
    """Running hash of a round: the header, the four element streams and both sides'
    commitments to their re-blinded streams (sent before either stream is released)."""

    def __init__(self, header: RoundHeader):
        self._header = header_hash(header)
        self._streams = {name: hashlib.sha256() for name in STREAMS}
        self._counts = dict.fromkeys(STREAMS, 0)
        self._commitments = dict.fromkeys(ROLES, b"")
        self._public_keys = dict.fromkeys(ROLES, b"")

    def absorb(self, stream: str, points: bytes) -> None:
        self._streams[stream].update(points)
        self._counts[stream] += len(points)

    def commit(self, role: str, commitment: bytes) -> None:
        """Record ``role``'s commitment to its re-blinding of the other side's points."""
        self._commitments[role] = commitment

    def public_key(self, role: str, key: bytes) -> None:
        """Record ``role``'s public key (verified matches: sent before any of its points)."""
        self._public_keys[role] = key

    def parts(self) -> TranscriptParts:
        """What the digest is made of, without the points: kept for a later disclosure."""
        return TranscriptParts(
            {name: (self._counts[name], self._streams[name].digest()) for name in STREAMS},
            dict(self._commitments),
            dict(self._public_keys),
        )

    def digest(self) -> bytes:
        return self.parts().digest(self._header)


@dataclass(frozen=True)
class TranscriptParts:
    """Per stream (byte count, SHA-256 of its points), both re-blinding commitments and
    both public keys (verified matches; empty otherwise)."""

    streams: dict[str, tuple[int, bytes]]
    commitments: dict[str, bytes]
    public_keys: dict[str, bytes]

    def digest(self, header_hash: bytes) -> bytes:
        h = hashlib.sha256(TRANSCRIPT_DOMAIN)
        h.update(header_hash)
        for name in STREAMS:
            count, stream_digest = self.streams[name]
            h.update(_text(name))
            h.update(struct.pack(">Q", count))
            h.update(stream_digest)
        for role in ROLES:
            h.update(_text(f"{role}_reblind_commitment"))
            h.update(_field(self.commitments[role]))
        for role in ROLES:
            h.update(_text(f"{role}_public_key"))
            h.update(_field(self.public_keys[role]))
        return h.digest()


def header_hash(header: RoundHeader) -> bytes:
    return hashlib.sha256(header.canonical_bytes()).digest()


def reblind_commitment(round_id: str, role: str, points: bytes | memoryview) -> bytes:
    """What ``role`` commits to before releasing its re-blinded stream: a hash of the
    whole stream, in the order it will be sent (count mode: after the shuffle).

    Bound to the round and the role, so a commitment from another round or from the
    other side never opens. Hiding needs no salt: the points are the peer's values
    raised to our secret scalar, unknown to the peer until we release them.
    """
    h = hashlib.sha256(REBLIND_COMMITMENT_DOMAIN)
    h.update(_text(round_id))
    h.update(_text(role))
    h.update(struct.pack(">Q", len(points)))
    h.update(points)
    return h.digest()


def input_commitment(salt: bytes, fingerprints_by_kind: dict[str, list[bytes]]) -> bytes:
    """Salted commitment to a side's input set, openable to an auditor later.

    The salt (kept locally, 32 random bytes) stops the peer, who shares the
    consortium key, from testing guesses of the whole set against the commitment.
    """
    return _input_commitment(
        salt, {kind: (len(v), sorted(v)) for kind, v in fingerprints_by_kind.items()}
    )


def sorted_input_commitment(salt: bytes, packed_by_kind: dict[str, bytes]) -> bytes:
    """:func:`input_commitment` of packed fingerprints (``ELEMENT_BYTES`` each) already in
    strictly increasing order (ValueError otherwise): one hash update per kind."""
    for kind, packed in packed_by_kind.items():
        if len(packed) % ELEMENT_BYTES or not strictly_increasing(packed, ELEMENT_BYTES):
            raise ValueError(f"the {kind} fingerprints are not sorted distinct rows")
    return _input_commitment(
        salt, {kind: (len(p) // ELEMENT_BYTES, [p]) for kind, p in packed_by_kind.items()}
    )


def _input_commitment(salt: bytes, sorted_by_kind: dict[str, tuple[int, list[bytes]]]) -> bytes:
    """The commitment over each kind's count and its values in increasing order."""
    h = hashlib.sha256(b"crossmatch/v1/input-commitment")
    h.update(_field(salt))
    for kind in sorted(sorted_by_kind):
        count, values = sorted_by_kind[kind]
        h.update(_text(kind))
        h.update(struct.pack(">Q", count))
        for v in values:
            h.update(v)
    return h.digest()
