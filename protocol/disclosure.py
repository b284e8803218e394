"""Accountable commitments: what a side keeps of a round, so that in a dispute an auditor
can check that its streams were computed honestly from the set it committed to.

Count mode is secure against semi-honest peers only (docs/threat-model.md): a malicious
peer can blind each of its guesses with its own extra exponent and learn from the
shuffled values which guesses matched, and in reveal mode a peer can return its
re-blinding in another order (matches attributed to other elements). Neither can be
seen in the round, both streams being consistent with *some* inputs. Both are caught
here, after the fact: a side's record (sealed under NODE_DIR for the policy's retention)
holds its input set in send order with the commitment's salt, the dummy seed, the round
key and the seed of its count-mode shuffle. The auditor recomputes, from that alone:

1. the transcript digest from the header and the per-stream digests, which must be the
   ``transcript_hash`` in the lab's own log and in its peer's (both signed it);
2. the input commitment in the header, from the salt and the real elements;
3. the dummies, from the dummy seed (so no guess hides among them);
4. its ``*_blinded`` stream, H(x)^k for every element with one key k: the per-guess
   exponent attack and any substituted input fail here;

and, given the other side's record of the same round too,

5. its ``*_reblinded`` stream and commitment from the other side's blinded stream, in
   the peer's order (reveal) or in the order its recorded shuffle seed gives (count):
   relabelling fails here.

Pure: records in, ``VerificationError`` (rules ``disclosure-*``) out. The record holds
the round key: a lab hands it over only in a dispute (``crossmatch audit disclose``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.errors import InputError, ProtocolError, VerificationError
from protocol.padding import dummy_elements
from protocol.psi import ELEMENT_BYTES, shuffle_packed_within_sections
from protocol.rules import Rule
from protocol.suites import get_suite
from protocol.transcript import (
    RoundHeader,
    TranscriptParts,
    header_hash,
    input_commitment,
    reblind_commitment,
)

# v2 keeps the set as raw bytes after a JSON header (v1 was one JSON document with the set
# in base64: 4.3 MB to encode and parse per round at 100k). v1 records stay readable.
DISCLOSURE_FORMAT = "crossmatch-disclosure/v2"
DISCLOSURE_FORMAT_V1 = "crossmatch-disclosure/v1"
_V2_MAGIC = DISCLOSURE_FORMAT.encode("ascii") + b"\n"
SHUFFLE_DOMAIN = b"crossmatch/v2/count-shuffle"
SEED_BYTES = 32


class SeededRandom:
    """The count-mode shuffle's randomness, from a kept seed (SHAKE-256, a fresh block per
    call), so that an auditor can replay the shuffle."""

    def __init__(self, seed: bytes):
        self._seed, self._calls = seed, 0

    def randbytes(self, n: int) -> bytes:
        self._calls += 1
        block = SHUFFLE_DOMAIN + struct.pack(">I", len(self._seed)) + self._seed
        return hashlib.shake_256(block + struct.pack(">Q", self._calls)).digest(n)


def _split_v2(data: bytes) -> tuple[dict, bytes]:
    """(metadata, set) of a v2 record; ValueError unless the lengths add up exactly."""
    at = len(_V2_MAGIC)
    if len(data) < at + 4:
        raise ValueError("the record ends inside its header")
    (size,) = struct.unpack_from(">I", data, at)
    at += 4
    if len(data) < at + size:
        raise ValueError("the record ends inside its metadata")
    doc = json.loads(data[at : at + size])
    if not isinstance(doc, dict) or doc.get("format") != DISCLOSURE_FORMAT:
        raise ValueError(f"not a {DISCLOSURE_FORMAT} document")
    own = data[at + size :]
    if doc["own_bytes"] != len(own):
        raise ValueError(f"the set is {len(own)} bytes, the metadata says {doc['own_bytes']}")
    return doc, own


@dataclass(frozen=True)
class Disclosure:
    header: RoundHeader
    role: str
    suite: str
    psi_key: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    dummy_seed: bytes = field(repr=False)
    shuffle_seed: bytes = field(repr=False)
    own: bytes = field(repr=False)  # packed 32-byte elements in send order, dummies included
    dummies: dict[str, list[int]]  # positions in ``own`` of each kind's dummies, in order
    parts: TranscriptParts

    @property
    def peer_role(self) -> str:
        return "responder" if self.role == "initiator" else "initiator"

    def to_bytes(self) -> bytes:
        """The sealed form, ``crossmatch-disclosure/v2`` (docs/adr/0013): the magic line,
        the metadata's length (u32, big-endian), the metadata as canonical JSON, then the
        set's raw bytes (``own_bytes`` of them, the rest of the file)."""
        meta = (json.dumps(self._meta(), sort_keys=True) + "\n").encode("utf-8")
        return b"".join((_V2_MAGIC, struct.pack(">I", len(meta)), meta, self.own))

    def _meta(self) -> dict:
        h = self.header
        return {
            "format": DISCLOSURE_FORMAT,
            "role": self.role,
            "suite": self.suite,
            "header": {
                "round_id": h.round_id,
                "initiator": h.initiator,
                "responder": h.responder,
                "mode": h.mode,
                "kinds": list(h.kinds),
                "initiator_sizes": list(h.initiator_sizes),
                "responder_sizes": list(h.responder_sizes),
                "policy_hash": h.policy_hash.hex(),
                "initiator_commitment": h.initiator_commitment.hex(),
                "responder_commitment": h.responder_commitment.hex(),
                "prompt_params": h.prompt_params,
                "suite": h.suite,
                "verified_matches": h.verified_matches,
            },
            "psi_key": self.psi_key.hex(),
            "salt": self.salt.hex(),
            "dummy_seed": self.dummy_seed.hex(),
            "shuffle_seed": self.shuffle_seed.hex(),
            "dummies": self.dummies,
            "own_bytes": len(self.own),
            "streams": {k: [n, d.hex()] for k, (n, d) in self.parts.streams.items()},
            "commitments": {k: v.hex() for k, v in self.parts.commitments.items()},
            "public_keys": {k: v.hex() for k, v in self.parts.public_keys.items()},
        }

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "disclosure") -> Disclosure:
        """A sealed record of either format: v2 (binary), or v1 (one JSON document, the
        set in base64) as sealed before v2 and kept for the policy's retention."""
        try:
            if data.startswith(_V2_MAGIC):
                doc, own = _split_v2(data)
            else:
                doc = json.loads(data)
                if not isinstance(doc, dict) or doc.get("format") != DISCLOSURE_FORMAT_V1:
                    raise ValueError(f"not a {DISCLOSURE_FORMAT} or v1 document")
                own = base64.b64decode(doc["own"], validate=True)
            return cls._from_doc(doc, own)
        # ProtocolError: a header the round's own rules refuse (an unknown mode, kinds and
        # sizes that do not line up) is a malformed record here, not a protocol event.
        except (ValueError, KeyError, TypeError, AttributeError, ProtocolError) as e:
            reason = e.message if isinstance(e, ProtocolError) else e
            raise InputError(
                f"not a readable disclosure: {reason}", where=where, rule=Rule.DISCLOSURE_FORMAT
            ) from e

    @classmethod
    def _from_doc(cls, doc: dict, own: bytes) -> Disclosure:
        h = doc["header"]
        header = RoundHeader(
            round_id=h["round_id"],
            initiator=h["initiator"],
            responder=h["responder"],
            mode=h["mode"],
            kinds=tuple(h["kinds"]),
            initiator_sizes=tuple(int(n) for n in h["initiator_sizes"]),
            responder_sizes=tuple(int(n) for n in h["responder_sizes"]),
            policy_hash=bytes.fromhex(h["policy_hash"]),
            initiator_commitment=bytes.fromhex(h["initiator_commitment"]),
            responder_commitment=bytes.fromhex(h["responder_commitment"]),
            prompt_params=h["prompt_params"],
            suite=h["suite"],
            verified_matches=bool(h["verified_matches"]),
        )
        parts = TranscriptParts(
            {k: (int(n), bytes.fromhex(d)) for k, (n, d) in doc["streams"].items()},
            {k: bytes.fromhex(v) for k, v in doc["commitments"].items()},
            {k: bytes.fromhex(v) for k, v in doc["public_keys"].items()},
        )
        return cls(
            header,
            doc["role"],
            doc["suite"],
            bytes.fromhex(doc["psi_key"]),
            bytes.fromhex(doc["salt"]),
            bytes.fromhex(doc["dummy_seed"]),
            bytes.fromhex(doc["shuffle_seed"]),
            own,
            {k: [int(i) for i in v] for k, v in doc["dummies"].items()},
            parts,
        )

    def transcript_hash(self) -> bytes:
        return self.parts.digest(header_hash(self.header))


