"""Consortium messages between plain values (protocol.consortium.messages) and protobuf.

The one place the consortium code touches generated pb types. Anything a peer
sends that does not fit (missing body, sizes not lining up) is a ProtocolError.
"""

from __future__ import annotations

from protocol import PROTOCOL_VERSION
from protocol.consortium import messages as m
from protocol.consortium.transcript import ConsortiumHeader
from protocol.errors import ProtocolError
from protocol.rules import Rule, parse_rule
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb


def _sizes(kinds: tuple[str, ...], sizes: tuple[int, ...]) -> list[pb.KindSize]:
    return [pb.KindSize(kind=k, size=n) for k, n in zip(kinds, sizes, strict=True)]


def join_to_pb(join: m.Join, kinds: tuple[str, ...]) -> pb.ConsortiumMessage:
    return pb.ConsortiumMessage(
        join=pb.ConsortiumJoin(
            protocol_version=PROTOCOL_VERSION,
            lab=join.lab,
            policy_hash=join.policy_hash,
            sizes=_sizes(kinds, join.sizes),
        )
    )


def join_from_pb(msg: pb.ConsortiumJoin, kinds: tuple[str, ...]) -> m.Join:
    if msg.protocol_version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {msg.protocol_version[:40]!r} not supported", rule=Rule.VERSION
        )
    if tuple(s.kind for s in msg.sizes) != kinds:
        raise ProtocolError(
            "join does not list the policy's consortium kinds in order", rule=Rule.CONSORTIUM_KINDS
        )
    return m.Join(msg.lab, msg.policy_hash, tuple(s.size for s in msg.sizes))


def to_pb(message: m.Message) -> pb.ConsortiumMessage:
    """Every message but Join (which needs the kinds)."""
    if isinstance(message, m.Roster):
        h = message.header
        return pb.ConsortiumMessage(
            roster=pb.ConsortiumRoster(
                round_id=h.round_id,
                hub=h.hub,
                policy_hash=h.policy_hash,
                k=h.k,
                reveal_count=h.reveal_count,
                hub_certificate_pem=message.hub_certificate_pem,
                participants=[
                    pb.LabSizes(lab=lab, sizes=_sizes(h.kinds, s))
                    for lab, s in zip(h.participants, h.sizes, strict=True)
                ],
            )
        )
    if isinstance(message, m.OwnChunk):
        return pb.ConsortiumMessage(own_blinded=pb.Chunk(seq=message.seq, points=message.points))
    if isinstance(message, m.Reblind):
        return pb.ConsortiumMessage(
            reblind=pb.HopChunk(
                origin=message.origin, hop=message.hop, seq=message.seq, points=message.points
            )
        )
    if isinstance(message, m.Results):
        return pb.ConsortiumMessage(results=pb.ResultChunk(seq=message.seq, values=message.values))
    if isinstance(message, m.Receipt):
        return pb.ConsortiumMessage(receipt=pb.Receipt(signed_receipt=message.signed))
    if isinstance(message, m.Commit):
        return pb.ConsortiumMessage(commit=pb.Commit())
    if isinstance(message, m.Abort):
        return pb.ConsortiumMessage(abort=pb.Abort(rule=message.rule, reason=message.reason))
    raise TypeError(f"no wire form for {type(message).__name__}")


def _roster(r: pb.ConsortiumRoster) -> m.Roster:
    if not r.participants:
        raise ProtocolError("roster names no participants", rule=Rule.CONSORTIUM_ROSTER)
    kinds = tuple(s.kind for s in r.participants[0].sizes)
    if any(tuple(s.kind for s in p.sizes) != kinds for p in r.participants):
        raise ProtocolError("roster sizes do not line up", rule=Rule.CONSORTIUM_ROSTER)
    header = ConsortiumHeader(
        round_id=r.round_id,
        hub=r.hub,
        participants=tuple(p.lab for p in r.participants),
        policy_hash=r.policy_hash,
        k=r.k,
        reveal_count=r.reveal_count,
        kinds=kinds,
        sizes=tuple(tuple(s.size for s in p.sizes) for p in r.participants),
    )
    return m.Roster(header, r.hub_certificate_pem)


def from_pb(msg: pb.ConsortiumMessage) -> m.Message:
    """Every message but Join; ProtocolError on an empty or unknown body."""
    body = msg.WhichOneof("body")
    if body == "roster":
        return _roster(msg.roster)
    if body == "own_blinded":
        return m.OwnChunk(msg.own_blinded.seq, msg.own_blinded.points)
    if body == "reblind":
        c = msg.reblind
        return m.Reblind(c.origin, c.hop, c.seq, c.points)
    if body == "results":
        return m.Results(msg.results.seq, msg.results.values)
    if body == "receipt":
        return m.Receipt(msg.receipt.signed_receipt)
    if body == "commit":
        return m.Commit()
    if body == "abort":
        # A peer's rule is kept only if it is one we know; its text is bounded.
        rule = parse_rule(msg.abort.rule) or Rule.PEER_ABORT
        return m.Abort(rule, msg.abort.reason[:200])
    raise ProtocolError(f"unexpected consortium message {body!r}", rule=Rule.MESSAGE_ORDER)
