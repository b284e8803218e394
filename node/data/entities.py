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

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from node.data.importer import MAX_REPORTED_LINES, _choose_format, _csv_next, _decoded_lines
from node.state.cases_store import EntityRecord, ensure_schema, hold_back, write_entities
from node.state.store import ImportResult, SignalInput, Store
from protocol.cases.clusters import network_key
from protocol.errors import InputError
from protocol.fingerprints import IDENTIFIER_KINDS, fingerprint_many, normalize

META_FIELDS = ("first_seen", "last_seen", "reason", "campaign", "severity")
SEVERITIES = frozenset({"", "low", "medium", "high", "critical"})
MAX_KEY_CHARS = 256
MAX_META_CHARS = 512

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
    """Every entity of the file, rows of one key merged; InputError listing bad lines."""
    mapping = parse_maps(maps)
    merged: dict[str, _Entity] = {}
    problems: list[tuple[int, str]] = []
    bad = 0
    chosen = _choose_format(path, fmt)
    if chosen == "lines":
        raise InputError(f"{path}: entities are read from CSV or JSON lines (--format)")
    rows = _csv_rows(path) if chosen == "csv" else _jsonl_rows(path)
    for line, row, reason in rows:
        entity = None
        if reason is None:
            assert row is not None
            try:
                entity = _entity(line, row, key_column, mapping)
            except InputError as e:
                reason = e.message
        if entity is None:
            bad += 1
            if len(problems) < MAX_REPORTED_LINES:
                problems.append((line, reason or "unreadable"))
            continue
        _merge(merged, entity)
    if bad:
        listed = [f"  {path}:{n}: {why}" for n, why in problems]
        if bad > len(problems):
            listed.append(f"  ... and {bad - len(problems)} more")
        header = f"{bad} bad line{'s' if bad != 1 else ''} of entities; nothing was imported"
        raise InputError("\n".join([header, *listed]), where=f"{path}:{problems[0][0]}")
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
    """Read, normalize, fingerprint, then store signals and entities in one transaction."""
    path = Path(path)
    entities = read_entities(path, fmt=fmt, key_column=key_column, maps=maps)
    signals, records, held = _prepare(path, entities, key, default_region, screen)
    ensure_schema(store)
    counts: dict[str, int] = {}

    def link(db: object, at: str) -> None:
        counts["added"] = write_entities(db, records, at)  # type: ignore[arg-type]
        hold_back(db, held)  # type: ignore[arg-type]

    results = store.add_signals(signals, now=now, then=link)
    added = counts.get("added", 0)
    return EntityImportResult(len(entities), added, len(records) - added, results, len(held))


# -- preparing ----------------------------------------------------------------------------


def _prepare(
    path: Path, entities: list[_Entity], key: bytes, default_region: str, screen: Screen | None
) -> tuple[list[SignalInput], list[EntityRecord], list[tuple[str, bytes, str]]]:
    by_kind: dict[str, list[tuple[int, str, str]]] = {}  # kind -> (entity index, raw, norm)
    problems: list[tuple[int, str]] = []
    for index, entity in enumerate(entities):
        for kind, raw in entity.identifiers:
            try:
                norm = normalize(kind, raw, default_region=default_region)
            except InputError as e:
                problems.append((entity.line, f"{kind}: {e.message}"))
                continue
            by_kind.setdefault(kind, []).append((index, raw.strip(), norm))
    if problems:
        listed = [f"  {path}:{n}: {why}" for n, why in problems[:MAX_REPORTED_LINES]]
        raise InputError(
            "\n".join(
                [f"{len(problems)} bad identifier(s) in entities; nothing was imported", *listed]
            ),
            where=f"{path}:{problems[0][0]}",
        )
    signals: list[SignalInput] = []
    held: list[tuple[str, bytes, str]] = []
    owned: list[list[tuple[str, bytes]]] = [[] for _ in entities]
    links: list[set[str]] = [set() for _ in entities]
    for kind, items in by_kind.items():
        fps = fingerprint_many(key, kind, [norm for _, _, norm in items])
        for (index, raw, norm), fp in zip(items, fps, strict=True):
            signals.append(SignalInput(kind, raw, norm, fp, f"{path}:{entities[index].line}"))
            owned[index].append((kind, fp))
            held_by = screen(kind, norm) if screen is not None else None
            if held_by is not None:
                held.append((kind, fp, held_by))
            elif kind == "ip" and (net := network_key(norm)) is not None:
                links[index].add("net:" + net)
    records = []
    for index, entity in enumerate(entities):
        if entity.meta["campaign"]:
            links[index].add("campaign:" + entity.meta["campaign"])
        m = entity.meta
        records.append(
            EntityRecord(
                entity.key,
                m["first_seen"],
                m["last_seen"],
                m["reason"],
                m["campaign"],
                m["severity"],
                f"{path}:{entity.line}",
                tuple(dict.fromkeys(owned[index])),
                tuple(sorted(links[index])),
            )
        )
    return signals, records, held


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
    if any(ord(c) < 32 or c == "\x7f" for c in value):
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
    for number, text, reason in _decoded_lines(path):
        if text is None:
            yield number, None, reason
        elif not text.strip():
            yield number, None, "empty line"
        else:
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
    bad_bytes: dict[int, str] = {}

    def text_lines() -> Iterator[str]:
        for number, text, reason in _decoded_lines(path):
            if text is None:
                bad_bytes[number] = reason or "unreadable"
                yield "\n"
            else:
                yield text

    reader = csv.reader(text_lines(), strict=True)
    header_line, header = _csv_next(reader, path)
    if header is None:
        raise InputError(f"{path} is empty: a CSV file needs a header row", where=f"{path}:1")
    names = [name.strip() for name in header]
    if len(set(names)) != len(names):
        raise InputError(
            f"{path}: a column name appears twice in the header", where=f"{path}:{header_line}"
        )
    while True:
        start = reader.line_num + 1
        end, row = _csv_next(reader, path)
        if row is None:
            return
        broken = [n for n in range(start, end + 1) if n in bad_bytes]
        if broken:
            yield broken[0], None, bad_bytes[broken[0]]
        elif not row or all(not cell.strip() for cell in row):
            yield start, None, "empty line"
        elif len(row) != len(names):
            yield start, None, f"row has {len(row)} fields, the header {len(names)}"
        else:
            yield start, dict(zip(names, row, strict=True)), None
