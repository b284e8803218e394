"""Build cases from the store: cluster our entities, then summarise clusters with matches.

``recompute`` is incremental. When entities changed since the last run (the
``entities_generation`` counter), every entity is re-clustered; otherwise only
clusters touched by matches newer than the last processed match id are rebuilt.
A case whose pairs (signal or prompt, peer) grew after a decision is re-opened;
a case whose entities moved to another case is marked ``merged``; a case whose
last match is older than the policy's retention is ``expired``.

The long reads (the clustering, the hits of the touched clusters, their members) and
the building of each case come from a snapshot on a connection of its own, which holds
neither the store's lock nor a write lock; the write transaction then checks that the
store's generations are as the snapshot saw them, reads each case's state, and writes
(after two stale snapshots it reads everything inside the transaction). A round that
opens or commits meanwhile waits for the writes, not for the reads (at 1M entities with
200k matched, 2.28 s of a 17.2 s refresh; docs/performance.md).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from node.data.campaigns import MIN_TOKENS
from node.state.cases_store import ensure_schema, meta, set_meta
from node.state.store import Store
from protocol.cases.clusters import cluster_labels
from protocol.cases.ids import case_id
from protocol.cases.lifecycle import DECIDED
from protocol.cases.scoring import score_case

# The hit queries read each entity's cluster from ``{clusters}``: ``entity_clusters``, or
# the snapshot's TEMP ``fresh_clusters`` while the new labels are not written yet.
_SIGNAL_HITS = (
    "SELECT c.label, s.id, s.kind, r.peer, m.matched_at, m.matched_us, m.round_id"
    " FROM matches m JOIN rounds r ON r.round_id = m.round_id"
    " JOIN signals s ON s.kind = m.kind AND s.fingerprint = m.fingerprint"
    " JOIN entity_signals es ON es.signal_id = s.id"
    " JOIN {clusters} c ON c.entity_id = es.entity_id"
    " WHERE m.kind != 'prompt' AND m.id > ?"
)
_PROMPT_HITS = (
    "SELECT c.label, p.id, p.campaign, r.peer, MAX(m.matched_at), MAX(m.matched_us), m.round_id"
    " FROM matches m JOIN rounds r ON r.round_id = m.round_id"
    " JOIN prompt_tokens t ON t.token = m.fingerprint JOIN prompts p ON p.id = t.prompt_id"
    " JOIN entities e ON e.key = p.account JOIN {clusters} c ON c.entity_id = e.id"
    " WHERE m.kind = 'prompt' AND m.id > ?"
    " GROUP BY m.round_id, p.id HAVING COUNT(*) >= ?"
)
_ATTEMPTS = 2  # snapshots that may go stale before the build reads inside its transaction


@dataclass
class _Acc:
    """What the matches of one cluster add up to."""

    peers: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)
    campaigns: set[str] = field(default_factory=set)
    pairs: set[tuple[object, ...]] = field(default_factory=set)
    rounds: set[str] = field(default_factory=set)
    last_at: str = ""
    last_us: int = 0

    def add(
        self, key: tuple[object, ...], kind: str, peer: str, at: str, us: int, round_id: str
    ) -> None:
        self.peers.add(peer)
        self.kinds.add(kind)
        self.pairs.add((*key, peer))
        self.rounds.add(round_id)
        if us > self.last_us:
            self.last_us, self.last_at = us, at


@dataclass(frozen=True)
class RecomputeReport:
    reclustered: bool
    clusters: int  # clusters rebuilt this run
    cases: int  # open cases in total afterwards
    reopened: list[tuple[str, str, int]]  # (case id, previous state, new pairs)
    expired: int


@dataclass
class _Plan:
    """Everything a build reads, taken from one view of the store, and the generations
    that say whether the store still is as that view saw it."""

    generations: tuple[int, int, int]  # see _generations
    top: int  # the highest match id seen: the build covers the matches up to it
    labels: tuple[np.ndarray, np.ndarray] | None  # (entity ids, labels) when re-clustering
    cases: list[_Case]  # one per matched cluster


@dataclass(frozen=True)
class _Case:
    """One matched cluster's case as this build writes it, all but its state (which
    depends on the case's decision, read in the write transaction)."""

    label: int
    case_id: str
    values: tuple  # entity_count, score, summary, last_match_at, last_match_us, pairs
    pairs: int
    last_us: int


