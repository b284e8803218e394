"""The case read and decision API: what the CLI, exports, hooks and the web UI build on.

Stable interface (other modules rely on it; extend, do not change):

``list_cases(store, *, state=None, peer=None, page=1, per_page=50) -> CasePage``
    Cases, highest score first then most recent match. ``state`` is one of
    ``protocol.cases.lifecycle.STATES`` or ``"open"`` (new or in review); ``peer``
    keeps cases matched with that lab. ``CasePage.total`` counts every case that
    passes the filters.
``get_case(store, case_id, *, max_entities=1000) -> CaseDetail``
    One case with its entities (our account keys and metadata), every match
    (entity, kind, our value, peer, round, time), matched prompt campaigns and
    its review history. ``InputError`` (rule ``case-unknown``) if there is none.
``decide(node, case_id, decision, analyst, note="") -> CaseSummary``
    ``decision`` is ``review``, ``confirm``, ``false_positive``, ``benign`` or
    ``note``. Stores a case event and appends a ``case_decision`` audit record
    (case id, decision, analyst, states, entity count, keyed entity hashes and
    a keyed hash of the note: never raw values).
``recompute_cases(node, *, full=False) -> RecomputeReport``
    Rebuild cases after imports or rounds (``node.data.case_build``).

``CaseSummary.to_dict()`` / ``CaseDetail.to_dict()`` give JSON-ready values;
``CaseSummary.consortium`` is the case's consortium evidence ("seen by >= k labs").
Everything here is local: cases name our own accounts and never leave the node.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.data.case_build import RecomputeReport, recompute
from node.data.case_consortium import consortium_evidence
from node.runtime import Node, iso
from node.state.cases_store import cases_need_refresh, ensure_schema
from node.state.store import Store
from protocol.audit.case_events import CaseDecision, CaseReopened
from protocol.cases.ids import entities_digest, entity_hash, note_hash
from protocol.cases.lifecycle import DECIDED, STATES, check_analyst, check_note, next_state
from protocol.errors import ConfigError, InputError
from protocol.rules import Rule

CASE_KEY_FILE = "cases.key"
CASE_KEY_BYTES = 32
MAX_AUDIT_HASHES = 256  # per record; the digest commits to all of them
_COLUMNS = (
    "case_id, state, entity_count, score, summary, last_match_at, pairs, merged_into,"
    " created_at, updated_at"
)


@dataclass(frozen=True)
class CaseSummary:
    case_id: str
    state: str
    entities: int
    score: int
    peers: list[str]
    kinds: list[str]
    campaigns: list[str]
    first_seen: str
    last_seen: str
    last_match_at: str
    pairs: int  # distinct (our signal or prompt, peer) matched
    rounds: int
    terms: dict[str, object]
    merged_into: str
    created_at: str
    updated_at: str
    # Its signals found held by >= k labs in consortium rounds (node.data.case_consortium);
    # empty if none.
    consortium: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CasePage:
    cases: list[CaseSummary]
    total: int
    page: int
    per_page: int


@dataclass(frozen=True)
class CaseDetail:
    summary: CaseSummary
    entities: list[dict[str, str]]  # key, first_seen, last_seen, reason, campaign, severity
    matches: list[dict[str, str]]  # entity, kind, value, peer, round_id, matched_at
    campaigns: list[dict[str, object]]  # label, peer, round_id, prompts
    events: list[dict[str, str]]  # at, analyst, decision, state_from, state_to, note
    entities_shown: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def case_key(node_dir: Path) -> bytes:
    """The node-local key of case ids and entity hashes, created (0600) on first use."""
    path = Path(node_dir) / CASE_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(CASE_KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    data = path.read_bytes()
    if len(data) != CASE_KEY_BYTES:
        raise ConfigError(f"{path} is {len(data)} bytes, expected {CASE_KEY_BYTES}")
    return data


def recompute_cases(node: Node, *, full: bool = False) -> RecomputeReport:
    """Rebuild cases and audit each re-opened one."""
    report = recompute(
        node.store,
        case_key(node.paths.root),
        now=node.now(),
        retention_days=node.policy.retention_days,
        full=full,
    )
    for cid, previous, new_pairs in report.reopened:
        if node.audit is not None:
            node.record(CaseReopened(case_id=cid, state_from=previous, new_pairs=new_pairs))
    return report


def cases_stale(store: Store) -> bool:
    """True when entities or matches changed since cases were last built."""
    ensure_schema(store)
    with store.reading() as db:
        return cases_need_refresh(db)


def list_cases(
    store: Store,
    *,
    state: str | None = None,
    peer: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> CasePage:
    ensure_schema(store)
    if page < 1 or not 1 <= per_page <= 1000:
        raise InputError("page starts at 1; per_page is 1 to 1000")
    conditions, params = [], []
    if state == "open":
        conditions.append("state IN ('new', 'in_review')")
    elif state is not None:
        if state not in STATES:
            raise InputError(f"unknown state {state!r} (known: open, {', '.join(STATES)})")
        conditions.append("state = ?")
        params.append(state)
    if peer is not None:
        conditions.append("EXISTS (SELECT 1 FROM json_each(summary, '$.peers') WHERE value = ?)")
        params.append(peer)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    with store.reading() as db:
        total = int(db.execute(f"SELECT COUNT(*) FROM cases{where}", params).fetchone()[0])
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM cases{where}"
            " ORDER BY score DESC, last_match_us DESC, case_id LIMIT ? OFFSET ?",
            (*params, per_page, (page - 1) * per_page),
        ).fetchall()
        evidence = consortium_evidence(db, [r[0] for r in rows])
    return CasePage([_summary(r, evidence) for r in rows], total, page, per_page)


_ENTITIES_SQL = (
    "SELECT e.key, e.first_seen, e.last_seen, e.reason, e.campaign, e.severity"
    " FROM case_entities ce JOIN entities e ON e.id = ce.entity_id"
    " WHERE ce.case_id = ? ORDER BY e.key LIMIT ?"
)
_MATCHES_SQL = (
    "SELECT e.key, s.kind, s.normalized, r.peer, m.round_id, m.matched_at"
    " FROM case_entities ce JOIN entities e ON e.id = ce.entity_id"
    " JOIN entity_signals es ON es.entity_id = e.id"
    " JOIN signals s ON s.id = es.signal_id"
    " JOIN matches m ON m.kind = s.kind AND m.fingerprint = s.fingerprint"
    " JOIN rounds r ON r.round_id = m.round_id WHERE ce.case_id = ?"
    " ORDER BY m.matched_us DESC, e.key, s.kind LIMIT 10000"
)
_CAMPAIGNS_SQL = (
    "SELECT p.campaign, r.peer, m.round_id, COUNT(DISTINCT p.id)"
    " FROM case_entities ce JOIN entities e ON e.id = ce.entity_id"
    " JOIN prompts p ON p.account = e.key JOIN prompt_tokens t ON t.prompt_id = p.id"
    " JOIN matches m ON m.kind = 'prompt' AND m.fingerprint = t.token"
    " JOIN rounds r ON r.round_id = m.round_id WHERE ce.case_id = ?"
    " GROUP BY p.campaign, r.peer, m.round_id ORDER BY r.peer"
)
_EVENTS_SQL = (
    "SELECT at, analyst, decision, state_from, state_to, note FROM case_events"
    " WHERE case_id = ? ORDER BY id"
)


def _rows(
    db: sqlite3.Connection, names: tuple[str, ...], sql: str, params: tuple[object, ...]
) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts keyed by ``names`` (one name per selected column)."""
    return [dict(zip(names, r, strict=True)) for r in db.execute(sql, params)]


