"""Import flagged accounts of ours (entities) with their identifiers and local metadata.

A file has one row (CSV) or object (JSON lines) per flagged account:

- the entity key (our account id), in column/field ``--key`` (default ``account``);
- identifier columns mapped to kinds: ``--map KIND=COLUMN`` or ``--map COLUMN=KIND``
  (whichever side names a kind), plus every column named exactly like a kind
  (``email``, ``ip``, ``payment_fingerprint``...). Empty cells are skipped; a JSON
  field may hold a list of values;
- optional metadata: ``first_seen``, ``last_seen`` (ISO 8601 date or time with a
  zone), ``reason``, ``campaign`` (our label), ``severity`` (low, medium, high,
  critical).

Rows with the same key are one entity (an export with a row per account and IP
is fine). Every identifier becomes a signal exactly as ``crossmatch import``
would store it, linked to its entity; prompts link through their ``account``
field. All or nothing: every bad line is reported as FILE:LINE: reason, never
with its value. Entities and their metadata never leave the node.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from node.data.importer import Problems, _choose_format, csv_table, filled_lines, store_staged
from node.state.cases_store import ensure_schema, store_staged_entities
from node.state.sqlite import stored_time
from node.state.staging import CHUNK_ROWS, EntityRow, Stage, staging
from node.state.store import ImportResult, SignalInput, Store
from protocol.cases.clusters import network_key
from protocol.errors import InputError
from protocol.fingerprints import IDENTIFIER_KINDS, fingerprint_many, normalize

META_FIELDS = ("first_seen", "last_seen", "reason", "campaign", "severity")
SEVERITIES = frozenset({"", "low", "medium", "high", "critical"})
MAX_KEY_CHARS = 256
MAX_META_CHARS = 512
_CONTROL = re.compile("[\x00-\x1f\x7f]")

# Says which warninglist holds a value back from rounds, or None: (kind, normalized) -> name.
Screen = Callable[[str, str], str | None]


@dataclass
class _Entity:
    line: int
    key: str
    meta: dict[str, str]
    identifiers: list[tuple[str, str]] = field(default_factory=list)  # (kind, raw)


@dataclass(frozen=True)
class EntityImportResult:
    read: int  # rows or objects read
    entities_added: int
    entities_updated: int
    signals: dict[str, ImportResult]
    held_back: int  # identifiers a warninglist keeps out of rounds


def parse_maps(maps: Sequence[str]) -> dict[str, str]:
    """``{column: kind}`` from ``KIND=COLUMN`` or ``COLUMN=KIND`` pairs."""
    mapping: dict[str, str] = {}
    for item in maps:
        left, sep, right = (part.strip() for part in item.partition("="))
        if not sep or not left or not right:
            raise InputError(f"--map {item!r}: expected KIND=COLUMN")
        if left in IDENTIFIER_KINDS:
            mapping[right] = left
        elif right in IDENTIFIER_KINDS:
            mapping[left] = right
        else:
            known = ", ".join(sorted(IDENTIFIER_KINDS))
            raise InputError(f"--map {item!r}: neither side is a kind (known: {known})")
    return mapping


def read_entities(
    path: Path, *, fmt: str | None = None, key_column: str = "account", maps: Sequence[str] = ()
) -> list[_Entity]:
    """Every entity of a small file at once, rows of one key merged (import_entities streams);
    InputError listing bad lines."""
    problems = Problems(Path(path))
    merged: dict[str, _Entity] = {}
    for entity, _ in _valid_rows(Path(path), fmt, key_column, parse_maps(maps), "US", problems):
        _merge(merged, entity)
    if problems:
        raise problems.error("of entities")
    return list(merged.values())


def import_entities(
    store: Store,
    path: Path,
    key: bytes,
    *,
    fmt: str | None = None,
    key_column: str = "account",
    maps: Sequence[str] = (),
    default_region: str = "US",
    screen: Screen | None = None,
    now: str | None = None,
) -> EntityImportResult:
    """Read, normalize and fingerprint the file in one streaming pass that stages its rows
    chunk by chunk; only a file without a bad line is then stored, in one transaction."""
    path = Path(path)
    mapping = parse_maps(maps)
    at = stored_time(now, "now")
    ensure_schema(store)
    problems = Problems(path)
    counts: dict[str, int] = {}

    def link(db: sqlite3.Connection) -> None:
        counts["read"], counts["added"] = store_staged_entities(db, at)

    with staging(store) as stage:
        rows = _valid_rows(path, fmt, key_column, mapping, default_region, problems)
        for seq, chunk in _chunks(rows):
            if not problems:  # after a bad line, only look for more of them
                _stage_chunk(stage, path, seq, chunk, key, screen)
        if problems:
            raise problems.error("of entities")
        store_staged(store, stage, at, then=link)
    read, added = counts["read"], counts["added"]
    return EntityImportResult(read, added, read - added, stage.results, stage.held)


# -- staging ------------------------------------------------------------------------------

# A good row: the entity it names and its identifiers as (kind, raw, normalized).
_Identifier = tuple[str, str, str]
_Valid = tuple[_Entity, list[_Identifier]]


def _valid_rows(
    path: Path,
    fmt: str | None,
    key_column: str,
    mapping: dict[str, str],
    default_region: str,
    problems: Problems,
) -> Iterator[_Valid]:
    """Every good row of the file; every bad one goes to ``problems`` (FILE:LINE, no value)."""
    chosen = _choose_format(path, fmt)
    if chosen == "lines":
        raise InputError(f"{path}: entities are read from CSV or JSON lines (--format)")
    for line, row, reason in _csv_rows(path) if chosen == "csv" else _jsonl_rows(path):
        if row is None:
            problems.add(line, reason or "unreadable")
            continue
        try:
            entity = _entity(line, row, key_column, mapping)
        except InputError as e:
            problems.add(line, e.message)
            continue
        normalized, bad = _normalized(entity, default_region)
        for reason in bad:
            problems.add(line, reason)
        if not bad:
            yield entity, normalized


def _normalized(entity: _Entity, default_region: str) -> tuple[list[_Identifier], list[str]]:
    good: list[_Identifier] = []
    bad: list[str] = []
    for kind, raw in entity.identifiers:
        try:
            good.append((kind, raw.strip(), normalize(kind, raw, default_region=default_region)))
        except InputError as e:
            bad.append(f"{kind}: {e.message}")
    return good, bad


def _chunks(rows: Iterator[_Valid]) -> Iterator[tuple[int, list[_Valid]]]:
    """``(seq of the chunk's first row, rows)``, CHUNK_ROWS rows at a time."""
    seq = 0
    while chunk := list(islice(rows, CHUNK_ROWS)):
        yield seq, chunk
        seq += len(chunk)


def _stage_chunk(
    stage: Stage, path: Path, seq: int, chunk: list[_Valid], key: bytes, screen: Screen | None
) -> None:
    by_kind: dict[str, list[tuple[int, str, str, str]]] = {}  # kind -> (seq, source, raw, norm)
    links: list[tuple[int, str]] = []
    entity_rows: list[EntityRow] = []
    for number, (entity, identifiers) in enumerate(chunk, start=seq):
        m, source = entity.meta, f"{path}:{entity.line}"
        meta = (m["first_seen"], m["last_seen"], m["reason"], m["campaign"], m["severity"])
        entity_rows.append((number, entity.key, *meta, source))
        if m["campaign"]:
            links.append((number, "campaign:" + m["campaign"]))
        for kind, raw, norm in identifiers:
            by_kind.setdefault(kind, []).append((number, source, raw, norm))
    staged = []
    for kind, items in by_kind.items():
        fps = fingerprint_many(key, kind, [item[3] for item in items])
        for (number, source, raw, norm), fp in zip(items, fps, strict=True):
            held_by = screen(kind, norm) if screen is not None else None
            if kind == "ip" and held_by is None and (net := network_key(norm)) is not None:
                links.append((number, "net:" + net))
            staged.append((SignalInput(kind, raw, norm, fp, source), number, held_by))
    stage.signals(staged)
    stage.entities(entity_rows, links)


def _merge(merged: dict[str, _Entity], entity: _Entity) -> None:
    seen = merged.get(entity.key)
    if seen is None:
        merged[entity.key] = entity
        return
    seen.identifiers.extend(entity.identifiers)
    for name in ("reason", "campaign", "severity"):
        seen.meta[name] = entity.meta[name] or seen.meta[name]
    firsts = [t for t in (seen.meta["first_seen"], entity.meta["first_seen"]) if t]
    seen.meta["first_seen"] = min(firsts, default="")
    seen.meta["last_seen"] = max(seen.meta["last_seen"], entity.meta["last_seen"])


def _entity(line: int, row: dict[str, object], key_column: str, mapping: dict[str, str]) -> _Entity:
    raw_key = row.get(key_column)
    if not isinstance(raw_key, str | int) or not str(raw_key).strip():
        raise InputError(f"entity key {key_column!r} missing or empty")
    key = _text(str(raw_key), key_column, MAX_KEY_CHARS)
    meta = {name: _text(_cell(row, name), name, MAX_META_CHARS) for name in META_FIELDS}
    for name in ("first_seen", "last_seen"):
        meta[name] = _instant(meta[name], name) if meta[name] else ""
    if meta["severity"].lower() not in SEVERITIES:
        raise InputError("severity must be low, medium, high or critical")
    meta["severity"] = meta["severity"].lower()
    identifiers: list[tuple[str, str]] = []
    columns = {**{c: c for c in row if c in IDENTIFIER_KINDS}, **mapping}
    for column, kind in columns.items():
        value = row.get(column)
        values = value if isinstance(value, list) else [value]
        for one in values:
            if one is None or (isinstance(one, str) and not one.strip()):
                continue
            if not isinstance(one, str | int) or isinstance(one, bool):
                raise InputError(f"field {column!r} must hold strings")
            identifiers.append((kind, str(one)))
    return _Entity(line, key, meta, identifiers)


def _cell(row: dict[str, object], name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InputError(f"field {name!r} must be a string")
    return str(value).strip()


def _text(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        raise InputError(f"{name!r} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise InputError(f"{name!r} holds a control character")
    return value


def _instant(text: str, name: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise InputError(f"{name!r} is not an ISO 8601 date or time") from e
    if len(text) == 10:  # a plain date: midnight UTC
        moment = moment.replace(tzinfo=UTC)
    if moment.tzinfo is None:
        raise InputError(f"{name!r} has no time zone (e.g. 2026-11-30T12:00:00Z)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- formats ------------------------------------------------------------------------------

_Row = tuple[int, dict[str, object] | None, str | None]


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    for number, text, reason in filled_lines(path):
        if text is None:
            yield number, None, reason
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            yield number, None, f"not valid JSON ({e.msg} at column {e.colno})"
            continue
        if not isinstance(record, dict):
            yield number, None, "not a JSON object"
        elif any(
            isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v)
            for v in record.values()
        ):
            yield number, None, "a field holds an unpaired surrogate escape"
        else:
            yield number, record, None


def _csv_rows(path: Path) -> Iterator[_Row]:
    header_line, names, rows = csv_table(path)
    if len(set(names)) != len(names):
        raise InputError(
            f"{path}: a column name appears twice in the header", where=f"{path}:{header_line}"
        )
    for line, row, reason in rows:
        if row is None:
            yield line, None, reason
        elif len(row) != len(names):
            yield line, None, f"row has {len(row)} fields, the header {len(names)}"
        else:
            yield line, dict(zip(names, row, strict=True)), None
