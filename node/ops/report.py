"""Reviewer views of an audit log: the self-contained HTML report, and export rows.

The HTML page needs nothing but a browser: inline CSS, an inline SVG chart, no
scripts, no external assets. Every value taken from the log is escaped, since a
log is input like any other (a peer's lab id or an abort reason could hold markup).
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol.audit.canonical import encode_canonical
from protocol.audit.checkpoint import parse_checkpoint
from protocol.audit.records import parse_time, public_key_from_hex
from protocol.audit.verify import VerifyReport
from protocol.errors import VerificationError
from protocol.exports import safe_cell
from protocol.identity import key_fingerprint

EXPORT_COLUMNS = (
    "seq", "time", "event", "peer", "round_id", "role", "mode", "kinds", "own_sizes",
    "peer_sizes", "intersection_sizes", "policy_hash", "transcript_hash", "stage", "reason",
    "rule", "leaf_hash", "body",
)  # fmt: skip
ROUND_EVENTS = ("round_completed", "round_aborted")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


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
    return safe_cell(text)


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


def _bucket_size(first: datetime, last: datetime) -> tuple[timedelta, str]:
    span = last - first
    for size, fmt in (
        (timedelta(hours=1), "%Y-%m-%d %H:00"),
        (timedelta(days=1), "%Y-%m-%d"),
        (timedelta(weeks=1), "week of %Y-%m-%d"),
        (timedelta(days=30), "%Y-%m"),
    ):
        if span / size <= 48:
            return size, fmt
    return timedelta(days=365), "%Y"


def _bucket_start(when: datetime, size: timedelta) -> datetime:
    if size <= timedelta(hours=1):
        return when.replace(minute=0, second=0, microsecond=0)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if size == timedelta(days=1):
        return day
    if size == timedelta(weeks=1):
        return day - timedelta(days=day.weekday())
    if size == timedelta(days=30):
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _next_bucket(start: datetime, size: timedelta) -> datetime:
    if size == timedelta(days=30):
        return (start + timedelta(days=32)).replace(day=1)
    if size == timedelta(days=365):
        return start.replace(year=start.year + 1)
    return start + size


def chart_svg(rounds: Sequence[RoundView]) -> str:
    """Stacked bars: rounds per peer per time bucket; aborted rounds in a paler shade on top."""
    if not rounds:
        return '<p class="empty" id="rounds-chart-empty">No rounds recorded.</p>'
    times = [parse_time(r.time) for r in rounds]
    size, label_format = _bucket_size(min(times), max(times))
    buckets: list[datetime] = []
    start = _bucket_start(min(times), size)
    while start <= max(times):
        buckets.append(start)
        start = _next_bucket(start, size)
    peers = sorted({r.peer for r in rounds})
    colour = {peer: PALETTE[i % len(PALETTE)] for i, peer in enumerate(peers)}
    counts: dict[tuple[int, str, bool], int] = Counter()
    for r, when in zip(rounds, times, strict=True):
        index = max(i for i, b in enumerate(buckets) if b <= when)
        counts[(index, r.peer, r.completed)] += 1
    totals = [sum(n for (i, _, _), n in counts.items() if i == b) for b in range(len(buckets))]
    top = max(totals) or 1
    left, plot_w, plot_h, pad_top = 48, max(360, 28 * len(buckets)), 220, 16
    width, height = left + plot_w + 160, pad_top + plot_h + 70
    bar_w = plot_w / len(buckets)
    scale = plot_h / top
    parts = [
        f'<svg id="rounds-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="rounds-chart-title">',
        '<title id="rounds-chart-title">Rounds per peer over time</title>',
    ]
    for tick in range(top + 1) if top <= 6 else sorted({0, top // 2, top}):
        y = pad_top + plot_h - tick * scale
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick}</text>'
        )
    for b, bucket in enumerate(buckets):
        y = pad_top + plot_h
        x = left + b * bar_w + bar_w * 0.15
        for completed in (True, False):
            for peer in peers:
                n = counts.get((b, peer, completed), 0)
                if not n:
                    continue
                h = n * scale
                y -= h
                state = "completed" if completed else "aborted"
                label = f"{bucket.strftime(label_format)}: {n} {state} round(s) with {peer}"
                parts.append(
                    f'<rect class="bar {state}" x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.7:.1f}" '
                    f'height="{h:.1f}" fill="{colour[peer]}" '
                    f'fill-opacity="{1 if completed else 0.35}" data-peer="{esc(peer)}" '
                    f'data-count="{n}" data-state="{state}" '
                    f'data-bucket="{esc(bucket.strftime(label_format))}"><title>{esc(label)}</title>'
                    "</rect>"
                )
    step = max(1, len(buckets) // 8)
    for b in range(0, len(buckets), step):
        x = left + (b + 0.5) * bar_w
        parts.append(
            f'<text x="{x:.1f}" y="{pad_top + plot_h + 16}" text-anchor="middle" class="tick">'
            f"{esc(buckets[b].strftime(label_format))}</text>"
        )
    parts.append(
        f'<text x="12" y="{pad_top + plot_h / 2:.1f}" text-anchor="middle" class="tick" '
        f'transform="rotate(-90 12 {pad_top + plot_h / 2:.1f})">rounds</text>'
    )
    parts.append(
        f'<line x1="{left}" y1="{pad_top + plot_h}" x2="{left + plot_w}" '
        f'y2="{pad_top + plot_h}" class="axis"/>'
    )
    for i, peer in enumerate(peers):
        y = pad_top + 8 + 20 * i
        parts.append(
            f'<rect x="{left + plot_w + 16}" y="{y}" width="12" height="12" '
            f'fill="{colour[peer]}"/><text x="{left + plot_w + 34}" y="{y + 11}" '
            f'class="legend">{esc(peer)}</text>'
        )
    y = pad_top + 8 + 20 * len(peers)
    parts.append(
        f'<rect x="{left + plot_w + 16}" y="{y}" width="12" height="12" fill="#777" '
        f'fill-opacity="0.35"/><text x="{left + plot_w + 34}" y="{y + 11}" '
        'class="legend">paler: aborted</text></svg>'
    )
    return "".join(parts)


# -- the page -----------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       margin: 2rem auto; max-width: 78rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #555; font-size: .9rem; } code, .hash { font-family: ui-monospace, monospace; }
.status { border-radius: 6px; padding: .8rem 1.2rem; margin: 1.2rem 0; }
.status.ok { background: #e8f5e9; border: 2px solid #2e7d32; }
.status.failed { background: #fdecea; border: 2px solid #c62828; }
.status h2 { margin: 0 0 .4rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.aborted td { background: #fff8e1; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .grid { stroke: #e5e5e5; } svg .axis { stroke: #333; }
.empty { color: #777; font-style: italic; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dl.summary dt { color: #555; } dl.summary dd { margin: 0; }
"""


