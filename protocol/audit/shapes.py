"""Shapes of the audit bodies the verifier checks beyond their required members.

``round_completed`` is checked in ``round_checks.round_body_problem`` (receipts and
all); these are the other events a peer can cause: aborted and refused rounds
and the periodic summary of refusals not recorded one by one. Text members are
bounded: a record quotes a peer, it never carries what the peer sent in full.
"""

from __future__ import annotations

import re
from typing import Any

MAX_REASON = 4096
MAX_NAME = 128
ROLES = ("initiator", "responder")
_ID = re.compile(r"^[0-9a-f]{32}$")
_WORD = re.compile(r"^[a-z][a-z_-]{0,31}$")  # a stage: open, connect, exchange, receipt


def _text(value: Any, limit: int = MAX_NAME) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _aborted(body: dict[str, Any]) -> list[tuple[str, bool]]:
    return [
        ("round_id", isinstance(body["round_id"], str) and bool(_ID.match(body["round_id"]))),
        ("role", body["role"] in ROLES),
        ("peer", _text(body["peer"])),
        ("stage", isinstance(body["stage"], str) and bool(_WORD.match(body["stage"]))),
        ("reason", _text(body["reason"], MAX_REASON)),
        ("rule", "rule" not in body or _text(body["rule"])),
    ]


def _refused(body: dict[str, Any]) -> list[tuple[str, bool]]:
    return [
        ("peer", _text(body["peer"])),
        ("claimed_lab", _text(body["claimed_lab"])),
        ("reason", _text(body["reason"], MAX_REASON)),
        ("rule", _text(body["rule"])),
    ]


def _summarised(body: dict[str, Any]) -> list[tuple[str, bool]]:
    counts = body["counts"]
    return [
        ("counts", isinstance(counts, dict) and len(counts) <= 64
            and all(_text(k, 256) and _count(v) for k, v in counts.items())),
        ("total", _count(body["total"])),
        ("window_seconds", _count(body["window_seconds"])),
    ]  # fmt: skip


SHAPES = {"round_aborted": _aborted, "round_refused": _refused, "refusals_summarised": _summarised}


def body_shape_problem(event: str, body: dict[str, Any]) -> str | None:
    """What is wrong with the body of ``event`` (required members present), or None."""
    shape = SHAPES.get(event)
    if shape is None:
        return None
    for name, ok in shape(body):
        if not ok:
            return f"member {name!r} has the wrong type or form"
    return None