def get_case(store: Store, cid: str, *, max_entities: int = 1000) -> CaseDetail:
    ensure_schema(store)
    with store.reading() as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM cases WHERE case_id = ?", (cid,)).fetchone()
        if row is None:
            raise InputError(f"no case {cid!r}", rule=Rule.CASE_UNKNOWN)
        entity_names = ("key", "first_seen", "last_seen", "reason", "campaign", "severity")
        entities = _rows(db, entity_names, _ENTITIES_SQL, (cid, max_entities))
        match_names = ("entity", "kind", "value", "peer", "round_id", "matched_at")
        matches = _rows(db, match_names, _MATCHES_SQL, (cid,))
        campaigns = _rows(db, ("label", "peer", "round_id", "prompts"), _CAMPAIGNS_SQL, (cid,))
        event_names = ("at", "analyst", "decision", "state_from", "state_to", "note")
        events = _rows(db, event_names, _EVENTS_SQL, (cid,))
        evidence = consortium_evidence(db, [cid])
    return CaseDetail(_summary(row, evidence), entities, matches, campaigns, events, len(entities))


def decide(node: Node, cid: str, decision: str, analyst: str, note: str = "") -> CaseSummary:
    """Record an analyst's decision or note on a case, in the store and the audit log."""
    check_analyst(analyst)
    check_note(note)
    store = node.store
    ensure_schema(store)
    key = case_key(node.paths.root)
    at = iso(node.now())
    with store.transaction() as db:
        row = db.execute("SELECT state, pairs FROM cases WHERE case_id = ?", (cid,)).fetchone()
        if row is None:
            raise InputError(f"no case {cid!r}", rule=Rule.CASE_UNKNOWN)
        before, pairs = row
        after = next_state(before, decision)
        keys = [
            k
            for (k,) in db.execute(
                "SELECT e.key FROM case_entities ce JOIN entities e ON e.id = ce.entity_id"
                " WHERE ce.case_id = ? ORDER BY e.key",
                (cid,),
            )
        ]
        db.execute(
            "INSERT INTO case_events (case_id, at, analyst, decision, state_from,"
            " state_to, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cid, at, analyst, decision, before, after, note),
        )
        decided = pairs if after in DECIDED else 0
        db.execute(
            "UPDATE cases SET state = ?, decided_pairs = ?, updated_at = ? WHERE case_id = ?",
            (after, decided, at, cid),
        )
        hashes = [entity_hash(key, k) for k in keys]
        # Logged inside the transaction: if the audit append fails, the decision is not stored.
        node.record(
            CaseDecision(
                case_id=cid,
                decision=decision,
                analyst=analyst,
                state_from=before,
                state_to=after,
                entities=len(keys),
                entities_digest=entities_digest(hashes),
                entity_hashes=sorted(hashes)[:MAX_AUDIT_HASHES],
                note_hmac=note_hash(key, note) if note else None,
            )
        )
    return get_case(store, cid, max_entities=0).summary


def _summary(row: tuple, evidence: dict[str, dict]) -> CaseSummary:
    cid, state, count, score, summary, last_at, pairs, merged, created, updated = row
    s = json.loads(summary)
    return CaseSummary(
        cid,
        state,
        count,
        score,
        s["peers"],
        s["kinds"],
        s["campaigns"],
        s["first_seen"],
        s["last_seen"],
        last_at,
        pairs,
        s["rounds"],
        s["terms"],
        merged,
        created,
        updated,
        evidence.get(cid, {}),
    )
