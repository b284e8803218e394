"""Reviewer views of an audit log: the self-contained HTML report, and export rows.

The HTML page needs nothing but a browser: inline CSS, an inline SVG chart, no
scripts, no external assets. It is rendered by jinja2 from ``templates/report.html.j2``
with autoescape on, so every value taken from the log is text, never markup (a log is
input like any other: a peer's lab id or an abort reason could hold markup). This module
only decides what the page shows; the template decides how.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from node.ops.report_chart import Point, chart
from protocol.audit.canonical import encode_canonical
from protocol.audit.checkpoint import parse_checkpoint
from protocol.audit.records import public_key_from_hex
from protocol.audit.verify_report import VerifyReport
from protocol.errors import VerificationError
from protocol.exports import safe_cell
from protocol.identity import key_fingerprint

EXPORT_COLUMNS = (
    "seq", "time", "event", "peer", "round_id", "role", "mode", "kinds", "own_sizes",
    "peer_sizes", "intersection_sizes", "policy_hash", "transcript_hash", "stage", "reason",
    "rule", "leaf_hash", "body",
)  # fmt: skip
ROUND_EVENTS = ("round_completed", "round_aborted")


@functools.cache
def _templates() -> Any:
    # Imported on first use: every `crossmatch` command imports this module, few render.
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("node.ops", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def counts_text(counts: Any) -> str:
    if not isinstance(counts, dict):
        return ""
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))


def display_time(text: str) -> str:
    return text[:19].replace("T", " ") + " UTC"


# -- export rows --------------------------------------------------------------------------------


def export_row(record: dict[str, Any], leaf_hash: bytes) -> dict[str, Any]:
    """One flat row per record; round and refusal fields lifted out of the body."""
    body = record["body"]
    row: dict[str, Any] = dict.fromkeys(EXPORT_COLUMNS)
    row.update(seq=record["seq"], time=record["time"], event=record["event"])
    for name in EXPORT_COLUMNS[3:17]:
        if name in body:
            row[name] = body[name]
    if record["event"] == "round_refused":
        row["peer"] = body.get("claimed_lab") or body.get("peer")
    row["leaf_hash"], row["body"] = leaf_hash.hex(), body
    return row


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
        text = ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ";".join(value)
    elif isinstance(value, dict | list):
        text = encode_canonical(value).decode("utf-8")
    else:
        text = str(value)
    return safe_cell(text)  # a spreadsheet must not run a peer's or an abuser's text


def csv_row(row: dict[str, Any]) -> list[str]:
    return [_csv_cell(row[name]) for name in EXPORT_COLUMNS]


# -- what the report shows ----------------------------------------------------------------------


@dataclass(frozen=True)
class RoundView:
    time: str
    peer: str
    event: str
    body: dict[str, Any]

    @property
    def completed(self) -> bool:
        return self.event == "round_completed"

    @property
    def outcome(self) -> str:
        if self.completed:
            return "completed"
        return f"aborted at {self.body.get('stage')}: {self.body.get('reason')}"


def round_views(records: Iterable[dict[str, Any]]) -> list[RoundView]:
    return [
        RoundView(r["time"], str(r["body"].get("peer")), r["event"], r["body"])
        for r in records
        if r["event"] in ROUND_EVENTS
    ]


# -- the page -----------------------------------------------------------------------------------


class Cell(NamedTuple):
    text: str
    cls: str = ""
    title: str | None = None


class Row(NamedTuple):
    cls: str
    cells: list[Cell]


class Table(NamedTuple):
    headers: Sequence[str]
    rows: list[Row]


def _td(value: object, cls: str = "") -> Cell:
    return Cell("" if value is None else str(value), cls)


def _hash_td(value: object) -> Cell:
    text = "" if value is None else str(value)
    return Cell(text[:12] + ("…" if len(text) > 12 else ""), "hash", text)


def _rounds_table(rounds: Sequence[RoundView]) -> Table:
    rows = []
    for r in rounds:
        b = r.body
        cells = [
            _td(display_time(r.time)),
            _td(r.peer),
            _td(b.get("role")),
            _td(b.get("mode")),
            _td(", ".join(map(str, b.get("kinds") or []))),
            _td(counts_text(b.get("own_sizes"))),
            _td(counts_text(b.get("peer_sizes"))),
            _td(counts_text(b.get("intersection_sizes")) if r.completed else "none"),
            _hash_td(b.get("policy_hash")),
            _td(r.outcome),
        ]
        rows.append(Row("completed" if r.completed else "aborted", cells))
    headers = ("Date", "Peer", "Role", "Mode", "Kinds", "Own set sizes", "Peer set sizes",
               "Matches", "Policy hash", "Outcome")  # fmt: skip
    return Table(headers, rows)


def _problems_table(records: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for r in records:
        b = r["body"]
        if r["event"] == "round_refused":
            what, who = "refused", f"{b.get('claimed_lab')} (connection from {b.get('peer')})"
            stage: object = "handshake"
        elif r["event"] == "round_aborted":
            what, who, stage = "aborted", b.get("peer"), b.get("stage")
        else:
            continue
        cells = [display_time(r["time"]), what, who, stage, b.get("rule"), b.get("reason")]
        rows.append(Row(what, [_td(c) for c in cells]))
    return Table(("Date", "What", "Peer", "Stage", "Rule", "Reason"), rows)


def _imports_table(records: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for r in records:
        if r["event"] != "signals_imported":
            continue
        b = r["body"]
        cells = [
            _td(display_time(r["time"])),
            _td(b.get("kind")),
            _td(b.get("added"), "num"),
            _td(b.get("already_held"), "num"),
            _td(b.get("total"), "num"),
            _hash_td(b.get("source_sha256")),
        ]
        rows.append(Row("", cells))
    headers = ("Date", "Kind", "Added", "Already held", "Total held", "Source file SHA-256")
    return Table(headers, rows)


def _event_detail(event: str, b: dict[str, Any]) -> str:
    if event == "checkpoint":
        try:
            cp = parse_checkpoint(b["checkpoint"])
        except VerificationError:
            return "signed checkpoint (unreadable)"
        return f"signed checkpoint: {cp.size} records, root {cp.root.hex()[:16]}…"
    if event == "recovery":
        return (
            f"{b.get('bytes')} bytes of a torn last line (a crash mid-write) moved to "
            f"{b.get('quarantine_file')}, SHA-256 {b.get('sha256')}"
        )
    if event == "matches_purged":
        return f"{b.get('count')} stored matches older than {b.get('before')} deleted"
    if event == "entities_purged":
        return (
            f"{b.get('entities')} entities neither imported nor seen since {b.get('before')}"
            f" deleted, with {b.get('links')} links"
        )
    if event in ("node_started", "node_stopped"):
        return f"lab {b.get('lab')}, version {b.get('version')}"
    if event == "log_created":
        return f"log created; audit key {_key_name(b.get('public_key'))}"
    return encode_canonical(b).decode("utf-8")


def _other_events_table(records: Sequence[dict[str, Any]]) -> Table:
    elsewhere = ("round_completed", "round_aborted", "round_refused", "signals_imported")
    rows = [
        Row(
            r["event"],
            [
                _td(r["seq"], "num"),
                _td(display_time(r["time"])),
                _td(r["event"]),
                _td(_event_detail(r["event"], r["body"])),
            ],
        )
        for r in records
        if r["event"] not in elsewhere
    ]
    return Table(("Record", "Date", "Event", "Detail"), rows)


def _summary(records: Sequence[dict[str, Any]], rounds: Sequence[RoundView]) -> list[tuple]:
    events = Counter(r["event"] for r in records)
    by_peer: dict[str, int] = defaultdict(int)
    matches: Counter[str] = Counter()
    for r in rounds:
        by_peer[r.peer] += r.completed
        if r.completed:
            matches.update(r.body.get("intersection_sizes") or {})
    period = (
        f"{display_time(records[0]['time'])} to {display_time(records[-1]['time'])}"
        if records
        else "no records"
    )
    return [
        ("Period", period),
        ("Records", str(len(records))),
        ("Rounds completed", str(events["round_completed"])),
        ("Rounds aborted", str(events["round_aborted"])),
        ("Connections refused", str(events["round_refused"])),
        ("Completed rounds per peer", counts_text(dict(by_peer)) or "none"),
        ("Shared signals found (all rounds)", counts_text(dict(matches)) or "none"),
    ]


def render_report(
    *,
    records: Sequence[dict[str, Any]],
    report: VerifyReport | None,
    failure: VerificationError | None,
    source: str,
    source_sha256: str,
    generated_at: datetime,
) -> str:
    """The whole HTML page. ``records`` are the records that verified (all, or those before
    ``failure``)."""
    log_id = records[0]["log"] if records else "(unknown)"
    lab = report.lab if report else (log_id.split("/")[1] if log_id.count("/") == 2 else "?")
    rounds = round_views(records)
    verified = [line.strip() for line in report.summary_lines()[1:]] if report else []
    return (
        _templates()
        .get_template("report.html.j2")
        .render(
            lab=lab,
            log_id=log_id,
            source=source,
            source_sha256=source_sha256,
            generated=generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            failure=failure.diagnostics() if failure is not None else None,
            verified=verified,
            summary=_summary(records, rounds),
            chart=chart([Point(r.time, r.peer, r.completed) for r in rounds]),
            rounds=_rounds_table(rounds),
            problems=_problems_table(records),
            imports=_imports_table(records),
            events=_other_events_table(records),
        )
    )


def _key_name(public_key_hex: object) -> str:
    """An audit key as every other place names it (``protocol.identity.key_fingerprint``)."""
    try:
        return key_fingerprint(public_key_from_hex(public_key_hex))
    except VerificationError:
        return "(malformed key)"
