"""The report's chart: rounds per peer per time bucket, as numbers a template draws.

Stacked bars per bucket (hour, day, week, month or year, whichever gives at most 48),
one colour per peer, aborted rounds in a paler shade on top of the completed ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from protocol.audit.records import parse_time

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LEFT, PLOT_H, PAD_TOP = 48, 220, 16


@dataclass(frozen=True)
class Point:
    """A round as the chart sees it."""

    time: str
    peer: str
    completed: bool


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


def _buckets(times: Sequence[datetime]) -> tuple[list[datetime], str]:
    size, label_format = _bucket_size(min(times), max(times))
    buckets: list[datetime] = []
    start = _bucket_start(min(times), size)
    while start <= max(times):
        buckets.append(start)
        start = _next_bucket(start, size)
    return buckets, label_format


def chart(points: Sequence[Point]) -> dict[str, Any] | None:
    """Everything the template draws, coordinates already formatted; None without rounds."""
    if not points:
        return None
    times = [parse_time(p.time) for p in points]
    buckets, label_format = _buckets(times)
    labels = [b.strftime(label_format) for b in buckets]
    peers = sorted({p.peer for p in points})
    colour = {peer: PALETTE[i % len(PALETTE)] for i, peer in enumerate(peers)}
    counts: Counter[tuple[int, str, bool]] = Counter()
    for p, when in zip(points, times, strict=True):
        counts[(max(i for i, b in enumerate(buckets) if b <= when), p.peer, p.completed)] += 1
    totals = [sum(n for (i, _, _), n in counts.items() if i == b) for b in range(len(buckets))]
    top = max(totals) or 1
    plot_w = max(360, 28 * len(buckets))
    width, height = LEFT + plot_w + 160, PAD_TOP + PLOT_H + 70
    bar_w, scale = plot_w / len(buckets), PLOT_H / top
    step = max(1, len(buckets) // 8)
    return {
        "width": width,
        "height": height,
        "plot_right": LEFT + plot_w,
        "baseline": PAD_TOP + PLOT_H,
        "mid": f"{PAD_TOP + PLOT_H / 2:.1f}",
        "grid": _grid(top, scale),
        "bars": _bars(buckets, labels, peers, colour, counts, bar_w, scale),
        "xlabels": [
            {"x": f"{LEFT + (b + 0.5) * bar_w:.1f}", "text": labels[b]}
            for b in range(0, len(buckets), step)
        ],
        "legend": [
            {"y": PAD_TOP + 8 + 20 * i, "fill": colour[peer], "peer": peer}
            for i, peer in enumerate(peers)
        ],
        "pale_y": PAD_TOP + 8 + 20 * len(peers),
    }


def _grid(top: int, scale: float) -> list[dict[str, Any]]:
    ticks = range(top + 1) if top <= 6 else sorted({0, top // 2, top})
    return [
        {
            "y": f"{PAD_TOP + PLOT_H - t * scale:.1f}",
            "ty": f"{PAD_TOP + PLOT_H - t * scale + 4:.1f}",
            "tick": t,
        }
        for t in ticks
    ]


def _bars(
    buckets: Sequence[datetime],
    labels: Sequence[str],
    peers: Sequence[str],
    colour: dict[str, str],
    counts: Counter[tuple[int, str, bool]],
    bar_w: float,
    scale: float,
) -> list[dict[str, Any]]:
    bars = []
    for b in range(len(buckets)):
        y = float(PAD_TOP + PLOT_H)
        x = LEFT + b * bar_w + bar_w * 0.15
        for completed in (True, False):
            for peer in peers:
                n = counts.get((b, peer, completed), 0)
                if not n:
                    continue
                h = n * scale
                y -= h
                state = "completed" if completed else "aborted"
                bars.append(
                    {
                        "x": f"{x:.1f}",
                        "y": f"{y:.1f}",
                        "w": f"{bar_w * 0.7:.1f}",
                        "h": f"{h:.1f}",
                        "fill": colour[peer],
                        "opacity": 1 if completed else 0.35,
                        "peer": peer,
                        "count": n,
                        "state": state,
                        "bucket": labels[b],
                        "label": f"{labels[b]}: {n} {state} round(s) with {peer}",
                    }
                )
    return bars
