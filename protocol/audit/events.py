"""Typed audit-event bodies: one frozen dataclass per event kind, one way to and from JSON.

A writer builds ``CaseDecision(...)`` and appends ``body.to_body()`` (``Node.record``
does both); the verifier reads a body back with ``from_body``, which checks every member
it declares (``member(check)``) in declaration order and names the first that is wrong.
The format is the one the golden vectors in tests/vectors/audit/ fix: members are the
dataclass fields, an optional member left as None is absent, and members a type does not
declare travel in ``extra`` (the format may grow; a reader keeps what it does not know).

Which members must be present is ``records.EVENT_FIELDS``; a unit test keeps each type's
required fields equal to it. Text a peer can influence is bounded here (``MAX_REASON``,
``MAX_NAME``): a record quotes a peer, it never carries what the peer sent in full.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

MAX_REASON = 4096
MAX_NAME = 128
ROLES = ("initiator", "responder")
_ROUND_ID = re.compile(r"^[0-9a-f]{32}$")
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_WORD = re.compile(r"^[a-z][a-z_-]{0,31}$")  # a stage: open, connect, exchange, receipt

Check = Callable[[Any], bool]


class BodyShapeError(ValueError):
    """A body member is missing or has the wrong type or form (the message names it)."""


# --- member checks ------------------------------------------------------------------------------


def anything(value: Any) -> bool:
    return True


def text(limit: int = MAX_NAME) -> Check:
    return lambda value: isinstance(value, str) and len(value) <= limit


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def matches(pattern: re.Pattern[str]) -> Check:
    return lambda value: isinstance(value, str) and pattern.match(value) is not None


def one_of(*choices: str) -> Check:
    return lambda value: value in choices


def str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(k, str) for k in value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_counts(value: Any) -> bool:
    """A map of names to non-negative integers (sizes per kind)."""
    return isinstance(value, dict) and all(is_count(n) for n in value.values())


def is_bounded_counts(value: Any) -> bool:
    """``is_counts`` with at most 64 names of at most 256 characters (peer-influenced rules)."""
    return (
        isinstance(value, dict)
        and len(value) <= 64
        and all(text(256)(k) and is_count(v) for k, v in value.items())
    )


def is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def member(check: Check = anything, *, optional: bool = False) -> Any:
    """A body member checked by ``check``; ``optional`` ones default to None (then absent)."""
    if optional:
        return field(default=None, metadata={"check": check, "optional": True})
    return field(metadata={"check": check})


# --- the one path to and from a body -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EventBody:
    """Base of every typed body; ``EVENT`` is the record's ``event``."""

    EVENT: ClassVar[str] = ""
    extra: Mapping[str, Any] = field(default_factory=dict, metadata={"extra": True})

    @classmethod
    def members(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if not f.metadata.get("extra")]

    @classmethod
    def required(cls) -> frozenset[str]:
        return frozenset(f.name for f in cls.members() if not f.metadata.get("optional"))

    def to_body(self) -> dict[str, Any]:
        """The record body: declared members (an optional None left out), then ``extra``."""
        body: dict[str, Any] = {}
        for f in self.members():
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            body[f.name] = list(value) if isinstance(value, tuple) else value
        clash = sorted(body.keys() & self.extra.keys())
        if clash:
            raise ValueError(f"{self.EVENT}: extra members {clash} shadow declared ones")
        return {**body, **self.extra}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """The typed body; BodyShapeError naming the first missing or malformed member."""
        values: dict[str, Any] = {}
        for f in cls.members():
            if f.name not in body:
                if not f.metadata.get("optional"):
                    raise BodyShapeError(f"lacks member {f.name!r}")
                continue
            if not f.metadata["check"](body[f.name]):
                raise BodyShapeError(f"member {f.name!r} has the wrong type or form")
            values[f.name] = body[f.name]
        declared = {f.name for f in cls.members()}
        extra = {k: v for k, v in body.items() if k not in declared}
        return cls(**values, extra=extra)


def shape_problem(body_type: type[EventBody], body: Mapping[str, Any]) -> str | None:
    """What ``from_body`` would refuse in ``body``, or None."""
    try:
        body_type.from_body(body)
    except BodyShapeError as e:
        return str(e)
    return None


# --- rounds (written by node/net/recorder.py and node/net/refusals.py) ---------------------------


@dataclass(frozen=True, kw_only=True)
class RoundCompleted(EventBody):
    EVENT: ClassVar[str] = "round_completed"
    round_id: str = member(is_str)
    peer: str = member(is_str)
    role: str = member(one_of(*ROLES))
    mode: str = member(is_str)
    kinds: list[str] = member(str_list)
    own_sizes: dict[str, int] = member(is_counts)
    peer_sizes: dict[str, int] = member(is_counts)
    intersection_sizes: dict[str, int] = member(is_counts)
    transcript_hash: str = member(matches(_HEX32))
    own_receipt: dict[str, Any] = member(is_dict)
    peer_receipt: dict[str, Any] = member(is_dict)
    policy_hash: str = member()
    own_commitment: str = member()
    peer_commitment: str = member()


@dataclass(frozen=True, kw_only=True)
class RoundAborted(EventBody):
    EVENT: ClassVar[str] = "round_aborted"
    round_id: str = member(matches(_ROUND_ID))
    role: str = member(one_of(*ROLES))
    peer: str = member(text())
    stage: str = member(matches(_WORD))
    reason: str = member(text(MAX_REASON))
    rule: str | None = member(text(), optional=True)


