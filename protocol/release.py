"""Round-bound release values: what a reveal round without verified matches releases.

Why. A reveal round blinds with the epoch key (node/state/epochs.py), so our
re-blinding ``a*P`` of a peer point ``P`` is the same in every round of the epoch.
Released as points, the values of one round are the peer's to reuse in the next:
it returns one of them as its re-blinding of a *new* element of ours (or, the
other way round, puts one in its release at the position of a point of its own),
and we find a match that does not exist. Commit-before-release (ADR 0006) cannot
stop that: the peer commits to a value it has held since the last round. So such a
round releases, instead of each point ``V``, the value

    SHA-256(context || V)[:RELEASE_BYTES],   context = SHA-256(RELEASE_DOMAIN || header hash)

and both sides match these. The header hash covers the round id and both sides'
salted input commitments, so an honest side's context is new in every round;
computing the value for a new context needs ``V`` itself, which the peer only
ever sees hashed (and cannot compute: CDH) as long as the key never serves a round
that releases points: epoch keys are per regime (``BOUND``, ``POINTS``;
node/state/epochs.py). No role goes into the hash: the two sides must reach the same
value for the same double-blinded point.

Verified rounds release the points: the DLEQ proof of every stored match
(protocol/verified.py) already refuses a value reused from another round. Count
rounds draw a fresh key every round, so nothing carries over.

16 bytes are enough: a false equality among a million values a side has a
probability below 2^-88, and the two released streams shrink from 33 (or 32)
bytes a point to 16.
"""

from __future__ import annotations

import hashlib

from protocol.psi import Packed
from protocol.transcript import RoundHeader, header_hash

RELEASE_DOMAIN = b"crossmatch/v4/release"
RELEASE_BYTES = 16


# Release regimes, which name epoch keys apart (node/state/epochs.py): a key that ever
# released points must never serve a round-bound round, whose values the peer could
# then compute from those points.
BOUND = "bound"
POINTS = "points"
REGIMES = (BOUND, POINTS)


def round_bound(header: RoundHeader) -> bool:
    """Whether this round releases hashed values instead of points."""
    return header.mode == "reveal" and not header.verified_matches


def regime(header: RoundHeader) -> str:
    return BOUND if round_bound(header) else POINTS


def release_width(header: RoundHeader, point_width: int) -> int:
    return RELEASE_BYTES if round_bound(header) else point_width


def context(header: RoundHeader) -> bytes:
    return hashlib.sha256(RELEASE_DOMAIN + header_hash(header)).digest()


def release_values(ctx: bytes, points: Packed, width: int) -> bytes:
    """The release value of each ``width``-byte point of ``points``, in order."""
    data = bytes(points)
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes are not whole {width}-byte points")
    sha = hashlib.sha256
    return b"".join(
        [
            sha(ctx + data[i : i + width]).digest()[:RELEASE_BYTES]
            for i in range(0, len(data), width)
        ]
    )
