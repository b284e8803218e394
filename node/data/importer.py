"""Import flagged identifiers from files: read, normalize, fingerprint, store in one go.

The file is read once, in chunks staged outside the store (``node.state.staging``),
so memory stays bounded; only a file without a bad line is then stored, in one
transaction.

Three formats, chosen by extension unless ``fmt`` says otherwise:

- ``csv`` (``.csv``): a header row is required; ``column`` names the column to read.
- ``jsonl`` (``.jsonl``): one JSON object a line; ``field`` names the string to read.
- ``lines`` (anything else): one value a line.

Files are UTF-8 (a byte-order mark is tolerated). Every bad line is reported as
``FILE:LINE: reason``, never with its value; an import is all or nothing, so a
single bad line means nothing is imported and the user fixes the file and reruns
(re-importing what is already held is harmless).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from node.state.cases_store import ensure_schema, hold_back_staged
from node.state.sqlite import stored_time
from node.state.staging import CHUNK_ROWS, Stage, staging
from node.state.store import ImportResult, SignalInput, Store
from protocol.errors import InputError
from protocol.fingerprints import IDENTIFIER_KINDS, fingerprint_many, normalize

FORMATS = ("csv", "jsonl", "lines")
MAX_REPORTED_LINES = 20
PROGRESS_EVERY = 5000
_BOM = b"\xef\xbb\xbf"

# (line number, value, reason): exactly one of value and reason is None.
_Record = tuple[int, str | None, str | None]


def read_values(
    path: Path,
    *,
    fmt: str | None = None,
    column: str | None = None,
    field: str | None = None,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, raw value)``; raise :class:`InputError` at the first bad line."""
    for line, value, reason in _records(Path(path), fmt, column, field):
        if reason is not None:
            raise InputError(reason, where=f"{path}:{line}")
        assert value is not None
        yield line, value


class Problems:
    """The bad lines of one file: all counted, the first few kept (reasons, never values)."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self.listed: list[tuple[int, str]] = []

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_REPORTED_LINES:
            self.listed.append((line, reason))

    def error(self, what: str) -> InputError:
        """One InputError naming every listed FILE:LINE; ``what`` follows "N bad lines"."""
        listed = [f"  {self.path}:{line}: {reason}" for line, reason in self.listed]
        if self.count > len(self.listed):
            listed.append(f"  ... and {self.count - len(self.listed)} more")
        noun = "line" if self.count == 1 else "lines"
        header = f"{self.count} bad {noun} {what}; nothing was imported"
        return InputError("\n".join([header, *listed]), where=f"{self.path}:{self.listed[0][0]}")


def signal_chunks(
    path: Path,
    kind: str,
    key: bytes,
    *,
    fmt: str | None = None,
    column: str | None = None,
    field: str | None = None,
    default_region: str = "US",
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[SignalInput]]:
    """Read, normalize and fingerprint a file's values, a chunk at a time, in one pass.

    Once a line is bad nothing more is yielded, the rest is still read for its bad
    lines, and the end raises one :class:`InputError` naming them: a consumer that
    stages the chunks and stores them only when this ends cleanly is all or nothing.
    ``progress(lines_read, 0)`` is called every few thousand lines (total unknown).
    """
    if kind not in IDENTIFIER_KINDS:
        known = ", ".join(sorted(IDENTIFIER_KINDS))
        raise InputError(f"unknown identifier kind {kind!r} (known: {known})")
    fingerprint_many(key, kind, [])  # a bad key fails before the file is read
    problems = Problems(path)
    pending: list[tuple[int, str, str]] = []  # (line, raw, normalized)
    good = 0
    for line, value, reason in _records(path, fmt, column, field):
        if progress is not None and line % PROGRESS_EVERY == 0:
            progress(line, 0)
        if reason is None:
            assert value is not None
            try:
                norm = normalize(kind, value, default_region=default_region)
                pending.append((line, value.strip(), norm))
            except InputError as e:
                reason = e.message
        if reason is not None:
            problems.add(line, reason)
            pending.clear()
        elif len(pending) >= CHUNK_ROWS and not problems:
            good += len(pending)
            yield _fingerprinted(path, kind, key, pending)
            pending = []
    if problems:
        raise problems.error(f"for kind {kind}")
    if pending:
        good += len(pending)
        yield _fingerprinted(path, kind, key, pending)
    if progress is not None:
        progress(good, good)


def prepare_signals(path: Path, kind: str, key: bytes, **opts: Any) -> list[SignalInput]:
    """Every signal of a small file at once, or every bad line (import_file streams)."""
    return [signal for chunk in signal_chunks(Path(path), kind, key, **opts) for signal in chunk]


def import_file(
    store: Store,
    path: Path,
    kind: str,
    key: bytes,
    *,
    now: str | None = None,
    screen: Callable[[str, str], str | None] | None = None,
    **opts: Any,
) -> ImportResult:
    """Stage every signal of ``path`` (one pass, bounded memory), then store them in one
    transaction; a bad line anywhere means nothing is stored.

    ``screen(kind, normalized)`` names the warninglist that holds a value back from
    rounds (or None); those signals are flagged in the same transaction.
    """
    at = stored_time(now, "now")
    held_by = screen or (lambda _kind, _normalized: None)
    with staging(store) as stage:
        for chunk in signal_chunks(Path(path), kind, key, **opts):
            stage.signals((s, None, held_by(s.kind, s.normalized)) for s in chunk)
        store_staged(store, stage, at)
    return stage.results.get(kind) or ImportResult(
        kind, 0, 0, store.signal_counts().get(kind, 0), received=0
    )


def store_staged(
    store: Store, stage: Stage, at: str, then: Callable[[sqlite3.Connection], None] | None = None
) -> None:
    """Move what ``stage`` holds into the store in one transaction (``stage.results``);
    the case tables are made first if a staged signal is held back by a warninglist."""
    stage.staged()
    if stage.held:
        ensure_schema(store)
    with stage.moving() as db:
        stage.store_signals(at)
        if stage.held:
            hold_back_staged(db)
        if then is not None:
            then(db)


def _fingerprinted(
    path: Path, kind: str, key: bytes, pending: list[tuple[int, str, str]]
) -> list[SignalInput]:
    fingerprints = fingerprint_many(key, kind, [norm for _, _, norm in pending])
    return [
        SignalInput(kind, raw, norm, fp, f"{path}:{line}")
        for (line, raw, norm), fp in zip(pending, fingerprints, strict=True)
    ]


# -- formats ------------------------------------------------------------------------------


def _records(
    path: Path, fmt: str | None, column: str | None, field: str | None
) -> Iterator[_Record]:
    chosen = _choose_format(path, fmt)
    if chosen == "csv":
        if column is None:
            raise InputError(f"{path} is CSV: say which column to read (--column)")
        if field is not None:
            raise InputError(f"{path} is CSV: --field applies to JSONL, use --column")
        return _csv_records(path, column)
    if column is not None:
        raise InputError(f"{path} is read as {chosen}: --column applies to CSV only")
    if chosen == "jsonl":
        if field is None:
            raise InputError(f"{path} is JSONL: say which field to read (--field)")
        return _jsonl_records(path, field)
    if field is not None:
        raise InputError(f"{path} is read as lines: --field applies to JSONL only")
    return _plain_records(path)


def _choose_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        return fmt
    suffix = path.suffix.lower()
    return {".csv": "csv", ".jsonl": "jsonl"}.get(suffix, "lines")


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield ``(line number, text with its line ending, reason)`` for each physical line."""
    try:
        handle = open(path, "rb")  # closed by the with below
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as e:
                yield number, None, f"invalid UTF-8 at byte {e.start + 1} of the line"


