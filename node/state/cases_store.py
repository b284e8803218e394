"""SQLite tables of entities, actor clusters, cases, review events and held-back signals.

They live in the node's store file beside the signals and matches they join,
but have their own schema step: ``ensure_schema`` creates them once and records
``cases_schema.version``; the core store's ``PRAGMA user_version`` is untouched.

- ``entities``: one row per flagged account of ours (``key`` is our account id),
  with local metadata. Nothing in these tables ever leaves the node.
- ``entity_signals``: which signal (``signals.id``) each entity holds.
- ``link_keys`` / ``entity_links``: derived links that are not signals (an IPv4
  /24 or IPv6 /48 of an address, a campaign label of ours).
- ``held_back``: signals a warninglist holds back from rounds (with the list's name).
- ``entity_clusters``: the last computed cluster label of each entity.
- ``cases``, ``case_entities``, ``case_events``: cases, their members, their history.
- ``cases_meta``: counters that make recomputation incremental.
"""

from __future__ import annotations

import sqlite3

from node.state.staging import CHUNK_ROWS, STAGED_SIGNAL
from node.state.store import Store
from protocol.timestamps import parse_utc

CASES_SCHEMA_VERSION = 2

_SCHEMA = (
    """CREATE TABLE entities (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        reason TEXT NOT NULL,
        campaign TEXT NOT NULL,
        severity TEXT NOT NULL,
        source TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE entity_signals (
        entity_id INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        signal_id INTEGER NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
        PRIMARY KEY (entity_id, signal_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX entity_signals_by_signal ON entity_signals (signal_id)",
    "CREATE TABLE link_keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
    """CREATE TABLE entity_links (
        entity_id INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        link_id INTEGER NOT NULL REFERENCES link_keys (id),
        PRIMARY KEY (entity_id, link_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE held_back (
        signal_id INTEGER PRIMARY KEY REFERENCES signals (id) ON DELETE CASCADE,
        list TEXT NOT NULL
    )""",
    "CREATE TABLE entity_clusters (entity_id INTEGER PRIMARY KEY, label INTEGER NOT NULL)",
    "CREATE INDEX entity_clusters_by_label ON entity_clusters (label)",
    """CREATE TABLE cases (
        case_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        entity_count INTEGER NOT NULL,
        score INTEGER NOT NULL,
        summary TEXT NOT NULL,
        last_match_at TEXT NOT NULL,
        last_match_us INTEGER NOT NULL,
        pairs INTEGER NOT NULL,
        decided_pairs INTEGER NOT NULL DEFAULT 0,
        merged_into TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX cases_by_score ON cases (score DESC, last_match_us DESC)",
    """CREATE TABLE case_entities (
        entity_id INTEGER PRIMARY KEY REFERENCES entities (id) ON DELETE CASCADE,
        case_id TEXT NOT NULL REFERENCES cases (case_id)
    )""",
    "CREATE INDEX case_entities_by_case ON case_entities (case_id)",
    """CREATE TABLE case_events (
        id INTEGER PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases (case_id),
        at TEXT NOT NULL,
        analyst TEXT NOT NULL,
        decision TEXT NOT NULL,
        state_from TEXT NOT NULL,
        state_to TEXT NOT NULL,
        note TEXT NOT NULL
    )""",
    "CREATE INDEX case_events_by_case ON case_events (case_id, id)",
    "CREATE TABLE cases_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
# Version 2: opinions peers sent about matches of reveal rounds with them.
_SCHEMA_V2 = (
    """CREATE TABLE peer_opinions (
        peer TEXT NOT NULL,
        round_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        verdict TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (peer, round_id, kind, fingerprint)
    )""",
    "CREATE INDEX peer_opinions_by_signal ON peer_opinions (kind, fingerprint)",
)


def ensure_schema(store: Store) -> None:
    """Create the case tables once per store file (idempotent, one transaction)."""
    if getattr(store, "_cases_schema_ready", False):
        return
    with store.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS cases_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM cases_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version == 0:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT INTO cases_schema (version) VALUES (1)")
            version = 1
        if version == 1:  # the one migration so far
            for statement in _SCHEMA_V2:
                db.execute(statement)
            db.execute("UPDATE cases_schema SET version = 2")
            version = 2
        if version != CASES_SCHEMA_VERSION:
            from protocol.errors import ConfigError

            raise ConfigError(
                f"store {store.path}: case tables have schema {version}, this "
                f"crossmatch understands {CASES_SCHEMA_VERSION}"
            )
    store._cases_schema_ready = True  # type: ignore[attr-defined]


def bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
    db.execute(
        "INSERT INTO cases_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


def meta(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT value FROM cases_meta WHERE key = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def set_meta(db: sqlite3.Connection, name: str, value: int) -> None:
    db.execute(
        "INSERT INTO cases_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def cases_need_refresh(db: sqlite3.Connection) -> bool:
    if meta(db, "entities_generation") != meta(db, "clustered_generation"):
        return True
    top = db.execute("SELECT COALESCE(MAX(id), 0) FROM matches").fetchone()[0]
    return int(top) != meta(db, "last_match_id")


# -- entities ---------------------------------------------------------------------------------


_UPSERT_ENTITY = (
    "INSERT INTO entities (key, first_seen, last_seen, reason, campaign, severity, source,"
    " imported_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " first_seen = CASE WHEN excluded.first_seen != '' AND (first_seen = ''"
    "   OR excluded.first_seen < first_seen) THEN excluded.first_seen ELSE first_seen END,"
    " last_seen = MAX(last_seen, excluded.last_seen),"
    " reason = COALESCE(NULLIF(excluded.reason, ''), reason),"
    " campaign = COALESCE(NULLIF(excluded.campaign, ''), campaign),"
    " severity = COALESCE(NULLIF(excluded.severity, ''), severity),"
    " source = excluded.source, updated_at = excluded.updated_at"
)
# Each staged row beside the stored id of its entity (``stage_entity_ids``).
_STAGED_ENTITY = "JOIN stage_entity_ids e ON e.seq = {}.entity"


def store_staged_entities(db: sqlite3.Connection, at: str) -> tuple[int, int]:
    """Upsert the staged entities (``node.state.staging``) and link them to their staged
    signals and link keys, in the caller's transaction, after ``Stage.store_signals``.

    Rows are applied in file order, each one as a re-import would: non-empty metadata
    replaces what is held, first/last seen widen, signals and links are only added.
    Returns (distinct entities staged, how many of them are new)."""
    before = int(db.execute("SELECT COUNT(*) FROM entities").fetchone()[0])
    staged = db.execute(
        "SELECT key, first_seen, last_seen, reason, campaign, severity, source"
        " FROM stage_entities ORDER BY seq"
    )
    while chunk := staged.fetchmany(CHUNK_ROWS):
        db.executemany(_UPSERT_ENTITY, ((*row, at, at) for row in chunk))
    # Each entity row's key is looked up once here, not once for each of its signals.
    db.execute(
        "INSERT INTO stage_entity_ids (seq, id) SELECT se.seq, e.id"
        " FROM stage_entities se JOIN entities e ON e.key = se.key"
    )
    db.execute(
        "INSERT INTO entity_signals (entity_id, signal_id) SELECT e.id, s.id"
        f" {STAGED_SIGNAL} {_STAGED_ENTITY.format('st')}"
        # Signals are probed in (kind, fingerprint) order along the staging index; the
        # pairs go in by signal, so the by-signal index and the foreign-key probes of
        # signals run in order (by entity, as before, took a third more CPU here).
        " WHERE true ORDER BY s.id, e.id ON CONFLICT DO NOTHING"
    )
    db.execute(
        "INSERT INTO link_keys (key) SELECT DISTINCT link FROM stage_links"
        " WHERE true ORDER BY link ON CONFLICT (key) DO NOTHING"
    )
    db.execute(
        "INSERT INTO entity_links (entity_id, link_id) SELECT e.id, lk.id"
        f" FROM stage_links sl {_STAGED_ENTITY.format('sl')}"
        " JOIN link_keys lk ON lk.key = sl.link WHERE true ON CONFLICT DO NOTHING"
    )
    bump(db, "entities_generation")
    distinct = int(db.execute("SELECT COUNT(DISTINCT key) FROM stage_entities").fetchone()[0])
    added = int(db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]) - before
    return distinct, added


def hold_back_staged(db: sqlite3.Connection) -> None:
    """Flag the staged signals a warninglist holds back from rounds (caller's transaction)."""
    db.execute(
        f"INSERT INTO held_back (signal_id, list) SELECT s.id, st.held {STAGED_SIGNAL}"
        " WHERE st.held IS NOT NULL ON CONFLICT (signal_id) DO UPDATE SET list = excluded.list"
    )


_PAST_RETENTION = (
    "SELECT id FROM entities WHERE julianday(updated_at) < julianday(:cutoff)"
    " AND (last_seen = '' OR julianday(last_seen) < julianday(:cutoff))"
)


def purge_entities_before(store: Store, cutoff_iso: str) -> tuple[int, int]:
    """Retention: delete entities neither imported nor seen since ``cutoff_iso``, with
    their links to signals and derived link keys; returns (entities, links) deleted.

    Their signals stay (they are the lab's imported data, purged by no policy);
    cases lose the entities, and the next recompute re-clusters and expires
    cases left without any."""
    parse_utc(cutoff_iso, "cutoff")
    ensure_schema(store)
    past = {"cutoff": cutoff_iso}
    with store.transaction() as db:
        links = sum(
            _count(db, f"SELECT COUNT(*) FROM {table} WHERE entity_id IN ({_PAST_RETENTION})", past)
            for table in ("entity_signals", "entity_links")
        )
        db.execute(f"DELETE FROM entity_clusters WHERE entity_id IN ({_PAST_RETENTION})", past)
        # entity_signals, entity_links and case_entities go with them (ON DELETE CASCADE).
        entities = db.execute(f"DELETE FROM entities WHERE id IN ({_PAST_RETENTION})", past)
        if entities.rowcount:
            db.execute("DELETE FROM link_keys WHERE id NOT IN (SELECT link_id FROM entity_links)")
            bump(db, "entities_generation")
    return entities.rowcount, links


def _count(db: sqlite3.Connection, query: str, params: dict[str, str]) -> int:
    return int(db.execute(query, params).fetchone()[0])


def round_fingerprints(store: Store, kind: str) -> list[bytes]:
    """The fingerprints of ``kind`` a round may use: sorted, warninglisted ones left out."""
    fps = store.fingerprints(kind)
    held = held_back_fingerprints(store, kind)
    return [fp for fp in fps if fp not in held] if held else fps


def held_back_fingerprints(store: Store, kind: str) -> set[bytes]:
    ensure_schema(store)
    with store.reading() as db:
        rows = db.execute(
            "SELECT s.fingerprint FROM held_back h JOIN signals s ON s.id ="
            " h.signal_id WHERE s.kind = ?",
            (kind,),
        ).fetchall()
    return {bytes(r[0]) for r in rows}