def recompute(
    store: Store, key: bytes, *, now: datetime, retention_days: int, full: bool = False
) -> RecomputeReport:
    """Build cases. The reads (clustering, every hit of the touched clusters, their
    members) and the cases made of them come from a snapshot (``Store.snapshot``) that
    holds no lock, so rounds and imports go on meanwhile; the write transaction checks
    that the generations the snapshot read are unchanged, reads each case's state, and
    writes. If they changed (an entity import or purge, a warninglist, another build) it
    reads again; after ``_ATTEMPTS`` such misses it reads inside the transaction.
    Matches stored meanwhile (ids above the snapshot's) are not a miss: the build
    records the highest id it saw, so they are the next refresh's (cases stay stale
    until then, and their round's ``round_completed`` wakes the refresher). Matches
    purged meanwhile are as if purged just after the build."""
    ensure_schema(store)
    for _ in range(_ATTEMPTS):
        with store.snapshot() as view:
            plan = _plan(view, full, key, now)
        with store.transaction() as db:
            if _generations(db) == plan.generations:
                return _apply(db, plan, now, retention_days)
    with store.transaction() as db:
        return _apply(db, _plan(db, full, key, now), now, retention_days)


def _generations(db: sqlite3.Connection) -> tuple[int, int, int]:
    """What a build's snapshot must still agree with: the entities' generation, the one
    last clustered, and the last match id built (another build moves the last two)."""
    return (
        meta(db, "entities_generation"),
        meta(db, "clustered_generation"),
        meta(db, "last_match_id"),
    )


def _plan(db: sqlite3.Connection, full: bool, key: bytes, now: datetime) -> _Plan:
    """Read what a build needs from ``db`` (a snapshot, or the write transaction), and
    make its cases."""
    generations = _generations(db)
    generation, clustered, last = generations
    # MAX alone: SQLite answers it from the end of the index (MIN and MAX together scan).
    top = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM matches").fetchone()[0])
    recluster = full or generation != clustered
    since = 0 if recluster else last
    labels = _cluster(db) if recluster else None
    clusters = "entity_clusters"
    if labels is not None:
        clusters = "temp.fresh_clusters"
        db.execute("DROP TABLE IF EXISTS temp.fresh_clusters")
        db.execute(
            "CREATE TEMP TABLE fresh_clusters"
            " (entity_id INTEGER PRIMARY KEY, label INTEGER NOT NULL)"
        )
        db.executemany(
            "INSERT INTO temp.fresh_clusters (entity_id, label) VALUES (?, ?)",
            zip(labels[0].tolist(), labels[1].tolist(), strict=True),
        )
    try:
        acc = _hits(db, since, clusters)
        if since and acc:
            acc = _hits(db, 0, clusters, only=set(acc))  # touched clusters, all their matches
        members = _members(db, acc, clusters)
    finally:
        db.execute("DROP TABLE IF EXISTS temp.fresh_clusters")
        db.execute("DROP TABLE IF EXISTS temp.label_members")
    cases = [_case(key, acc[m[0]], m, now) for m in members]
    return _Plan(generations, top, labels, cases)


def _case(key: bytes, one: _Acc, member: tuple, now: datetime) -> _Case:
    label, count, smallest, first_seen, last_seen = member
    days = (now - datetime.fromisoformat(one.last_at)).total_seconds() / 86400
    score = score_case(one.peers, one.kinds, days)
    summary = {
        "peers": sorted(one.peers),
        "kinds": sorted(one.kinds),
        "campaigns": sorted(one.campaigns),
        "first_seen": first_seen or "",
        "last_seen": last_seen or "",
        "rounds": len(one.rounds),
        "terms": score.terms(),
    }
    values = (
        count, score.score, json.dumps(summary, sort_keys=True), one.last_at, one.last_us,
        len(one.pairs),
    )  # fmt: skip
    return _Case(label, case_id(key, smallest), values, len(one.pairs), one.last_us)


