"""Server-rendered SVG for the review UI: bar charts and a case's cluster diagram.

No scripts and no style attributes (the UI's Content-Security-Policy allows neither):
colours are presentation attributes, the rest is classes styled by ui.css. Every
label is escaped; analysts' data is input like any other.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from node.ops.report_chart import PALETTE

MAX_DIAGRAM_ACCOUNTS = 24
MAX_DIAGRAM_SIGNALS = 24


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def bar_chart(chart_id: str, title: str, counts: Mapping[str, int], *, unit: str) -> str:
    """Horizontal bars, one per label, biggest first."""
    if not counts:
        return f'<p class="empty" id="{esc(chart_id)}-empty">Nothing yet.</p>'
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = max(n for _, n in items) or 1
    label_w, bar_w, row_h = 150, 320, 26
    width, height = label_w + bar_w + 70, row_h * len(items) + 10
    parts = [
        f'<svg id="{esc(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{esc(chart_id)}-title">',
        f'<title id="{esc(chart_id)}-title">{esc(title)}</title>',
    ]
    for i, (label, n) in enumerate(items):
        y = 5 + i * row_h
        w = max(2.0, bar_w * n / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="tick">{esc(label)}'
            f'</text><rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="18" '
            f'fill="{PALETTE[i % len(PALETTE)]}" data-label="{esc(label)}" data-count="{n}">'
            f"<title>{esc(label)}: {n} {esc(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" class="tick">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


_COLUMN_X = {"account": 150, "signal": 420, "peer": 650}
_ROW = 22
_DIAGRAM_WIDTH = 760
Position = dict[tuple[str, str], tuple[float, float]]


def cluster_diagram(accounts: Sequence[str], links: Sequence[tuple[str, str, str]]) -> str:
    """Our accounts (left), the signals of theirs that matched (middle, by kind), and the
    peers that hold them (right). ``links`` are (account, "kind: value", peer)."""
    shown_accounts = list(dict.fromkeys(accounts))[:MAX_DIAGRAM_ACCOUNTS]
    signals = list(dict.fromkeys(s for a, s, _ in links if a in shown_accounts))
    signals = signals[:MAX_DIAGRAM_SIGNALS]
    peers = sorted({p for a, s, p in links if a in shown_accounts and s in signals})
    if not shown_accounts:
        return '<p class="empty" id="cluster-empty">No accounts in this case.</p>'
    columns = {"account": shown_accounts, "signal": signals, "peer": peers}
    height = 30 + _ROW * max(len(shown_accounts), len(signals), len(peers), 1)
    pos = _layout(columns, height)
    width = _DIAGRAM_WIDTH
    parts = [
        f'<svg id="cluster" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="cluster-title"><title id="cluster-title">Accounts, matched '
        "signals and peers of this case</title>",
        *_edges(links, pos),
        *_nodes(pos),
    ]
    more = len(set(accounts)) - len(shown_accounts)
    if more > 0:
        parts.append(
            f'<text class="tick" x="10" y="{height - 4}">and {more} more account(s)</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _layout(columns: dict[str, list[str]], height: int) -> Position:
    """Each column's labels spread evenly down the diagram, in order."""
    pos: Position = {}
    for group, labels in columns.items():
        for i, label in enumerate(labels):
            pos[group, label] = (_COLUMN_X[group], 20 + (height - 30) * (i + 0.5) / len(labels))
    return pos


def _edges(links: Sequence[tuple[str, str, str]], pos: Position) -> list[str]:
    parts = []
    for a, s, p in links:
        if ("account", a) in pos and ("signal", s) in pos:
            (x1, y1), (x2, y2), (x3, y3) = pos["account", a], pos["signal", s], pos["peer", p]
            parts.append(
                f'<line class="edge" x1="{x1}" y1="{y1:.1f}" x2="{x2}" y2="{y2:.1f}"/>'
                f'<line class="edge peer" x1="{x2}" y1="{y2:.1f}" x2="{x3}" '
                f'y2="{y3:.1f}"/>'
            )
    return parts


def _nodes(pos: Position) -> list[str]:
    parts = []
    for (group, label), (x, y) in pos.items():
        anchor, dx = {"account": ("end", -10), "signal": ("middle", 0), "peer": ("start", 10)}[
            group
        ]
        dy = -8 if group == "signal" else 4
        parts.append(
            f'<circle class="node {group}" cx="{x}" cy="{y:.1f}" r="6">'
            f'<title>{esc(label)}</title></circle><text class="tick" x="{x + dx}" '
            f'y="{y + dy:.1f}" text-anchor="{anchor}">{esc(_short(label))}</text>'
        )
    return parts


def _short(label: str, limit: int = 34) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
