"""Import flagged identifiers from files: read, normalize, fingerprint, store in one go.

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
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from node.state.cases_store import ensure_schema, hold_back
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


def prepare_signals(
    path: Path,
    kind: str,
    key: bytes,
    *,
    fmt: str | None = None,
    column: str | None = None,
    field: str | None = None,
    default_region: str = "US",
    progress: Callable[[int, int], None] | None = None,
) -> list[SignalInput]:
    """Read, normalize and fingerprint every value of a file, or report every bad line.

    ``progress(lines_read, 0)`` is called every few thousand lines (total unknown).
    """
    path = Path(path)
    if kind not in IDENTIFIER_KINDS:
        known = ", ".join(sorted(IDENTIFIER_KINDS))
        raise InputError(f"unknown identifier kind {kind!r} (known: {known})")
    fingerprint_many(key, kind, [])  # a bad key fails before the file is read
    lines: list[int] = []
    raws: list[str] = []
    normalized: list[str] = []
    problems: list[tuple[int, str]] = []
    bad_lines = 0
    for line, value, reason in _records(path, fmt, column, field):
        if progress is not None and line % PROGRESS_EVERY == 0:
            progress(line, 0)
        if reason is None:
            assert value is not None
            try:
                normalized.append(normalize(kind, value, default_region=default_region))
                lines.append(line)
                raws.append(value.strip())
                continue
            except InputError as e:
                reason = e.message
        bad_lines += 1
        if len(problems) < MAX_REPORTED_LINES:
            problems.append((line, reason))
    if bad_lines:
        raise _bad_lines_error(path, kind, problems, bad_lines)
    fingerprints = fingerprint_many(key, kind, normalized)
    if progress is not None:
        progress(len(lines), len(lines))
    return [
        SignalInput(kind, raw, norm, fp, f"{path}:{line}")
        for line, raw, norm, fp in zip(lines, raws, normalized, fingerprints, strict=True)
    ]


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
    """Prepare every signal of ``path``, then store them in one transaction.

    ``screen(kind, normalized)`` names the warninglist that holds a value back from
    rounds (or None); those signals are flagged in the same transaction.
    """
    signals = prepare_signals(path, kind, key, **opts)
    held = [
        (s.kind, s.fingerprint, name)
        for s in signals
        if screen is not None and (name := screen(s.kind, s.normalized)) is not None
    ]
    if held:
        ensure_schema(store)
    results = store.add_signals(
        signals, now=now, then=(lambda db, _at: hold_back(db, held)) if held else None
    )
    if kind in results:
        return replace(results[kind], held_back=len(held))
    return ImportResult(kind, 0, 0, store.signal_counts().get(kind, 0), received=0)


def _bad_lines_error(
    path: Path, kind: str, problems: list[tuple[int, str]], bad_lines: int
) -> InputError:
    listed = [f"  {path}:{line}: {reason}" for line, reason in problems]
    if bad_lines > len(problems):
        listed.append(f"  ... and {bad_lines - len(problems)} more")
    noun = "line" if bad_lines == 1 else "lines"
    header = f"{bad_lines} bad {noun} for kind {kind}; nothing was imported"
    return InputError("\n".join([header, *listed]), where=f"{path}:{problems[0][0]}")


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


def _plain_records(path: Path) -> Iterator[_Record]:
    for number, text, reason in _decoded_lines(path):
        if text is None:
            yield number, None, reason
        elif not text.strip():
            yield number, None, "empty line"
        else:
            yield number, text.rstrip("\r\n"), None


def _jsonl_records(path: Path, field: str) -> Iterator[_Record]:
    for number, text, reason in _decoded_lines(path):
        if text is None:
            yield number, None, reason
        elif not text.strip():
            yield number, None, "empty line"
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


def _csv_records(path: Path, column: str) -> Iterator[_Record]:
    bad_bytes: dict[int, str] = {}

    def text_lines() -> Iterator[str]:
        for number, text, reason in _decoded_lines(path):
            if text is None:
                assert reason is not None
                bad_bytes[number] = reason
                yield "\n"  # keep csv's line count; the row is reported below
            else:
                yield text

    reader = csv.reader(text_lines(), strict=True)
    header_line, header = _csv_next(reader, path)
    if header is None:
        raise InputError(f"{path} is empty: a CSV file needs a header row", where=f"{path}:1")
    if header_line in bad_bytes:
        raise InputError(f"header row: {bad_bytes[header_line]}", where=f"{path}:{header_line}")
    index = _column_index(path, header, column, header_line)
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
        elif index >= len(row):
            yield start, None, f"row has {len(row)} fields, column {column!r} is field {index + 1}"
        elif not row[index].strip():
            yield start, None, f"empty value in column {column!r}"
        else:
            yield start, row[index], None


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