def _apply(
    db: sqlite3.Connection, plan: _Plan, now: datetime, retention_days: int
) -> RecomputeReport:
    """The writes of a build, in the caller's transaction."""
    if plan.labels is not None:
        db.execute("DELETE FROM entity_clusters")
        db.executemany(
            "INSERT INTO entity_clusters (entity_id, label) VALUES (?, ?)",
            zip(plan.labels[0].tolist(), plan.labels[1].tolist(), strict=True),
        )
        set_meta(db, "clustered_generation", plan.generations[0])
    stamp = _iso(now)
    reopened = _write_cases(db, plan, stamp)
    if plan.labels is not None:
        _retire_orphans(db, stamp)
    expired = _expire(db, now, retention_days, stamp)
    set_meta(db, "last_match_id", plan.top)
    db.execute("DROP TABLE IF EXISTS temp.label_case")
    open_cases = int(
        db.execute(
            "SELECT COUNT(*) FROM cases WHERE state NOT IN ('merged', 'expired')"
        ).fetchone()[0]
    )
    return RecomputeReport(plan.labels is not None, len(plan.cases), open_cases, reopened, expired)


def _cluster(db: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
    """(entity ids, cluster labels) over signals not held back, derived links, campaigns."""
    ids = np.fromiter(
        (r[0] for r in db.execute("SELECT id FROM entities ORDER BY id")), dtype=np.int64
    )
    edges = db.execute(
        "SELECT entity_id, signal_id FROM entity_signals WHERE signal_id NOT IN"
        " (SELECT signal_id FROM held_back)"
    ).fetchall()
    offset = int(db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM signals").fetchone()[0])
    derived = db.execute("SELECT entity_id, link_id FROM entity_links").fetchall()
    derived_names = dict(db.execute("SELECT key, id FROM link_keys").fetchall())
    campaigns = db.execute(
        "SELECT DISTINCT e.id, 'campaign:' || p.campaign FROM prompts p"
        " JOIN entities e ON e.key = p.account WHERE p.campaign != ''"
    ).fetchall()
    links_offset = offset + int(max(derived_names.values(), default=0)) + 1
    extra: dict[str, int] = {}
    for entity, name in campaigns:
        link = derived_names.get(name)
        if link is not None:
            derived.append((entity, link))
        else:
            edges.append((entity, links_offset + extra.setdefault(name, len(extra)) - offset))
    entity_col = np.array([e for e, _ in edges] + [e for e, _ in derived], dtype=np.int64)
    link_col = np.array([s for _, s in edges] + [offset + d for _, d in derived], dtype=np.int64)
    del edges, derived
    index = np.searchsorted(ids, entity_col)
    return ids, cluster_labels(len(ids), index, link_col)


def _hits(
    db: sqlite3.Connection, since: int, clusters: str, only: set[int] | None = None
) -> dict[int, _Acc]:
    acc: dict[int, _Acc] = defaultdict(_Acc)
    for label, sid, kind, peer, at, us, rid in db.execute(
        _SIGNAL_HITS.format(clusters=clusters), (since,)
    ):
        if only is None or label in only:
            acc[label].add(("signal", sid), kind, peer, at, us, rid)
    for label, pid, campaign, peer, at, us, rid in db.execute(
        _PROMPT_HITS.format(clusters=clusters), (since, MIN_TOKENS)
    ):
        if only is None or label in only:
            acc[label].add(("prompt", pid), "prompt", peer, at, us, rid)
            if campaign:
                acc[label].campaigns.add(campaign)
    return acc


def _members(db: sqlite3.Connection, acc: dict[int, _Acc], clusters: str) -> list[tuple]:
    """(label, entities, smallest key, first seen, last seen) of each matched cluster."""
    db.execute("DROP TABLE IF EXISTS temp.label_members")
    db.execute("CREATE TEMP TABLE label_members (label INTEGER PRIMARY KEY)")
    db.executemany("INSERT INTO temp.label_members (label) VALUES (?)", ((k,) for k in acc))
    return db.execute(
        "SELECT c.label, COUNT(*), MIN(e.key), MIN(NULLIF(e.first_seen, '')), MAX(e.last_seen)"
        f" FROM temp.label_members l JOIN {clusters} c ON c.label = l.label"
        " JOIN entities e ON e.id = c.entity_id GROUP BY c.label"
    ).fetchall()


def _write_cases(db: sqlite3.Connection, plan: _Plan, stamp: str) -> list[tuple[str, str, int]]:
    """Upsert one case per matched cluster, then move entities between cases. The states
    are read here, in the write transaction: a decision taken while the snapshot was read
    is seen, never overwritten."""
    db.execute("DROP TABLE IF EXISTS temp.label_case")
    db.execute("CREATE TEMP TABLE label_case (label INTEGER PRIMARY KEY, case_id TEXT NOT NULL)")
    db.executemany(
        "INSERT INTO temp.label_case (label, case_id) VALUES (?, ?)",
        ((c.label, c.case_id) for c in plan.cases),
    )
    held = {
        cid: (state, decided, last_us)
        for cid, state, decided, last_us in db.execute(
            "SELECT c.case_id, c.state, c.decided_pairs, c.last_match_us FROM cases c"
            " JOIN temp.label_case l ON l.case_id = c.case_id"
        )
    }
    reopened: list[tuple[str, str, int]] = []
    db.executemany(
        _UPSERT_CASE,
        (
            (c.case_id, _next_state(held.get(c.case_id), c, reopened), *c.values, stamp, stamp)
            for c in plan.cases
        ),
    )
    _move_entities(db, stamp)
    return reopened


_UPSERT_CASE = (
    "INSERT INTO cases (case_id, state, entity_count, score, summary, last_match_at,"
    " last_match_us, pairs, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (case_id) DO UPDATE SET state = excluded.state,"
    " entity_count = excluded.entity_count, score = excluded.score,"
    " summary = excluded.summary, last_match_at = excluded.last_match_at,"
    " last_match_us = excluded.last_match_us, pairs = excluded.pairs,"
    " merged_into = '', updated_at = excluded.updated_at"
)


def _next_state(
    held: tuple[str, int, int] | None, case: _Case, reopened: list[tuple[str, str, int]]
) -> str:
    """The case's state after this build: re-opened (and listed) when new pairs arrived
    after a decision, when it had been merged away, or when it expired and matched again."""
    if held is None:
        return "new"
    state, decided_pairs, last_us = held
    if (
        (state in DECIDED and case.pairs > decided_pairs)
        or state == "merged"
        or (state == "expired" and case.last_us > last_us)
    ):
        reopened.append((case.case_id, state, case.pairs - int(decided_pairs)))
        return "new"
    return str(state)


def _move_entities(db: sqlite3.Connection, stamp: str) -> None:
    # Entities leaving a case for another mark the old one merged into the new one.
    db.execute(
        "UPDATE cases SET state = 'merged', merged_into = moved.new_id, updated_at = ?"
        " FROM (SELECT ce.case_id AS old_id, MIN(l.case_id) AS new_id FROM case_entities ce"
        "  JOIN entity_clusters c ON c.entity_id = ce.entity_id"
        "  JOIN label_case l ON l.label = c.label WHERE ce.case_id != l.case_id"
        "  GROUP BY ce.case_id) AS moved"
        " WHERE cases.case_id = moved.old_id AND moved.old_id NOT IN"
        " (SELECT case_id FROM label_case)",
        (stamp,),
    )
    # Only the entities whose case changed are written: after a repeat round, few.
    db.execute(
        "INSERT INTO case_entities (entity_id, case_id) SELECT c.entity_id, l.case_id"
        " FROM label_case l JOIN entity_clusters c ON c.label = l.label"
        " LEFT JOIN case_entities ce ON ce.entity_id = c.entity_id"
        " WHERE ce.case_id IS NOT l.case_id"
        " ON CONFLICT (entity_id) DO UPDATE SET case_id = excluded.case_id"
    )


def _retire_orphans(db: sqlite3.Connection, stamp: str) -> None:
    """After re-clustering: entities no longer in a matched cluster leave their case."""
    db.execute(
        "DELETE FROM case_entities WHERE entity_id NOT IN (SELECT c.entity_id FROM"
        " entity_clusters c JOIN label_case l ON l.label = c.label)"
    )
    db.execute(
        "UPDATE cases SET state = 'expired', updated_at = ? WHERE state NOT IN"
        " ('merged', 'expired') AND case_id NOT IN (SELECT case_id FROM case_entities)",
        (stamp,),
    )


def _expire(db: sqlite3.Connection, now: datetime, retention_days: int, stamp: str) -> int:
    cutoff_us = int((now.timestamp() - retention_days * 86400) * 1_000_000)
    return db.execute(
        "UPDATE cases SET state = 'expired', updated_at = ? WHERE last_match_us < ?"
        " AND state NOT IN ('merged', 'expired')",
        (stamp, cutoff_us),
    ).rowcount


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
