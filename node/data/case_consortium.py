"""Consortium evidence on cases: which of a case's own signals a consortium round found
held by at least k labs (``node.state.consortium_store``).

Read when a case is shown, not when it is built, so a consortium round needs no case
rebuild and the score stays the pairwise one it explains: the evidence stands beside
it. A consortium round tells a lab only "held by >= k labs" (or, if the policy's
``reveal_count`` allows, how many), never which labs: that is all a case shows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

_IN_CHUNK = 900
_EVIDENCE = (
    "SELECT ce.case_id, s.id, s.kind, cm.round_id, cm.labs, cr.k"
    " FROM consortium_matches cm JOIN consortium_rounds cr ON cr.round_id = cm.round_id"
    " JOIN signals s ON s.kind = cm.kind AND s.fingerprint = cm.fingerprint"
    " JOIN entity_signals es ON es.signal_id = s.id"
    " JOIN case_entities ce ON ce.entity_id = es.entity_id"
    " WHERE ce.case_id IN ({})"
)


def consortium_evidence(db: sqlite3.Connection, case_ids: Sequence[str]) -> dict[str, dict]:
    """For each case with any: ``{"signals", "kinds", "rounds", "labs", "at_least",
    "seen_by"}``; ``labs`` is the most labs seen holding one of its signals where the
    policy revealed counts (else None), ``at_least`` the smallest k of those rounds."""
    if not case_ids or not _has_consortium_tables(db):
        return {}
    rows: list[tuple] = []
    for start in range(0, len(case_ids), _IN_CHUNK):
        chunk = list(case_ids[start : start + _IN_CHUNK])
        rows += db.execute(_EVIDENCE.format(",".join("?" * len(chunk))), chunk).fetchall()
    grouped: dict[str, list[tuple]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row[1:])
    return {cid: _evidence(hits) for cid, hits in grouped.items()}


def _evidence(hits: list[tuple]) -> dict[str, object]:
    counted = [labs for _, _, _, labs, _ in hits if labs is not None]
    at_least = min(k for *_, k in hits)
    labs = max(counted) if counted else None
    return {
        "signals": len({sid for sid, *_ in hits}),
        "kinds": sorted({kind for _, kind, *_ in hits}),
        "rounds": len({rid for _, _, rid, *_ in hits}),
        "labs": labs,
        "at_least": at_least,
        "seen_by": f"{labs} labs" if labs is not None else f">= {at_least} labs",
    }


def _has_consortium_tables(db: sqlite3.Connection) -> bool:
    # The tables appear with the node's first committed consortium round.
    found = db.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('consortium_rounds', 'consortium_matches')"
    ).fetchone()[0]
    return int(found) == 2