def _fail(d: Disclosure, what: str, rule: Rule) -> VerificationError:
    return VerificationError(
        f"round {d.header.round_id}, {d.role} {d.header.peer_of(d.peer_role)}: {what}", rule=rule
    )


def _elements(d: Disclosure) -> list[bytes]:
    if len(d.own) != sum(d.header.sizes(d.role)) * ELEMENT_BYTES:
        raise _fail(d, "the elements do not fill the announced sizes", Rule.DISCLOSURE_COMMITMENT)
    return [d.own[i : i + ELEMENT_BYTES] for i in range(0, len(d.own), ELEMENT_BYTES)]


def _check_inputs(d: Disclosure, elements: list[bytes]) -> None:
    """The commitment in the header opens to the real elements; dummies are the seed's."""
    dummy_at: set[int] = set()
    for kind, positions in d.dummies.items():
        expected = dummy_elements(d.dummy_seed, kind, len(positions))
        if [elements[p] for p in positions] != expected:
            raise _fail(d, f"the {kind} dummies are not the dummy seed's", Rule.DISCLOSURE_DUMMIES)
        dummy_at.update(positions)
    by_kind: dict[str, list[bytes]] = {}
    start = 0
    for kind, size in zip(d.header.kinds, d.header.sizes(d.role), strict=True):
        by_kind[kind] = [elements[i] for i in range(start, start + size) if i not in dummy_at]
        start += size
    committed = (
        d.header.initiator_commitment if d.role == "initiator" else d.header.responder_commitment
    )
    if input_commitment(d.salt, by_kind) != committed:
        raise _fail(
            d, "the input commitment does not open to the disclosed set", Rule.DISCLOSURE_COMMITMENT
        )