@dataclass(frozen=True, kw_only=True)
class RoundRefused(EventBody):
    EVENT: ClassVar[str] = "round_refused"
    peer: str = member(text())
    claimed_lab: str = member(text())
    reason: str = member(text(MAX_REASON))
    rule: str = member(text())


@dataclass(frozen=True, kw_only=True)
class RefusalsSummarised(EventBody):
    EVENT: ClassVar[str] = "refusals_summarised"
    counts: dict[str, int] = member(is_bounded_counts)
    total: int = member(is_count)
    window_seconds: int = member(is_count)


# --- the node's own life and data ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NodeStarted(EventBody):
    EVENT: ClassVar[str] = "node_started"
    lab: str = member(is_str)
    version: str = member(is_str)
    address: str | None = member(is_str, optional=True)


@dataclass(frozen=True, kw_only=True)
class NodeStopped(EventBody):
    EVENT: ClassVar[str] = "node_stopped"
    lab: str = member(is_str)
    version: str = member(is_str)
    role: str | None = member(is_str, optional=True)  # "hub" for a consortium hub


@dataclass(frozen=True, kw_only=True)
class SignalsImported(EventBody):
    EVENT: ClassVar[str] = "signals_imported"
    kind: str = member(is_str)
    added: int = member(is_count)
    already_held: int = member(is_count)
    total: int = member(is_count)
    source_sha256: str = member(is_str)


@dataclass(frozen=True, kw_only=True)
class MatchesPurged(EventBody):
    EVENT: ClassVar[str] = "matches_purged"
    before: str = member(is_str)
    count: int = member(is_count)
    retention_days: int | None = member(is_count, optional=True)
    policy_hash: str | None = member(is_str, optional=True)


@dataclass(frozen=True, kw_only=True)
class EntitiesPurged(EventBody):
    EVENT: ClassVar[str] = "entities_purged"
    before: str = member(is_str)
    entities: int = member(is_count)
    links: int = member(is_count)
    retention_days: int | None = member(is_count, optional=True)
    policy_hash: str | None = member(is_str, optional=True)


@dataclass(frozen=True, kw_only=True)
class WarninglistInstalled(EventBody):
    EVENT: ClassVar[str] = "warninglist_installed"
    list: str = member(is_str)
    list_hash: str = member(is_str)
    held_back: int = member(is_count)


# --- cases and what acts on them (docs/cases.md) -------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CaseDecision(EventBody):
    EVENT: ClassVar[str] = "case_decision"
    case_id: str = member(is_str)
    decision: str = member(is_str)
    analyst: str = member(is_str)
    state_from: str = member(is_str)
    state_to: str = member(is_str)
    entities: int = member(is_count)
    entities_digest: str = member(is_str)
    entity_hashes: list[str] = member(str_list)
    note_hmac: str | None = member(is_str, optional=True)


@dataclass(frozen=True, kw_only=True)
class HookDelivery(EventBody):
    EVENT: ClassVar[str] = "hook_delivery"
    hook: str = member(is_str)
    case_id: str = member(is_str)
    state: str = member(is_str)
    idempotency_key: str = member(is_str)
    payload_sha256: str = member(is_str)
    outcome: str = member(is_str)
    attempts: int = member(is_count)
    transport: str | None = member(is_str, optional=True)
    values: str | None = member(is_str, optional=True)
    status: int | None = member(is_int, optional=True)
    error: str | None = member(is_str, optional=True)


@dataclass(frozen=True, kw_only=True)
class ExportWritten(EventBody):
    EVENT: ClassVar[str] = "export_written"
    format: str = member(is_str)
    values: str = member(is_str)
    tlp: str = member(is_str)
    objects: int = member(is_count)
    sha256: str = member(is_str)
    pap: str | None = member(is_str, optional=True)
    peer: str | None = member(is_str, optional=True)
    case_id: str | None = member(is_str, optional=True)
    signals: int | None = member(is_count, optional=True)


@dataclass(frozen=True, kw_only=True)
class UiAction(EventBody):
    EVENT: ClassVar[str] = "ui_action"
    analyst: str = member(is_str)
    action: str = member(is_str)
    case_id: str = member(is_str)
    via: str | None = member(is_str, optional=True)


EVENT_TYPES: dict[str, type[EventBody]] = {
    t.EVENT: t
    for t in (
        RoundCompleted,
        RoundAborted,
        RoundRefused,
        RefusalsSummarised,
        NodeStarted,
        NodeStopped,
        SignalsImported,
        MatchesPurged,
        EntitiesPurged,
        WarninglistInstalled,
        CaseDecision,
        HookDelivery,
        ExportWritten,
        UiAction,
    )
}

# The bodies the verifier checks beyond their required members: every event a peer can
# cause. Other types are for writers and readers; their members were never checked by
# verify, so checking them now would refuse logs written before (their format is kept).
VERIFIED_SHAPES: tuple[type[EventBody], ...] = (
    RoundCompleted,
    RoundAborted,
    RoundRefused,
    RefusalsSummarised,
)


def body_shape_problem(event: str, body: Mapping[str, Any]) -> str | None:
    """What is wrong with the body of ``event`` (required members present), or None."""
    body_type = next((t for t in VERIFIED_SHAPES if t.EVENT == event), None)
    return None if body_type is None else shape_problem(body_type, body)
