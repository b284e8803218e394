"""The consortium round's messages as plain values (node/consortium converts them to protobuf).

A lab speaks only to the hub, over one bidirectional stream:

    lab -> hub: Join, OwnChunk*, Reblind* (answers), Receipt, [Abort]
    hub -> lab: Roster, Reblind* (requests), Results*, Receipt, Commit | Abort
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.consortium.transcript import ConsortiumHeader

MAX_CHUNK_POINTS = 65_536  # 2.1 MB of points a message, well under the 16 MiB limit


@dataclass(frozen=True)
class Join:
    lab: str  # claimed; the hub checks it against the client certificate
    policy_hash: bytes
    sizes: tuple[int, ...]  # per kind of the policy's [consortium] kinds, in that order


@dataclass(frozen=True)
class Roster:
    header: ConsortiumHeader
    hub_certificate_pem: bytes = b""


@dataclass(frozen=True)
class OwnChunk:
    """H(x)^k_i of the next run of the sender's own elements (in its random order)."""

    seq: int
    points: bytes


@dataclass(frozen=True)
class Reblind:
    """A run of ``origin``'s set, after ``hop`` re-blindings; the answer adds one more."""

    origin: int
    hop: int
    seq: int
    points: bytes


@dataclass(frozen=True)
class Results:
    """One byte per position of the origin's chunk ``seq``: 1/0, or the count when revealed."""

    seq: int
    values: bytes


@dataclass(frozen=True)
class Receipt:
    signed: bytes


@dataclass(frozen=True)
class Commit:
    pass


@dataclass(frozen=True)
class Abort:
    rule: str
    reason: str


Message = Join | Roster | OwnChunk | Reblind | Results | Receipt | Commit | Abort


@dataclass(frozen=True)
class Send:
    """An action of the hub's state machine: deliver ``message`` to ``lab``."""

    lab: str
    message: Message