def _stream_check(d: Disclosure, name: str, points: bytes) -> None:
    if d.parts.streams.get(name) != (len(points), hashlib.sha256(points).digest()):
        raise _fail(
            d,
            f"the {name} stream was not computed from the disclosed set and key",
            Rule.DISCLOSURE_STREAM,
        )


def blinded_stream(d: Disclosure) -> bytes:
    with get_suite(d.suite).engine(d.psi_key, workers=1) as engine:
        return engine.blind(_elements(d))


def check_disclosure(
    d: Disclosure, logged: Sequence[bytes], peer: Disclosure | None = None
) -> list[str]:
    """Checks 1-4 (and 5 with ``peer``) of the module docstring; what held, one line each."""
    if not logged:
        raise _fail(d, "no log names this round's transcript", Rule.DISCLOSURE_TRANSCRIPT)
    digest = d.transcript_hash()
    if any(h != digest for h in logged):
        raise _fail(
            d, "the disclosed transcript is not the one the logs signed", Rule.DISCLOSURE_TRANSCRIPT
        )
    _check_inputs(d, _elements(d))
    own_blinded = blinded_stream(d)
    _stream_check(d, f"{d.role}_blinded", own_blinded)
    held = [
        f"{d.role}: transcript {digest.hex()[:16]}… matches {len(logged)} log(s)",
        f"{d.role}: input commitment opens; dummies derive from the seed",
        f"{d.role}: blinded stream recomputed from the set with one key",
    ]
    if peer is None:
        return held
    # The other record's own checks first: a record that fails them is named, not the
    # side it was handed in with.
    held += check_disclosure(peer, logged)[1:]
    if peer.header != d.header or peer.role != d.peer_role or peer.parts != d.parts:
        raise _fail(
            d,
            "the two disclosures are not of the same round's two sides",
            Rule.DISCLOSURE_TRANSCRIPT,
        )
    peer_blinded = blinded_stream(peer)
    for side, other_blinded in ((d, peer_blinded), (peer, own_blinded)):
        with get_suite(side.suite).engine(side.psi_key, workers=1) as engine:
            stream = engine.reblind(other_blinded)
        if side.header.mode == "count":
            stream = shuffle_packed_within_sections(
                stream,
                side.header.sizes(side.peer_role),
                SeededRandom(side.shuffle_seed),
                get_suite(side.suite).point_bytes,
            )
        _stream_check(side, f"{side.role}_reblinded", stream)
        if (
            reblind_commitment(side.header.round_id, side.role, stream)
            != (side.parts.commitments[side.role])
        ):
            raise _fail(side, "the re-blinding commitment does not open", Rule.DISCLOSURE_STREAM)
        held.append(f"{side.role}: re-blinded stream and commitment recomputed, in order")
    return held