def filled_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, None)`` for a line with something on it, else
    ``(line number, None, reason)`` (an empty line, or bytes that are not UTF-8)."""
    for number, text, reason in _decoded_lines(path):
        if text is not None and not text.strip():
            yield number, None, "empty line"
        else:
            yield number, text, reason


def _plain_records(path: Path) -> Iterator[_Record]:
    for number, text, reason in filled_lines(path):
        yield number, None if text is None else text.rstrip("\r\n"), reason


def _jsonl_records(path: Path, field: str) -> Iterator[_Record]:
    for number, text, reason in filled_lines(path):
        if text is None:
            yield number, None, reason
        else:
            value, reason = _json_field(text, field)
            yield number, value, reason


def _json_field(text: str, field: str) -> tuple[str | None, str | None]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})"
    if not isinstance(record, dict):
        return None, f"not a JSON object but {_json_type(record)}"
    if field not in record:
        return None, f"field {field!r} missing"
    value = record[field]
    if not isinstance(value, str):
        return None, f"field {field!r} is {_json_type(value)}, expected a string"
    if not value.strip():
        return None, f"field {field!r} is empty"
    if any("\ud800" <= char <= "\udfff" for char in value):
        return None, f"field {field!r} holds an unpaired surrogate escape"
    return value, None


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


# A CSV data row: (first line, cells, None), or (line, None, reason) if it cannot be read.
CsvRow = tuple[int, list[str] | None, str | None]


def csv_table(path: Path) -> tuple[int, list[str], Iterator[CsvRow]]:
    """A CSV file's header (its line, the names stripped) and its data rows, read lazily;
    a row with bytes that are not UTF-8 or without any cell filled comes with its reason."""
    bad_bytes: dict[int, str] = {}

    def text_lines() -> Iterator[str]:
        for number, text, reason in _decoded_lines(path):
            if text is None:
                bad_bytes[number] = reason or "unreadable"
                yield "\n"  # keep csv's line count; the row is reported below
            else:
                yield text

    reader = csv.reader(text_lines(), strict=True)
    header_line, header = _csv_next(reader, path)
    if header is None:
        raise InputError(f"{path} is empty: a CSV file needs a header row", where=f"{path}:1")
    if header_line in bad_bytes:
        raise InputError(f"header row: {bad_bytes[header_line]}", where=f"{path}:{header_line}")

    def rows() -> Iterator[CsvRow]:
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
            else:
                yield start, row, None

    return header_line, [name.strip() for name in header], rows()


def _csv_records(path: Path, column: str) -> Iterator[_Record]:
    header_line, names, rows = csv_table(path)
    index = _column_index(path, names, column, header_line)
    for line, row, reason in rows:
        if row is None:
            yield line, None, reason
        elif index >= len(row):
            yield line, None, f"row has {len(row)} fields, column {column!r} is field {index + 1}"
        elif not row[index].strip():
            yield line, None, f"empty value in column {column!r}"
        else:
            yield line, row[index], None


def _csv_next(reader: Any, path: Path) -> tuple[int, list[str] | None]:
    try:
        row = next(reader)
    except StopIteration:
        return reader.line_num, None
    except csv.Error as e:
        # A broken quote makes every later line ambiguous: stop here.
        raise InputError(f"malformed CSV: {e}", where=f"{path}:{reader.line_num}") from e
    return reader.line_num, row


def _column_index(path: Path, header: list[str], column: str, line: int) -> int:
    names = [name.strip() for name in header]
    matches = [i for i, name in enumerate(names) if name == column.strip()]
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(repr(name) for name in names)
    if not matches:
        raise InputError(
            f"column {column!r} not in the header of {path} (columns: {shown})",
            where=f"{path}:{line}",
        )
    raise InputError(f"column {column!r} appears {len(matches)} times in the header of {path}")
