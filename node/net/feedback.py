"""Peer feedback on the wire: ``SendOpinions`` for both sides (rules in protocol/feedback.py).

The responder authenticates the sender by its certificate (as for rounds), checks the
batch against its own matches of reveal rounds with that sender, stores the opinions
and audits what it accepted or refused. The sender audits what it sent. Nothing a
peer sends reaches a log unbounded: round ids and kinds are cut, fingerprints are
only compared.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import grpc

from node.net import wire
from node.net.channel import TlsIdentity, open_channel
from node.net.grpc_status import error_from_rpc
from node.runtime import Node, iso
from node.state.cases_store import ensure_schema, meta, set_meta
from node.state.store import Store
from protocol.audit.events import EventBody, OpinionsReceived, OpinionsRefused, OpinionsSent
from protocol.errors import CrossmatchError
from protocol.feedback import MAX_OPINIONS, Opinion, check_batch
from protocol.policy import Policy
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

SEND_TIMEOUT = 30.0
_KNOWN = (
    "SELECT 1 FROM matches m JOIN rounds r ON r.round_id = m.round_id"
    " WHERE m.round_id = ? AND m.kind = ? AND m.fingerprint = ? AND r.peer = ?"
    " AND r.mode = 'reveal' AND r.status = 'completed'"
)


def counts(opinions: Sequence[Opinion]) -> tuple[int, int]:
    """(confirmed, false_positive): the two verdicts an opinion can carry (wire.VERDICT_CODES)."""
    verdicts = [o.verdict for o in opinions]
    return verdicts.count("confirmed"), verdicts.count("false_positive")


def receive_opinions(
    peer_lab: str,
    batch: wire.OpinionBatch,
    *,
    store: Store,
    now: datetime,
    policy: Callable[[], Policy],
    record: Callable[[EventBody], object],
) -> wire.OpinionAck:
    """Check, store and audit a peer's batch; CrossmatchError (audited) if refused.

    ``policy`` is the one in force (PolicyError without one: refused and audited too);
    ``record`` appends to our audit log.
    """
    opinions, sent = wire.opinions_from_pb(batch, MAX_OPINIONS + 1)
    ensure_schema(store)
    rate_key = f"opinions_from:{peer_lab}"
    try:
        enabled = policy().peer_feedback
        with store.transaction() as db:
            last = meta(db, rate_key)
            check_batch(
                opinions,
                enabled=enabled,
                known=lambda r, k, f: (
                    db.execute(_KNOWN, (r, k, f, peer_lab)).fetchone() is not None
                ),
                last_batch=datetime.fromtimestamp(last, UTC) if last else None,
                now=now,
            )
            _store_batch(db, peer_lab, opinions, now)
            set_meta(db, rate_key, int(now.timestamp()))
    except CrossmatchError as e:
        record(OpinionsRefused(peer=peer_lab, count=sent, reason=e.message, rule=e.rule or ""))
        raise
    confirmed, false_positive = counts(opinions)
    record(
        OpinionsReceived(
            peer=peer_lab,
            count=len(opinions),
            confirmed=confirmed,
            false_positive=false_positive,
        )
    )
    return wire.opinion_ack(len(opinions))


def _store_batch(
    db: sqlite3.Connection, peer_lab: str, opinions: Sequence[Opinion], now: datetime
) -> None:
    """Keep the peer's latest verdict on each (round, kind, fingerprint)."""
    db.executemany(
        "INSERT INTO peer_opinions (peer, round_id, kind, fingerprint, verdict,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (peer, round_id, kind,"
        " fingerprint) DO UPDATE SET verdict = excluded.verdict,"
        " received_at = excluded.received_at",
        ((peer_lab, o.round_id, o.kind, o.fingerprint, o.verdict, iso(now)) for o in opinions),
    )


def send_opinions(
    node: Node, peer_lab: str, opinions: Sequence[Opinion], *, case_id: str = ""
) -> int:
    """Send one batch to ``peer_lab`` over mutual TLS and audit it; the count accepted."""
    batch = wire.opinions_to_pb(opinions)
    with open_channel(TlsIdentity.of(node), node.config.peer(peer_lab)) as channel:
        try:
            ack = pb_grpc.CrossmatchStub(channel).SendOpinions(batch, timeout=SEND_TIMEOUT)
        except grpc.RpcError as e:
            raise error_from_rpc(e, peer_lab) from None
    confirmed, false_positive = counts(opinions)
    node.record(
        OpinionsSent(
            peer=peer_lab,
            count=len(opinions),
            case_id=case_id,
            confirmed=confirmed,
            false_positive=false_positive,
        )
    )
    return int(ack.accepted)
