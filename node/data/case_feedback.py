"""Feedback on cases: send a decided case's verdict to a peer, read what peers said.

``share_case`` sends one opinion for each of the case's signals that matched
``peer`` in a completed reveal round (never a prompt, never a signal the peer
did not learn in that round), with the verdict of the case's state.
``peer_opinions`` summarises what peers said about a case's signals.
"""

from __future__ import annotations

from node.net.feedback import send_opinions
from node.runtime import Node
from node.state.cases_store import ensure_schema
from node.state.store import Store
from protocol.errors import InputError
from protocol.feedback import MAX_OPINIONS, Opinion, verdict_of
from protocol.rules import Rule

_SHARED = (
    "SELECT DISTINCT m.round_id, s.kind, s.fingerprint"
    " FROM case_entities ce JOIN entity_signals es ON es.entity_id = ce.entity_id"
    " JOIN signals s ON s.id = es.signal_id"
    " JOIN matches m ON m.kind = s.kind AND m.fingerprint = s.fingerprint"
    " JOIN rounds r ON r.round_id = m.round_id"
    " WHERE ce.case_id = ? AND r.peer = ? AND r.mode = 'reveal' AND r.status = 'completed'"
    " AND s.kind != 'prompt' ORDER BY m.round_id, s.kind, s.fingerprint LIMIT ?"
)


def share_case(node: Node, case_id: str, peer: str) -> int:
    """Tell ``peer`` our verdict on the signals of ``case_id`` it matched; how many sent."""
    store = node.store
    ensure_schema(store)
    with store.reading() as db:
        row = db.execute("SELECT state FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise InputError(f"no case {case_id!r}", rule=Rule.CASE_UNKNOWN)
        verdict = verdict_of(row[0])
        shared = db.execute(_SHARED, (case_id, peer, MAX_OPINIONS)).fetchall()
    if not shared:
        raise InputError(
            f"case {case_id} has no signal matched with {peer} in a reveal round",
            rule=Rule.FEEDBACK_UNKNOWN_MATCH,
        )
    opinions = [Opinion(rid, kind, bytes(fp), verdict) for rid, kind, fp in shared]
    return send_opinions(node, peer, opinions, case_id=case_id)


def peer_opinions(store: Store, case_id: str) -> list[dict[str, object]]:
    """Per peer and verdict, how many of the case's signals that peer judged."""
    ensure_schema(store)
    with store.reading() as db:
        rows = db.execute(
            "SELECT po.peer, po.verdict, COUNT(DISTINCT s.id) FROM case_entities ce"
            " JOIN entity_signals es ON es.entity_id = ce.entity_id"
            " JOIN signals s ON s.id = es.signal_id"
            " JOIN peer_opinions po ON po.kind = s.kind AND po.fingerprint = s.fingerprint"
            " WHERE ce.case_id = ? GROUP BY po.peer, po.verdict ORDER BY po.peer, po.verdict",
            (case_id,),
        ).fetchall()
    return [{"peer": p, "verdict": v, "signals": n} for p, v, n in rows]