Row = tuple[str, Sequence[str]]  # (css class of the row, cells already rendered as HTML)


def _table(table_id: str, headers: Sequence[str], rows: Sequence[Row], empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{table_id}-empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        (f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>" for cls, cells in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(value: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{esc(value)}</td>"


def _hash_td(value: object) -> str:
    text = "" if value is None else str(value)
    short = text[:12] + ("…" if len(text) > 12 else "")
    return f'<td class="hash" title="{esc(text)}">{esc(short)}</td>'


def _rounds_table(rounds: Sequence[RoundView]) -> str:
    rows: list[Row] = []
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
        rows.append(("completed" if r.completed else "aborted", cells))
    headers = ("Date", "Peer", "Role", "Mode", "Kinds", "Own set sizes", "Peer set sizes",
               "Matches", "Policy hash", "Outcome")  # fmt: skip
    return _table("rounds-table", headers, rows, "No rounds recorded.")


def _problems_table(records: Sequence[dict[str, Any]]) -> str:
    rows: list[Row] = []
    for r in records:
        b = r["body"]
        if r["event"] == "round_refused":
            who = f"{b.get('claimed_lab')} (connection from {b.get('peer')})"
            rows.append(
                (
                    "refused",
                    [
                        _td(display_time(r["time"])),
                        _td("refused"),
                        _td(who),
                        _td("handshake"),
                        _td(b.get("rule")),
                        _td(b.get("reason")),
                    ],
                )
            )
        elif r["event"] == "round_aborted":
            rows.append(
                (
                    "aborted",
                    [
                        _td(display_time(r["time"])),
                        _td("aborted"),
                        _td(b.get("peer")),
                        _td(b.get("stage")),
                        _td(b.get("rule")),
                        _td(b.get("reason")),
                    ],
                )
            )
    headers = ("Date", "What", "Peer", "Stage", "Rule", "Reason")
    return _table("problems-table", headers, rows, "No refused or aborted rounds.")


def _imports_table(records: Sequence[dict[str, Any]]) -> str:
    rows: list[Row] = []
    for r in records:
        if r["event"] != "signals_imported":
            continue
        b = r["body"]
        rows.append(
            (
                "",
                [
                    _td(display_time(r["time"])),
                    _td(b.get("kind")),
                    _td(b.get("added"), "num"),
                    _td(b.get("already_held"), "num"),
                    _td(b.get("total"), "num"),
                    _hash_td(b.get("source_sha256")),
                ],
            )
        )
    headers = ("Date", "Kind", "Added", "Already held", "Total held", "Source file SHA-256")
    return _table("imports-table", headers, rows, "No imports recorded.")


def _other_events_table(records: Sequence[dict[str, Any]]) -> str:
    elsewhere = ("round_completed", "round_aborted", "round_refused", "signals_imported")
    rows: list[Row] = []
    for r in records:
        if r["event"] in elsewhere:
            continue
        b = r["body"]
        if r["event"] == "checkpoint":
            try:
                cp = parse_checkpoint(b["checkpoint"])
                detail = f"signed checkpoint: {cp.size} records, root {cp.root.hex()[:16]}…"
            except VerificationError:
                detail = "signed checkpoint (unreadable)"
        elif r["event"] == "recovery":
            detail = (
                f"{b.get('bytes')} bytes of a torn last line (a crash mid-write) moved to "
                f"{b.get('quarantine_file')}, SHA-256 {b.get('sha256')}"
            )
        elif r["event"] == "matches_purged":
            detail = f"{b.get('count')} stored matches older than {b.get('before')} deleted"
        elif r["event"] in ("node_started", "node_stopped"):
            detail = f"lab {b.get('lab')}, version {b.get('version')}"
        elif r["event"] == "log_created":
            detail = f"log created; audit key {_key_name(b.get('public_key'))}"
        else:
            detail = encode_canonical(b).decode("utf-8")
        rows.append(
            (
                r["event"],
                [_td(r["seq"], "num"), _td(display_time(r["time"])), _td(r["event"]), _td(detail)],
            )
        )
    return _table("events-table", ("Record", "Date", "Event", "Detail"), rows, "None.")


def _status(report: VerifyReport | None, failure: VerificationError | None) -> str:
    if failure is not None:
        return (
            '<section id="status" class="status failed"><h2>Verification: FAILED</h2>'
            f'<p id="failure"><strong>{esc(failure.diagnostics())}</strong></p>'
            "<p>The log was changed, damaged or cut after it was written, or it does not match "
            "the keys and checkpoints given. Only the records before the failure are shown "
            "below; they verified up to that point. Do not rely on anything after it.</p>"
            "</section>"
        )
    assert report is not None
    items = "".join(f"<li>{esc(line.strip())}</li>" for line in report.summary_lines()[1:])
    return (
        '<section id="status" class="status ok"><h2>Verification: PASSED</h2>'
        f"<p>Every record's signature, the hash chain, the Merkle tree and every checkpoint "
        f"verified.</p><ul>{items}</ul></section>"
    )


def _summary(records: Sequence[dict[str, Any]], rounds: Sequence[RoundView]) -> str:
    events = Counter(r["event"] for r in records)
    by_peer: dict[str, int] = defaultdict(int)
    for r in rounds:
        by_peer[r.peer] += r.completed
    period = (
        f"{display_time(records[0]['time'])} to {display_time(records[-1]['time'])}"
        if records
        else "no records"
    )
    matches: Counter[str] = Counter()
    for r in rounds:
        if r.completed:
            matches.update(r.body.get("intersection_sizes") or {})
    items = [
        ("Period", period),
        ("Records", str(len(records))),
        ("Rounds completed", str(events["round_completed"])),
        ("Rounds aborted", str(events["round_aborted"])),
        ("Connections refused", str(events["round_refused"])),
        ("Completed rounds per peer", counts_text(dict(by_peer)) or "none"),
        ("Shared signals found (all rounds)", counts_text(dict(matches)) or "none"),
    ]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
    return f'<dl class="summary" id="summary">{rows}</dl>'


GUIDE = """
<ul>
<li><strong>Verification</strong>: PASSED means no record was altered, removed, reordered or
added by anyone without the lab's audit key, and the log matches every checkpoint given.
It does not by itself rule out a lab rewriting its whole log with its own key: for that,
reconcile this log with the peer's (<code>crossmatch audit reconcile</code>), or check it
against a checkpoint the peer kept.</li>
<li><strong>Set sizes</strong> are how many fingerprints of each kind each side entered into the
round. <strong>Matches</strong> are how many both sides held: in <em>reveal</em> mode both labs
learn which of their own signals were shared; in <em>count</em> mode only how many.</li>
<li><strong>Policy hash</strong> identifies the consortium policy the round ran under
(hover to see it in full).</li>
<li>The log never holds raw identifiers, prompts or customer data: only kinds, counts, hashes,
lab ids, times and reasons.</li>
</ul>
"""


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
    generated = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>crossmatch audit report: {esc(lab)}</title>",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<style>{STYLE}</style></head><body>",
            f'<header><h1>Audit report: <span id="lab">{esc(lab)}</span></h1>',
            f'<p class="meta">Log <code id="log-id">{esc(log_id)}</code>, file '
            f"<code>{esc(source)}</code> (SHA-256 <code>{esc(source_sha256)}</code>). "
            f"Generated {esc(generated)} by <code>crossmatch audit report</code>.</p></header>",
            _status(report, failure),
            "<section><h2>Summary</h2>",
            _summary(records, rounds),
            "</section>",
            '<section id="chart"><h2>Rounds per peer over time</h2>',
            chart_svg(rounds),
            "</section>",
            '<section id="rounds"><h2>Rounds</h2>',
            _rounds_table(rounds),
            "</section>",
            '<section id="problems"><h2>Refused and aborted rounds</h2>',
            _problems_table(records),
            "</section>",
            '<section id="imports"><h2>Signal imports</h2>',
            _imports_table(records),
            "</section>",
            '<section id="events"><h2>Other events: node, peers, checkpoints, recoveries</h2>',
            _other_events_table(records),
            "</section>",
            f'<section id="guide"><h2>How to read this report</h2>{GUIDE}</section>',
            "</body></html>\n",
        ]
    )


def _key_name(public_key_hex: object) -> str:
    """An audit key as every other place names it (``protocol.identity.key_fingerprint``)."""
    try:
        return key_fingerprint(public_key_from_hex(public_key_hex))
    except VerificationError:
        return "(malformed key)"
