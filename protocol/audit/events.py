"""Typed audit-event bodies: one frozen dataclass per event kind (event_body.py is the one
way to and from JSON; the bodies of cases and what acts on them are in case_events.py).

A writer builds ``RoundAborted(...)`` and appends ``body.to_body()`` (``Node.record``
does both); the verifier reads a body back with ``from_body`` (``body_shape_problem``).
The format is the one the golden vectors in tests/vectors/audit/ fix. Which members must
be present is ``records.EVENT_FIELDS``; a unit test keeps each type's required fields
equal to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from protocol.audit.case_events import (
    CaseDecision,
    CaseReopened,
    ExportWritten,
    HookDelivery,
    UiAction,
)
from protocol.audit.event_body import (
    HEX32_RE,
    MAX_NAME,
    MAX_REASON,
    ROLES,
    ROUND_ID_RE,
    WORD_RE,
    BodyShapeError,
    EventBody,
    is_bool,
    is_bounded_counts,
    is_count,
    is_counts,
    is_dict,
    is_str,
    matches,
    member,
    one_of,
    shape_problem,
    str_list,
    text,
)

CONSORTIUM_ROLES = ("participant", "hub")

# Read from here by writers and tests, defined in event_body.py:
__all__ = ["MAX_NAME", "MAX_REASON", "BodyShapeError", "EventBody", "shape_problem"]


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
    transcript_hash: str = member(matches(HEX32_RE))
    own_receipt: dict[str, Any] = member(is_dict)
    peer_receipt: dict[str, Any] = member(is_dict)
    policy_hash: str = member()
    own_commitment: str = member()
    peer_commitment: str = member()


@dataclass(frozen=True, kw_only=True)
class RoundAborted(EventBody):
    EVENT: ClassVar[str] = "round_aborted"
    round_id: str = member(matches(ROUND_ID_RE))
    role: str = member(one_of(*ROLES))
    peer: str = member(text())
    stage: str = member(matches(WORD_RE))
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
    role: str | None = member(is_str, optional=True)  # "hub" for a consortium hub


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


# --- the log's own records (node/state/auditlog.py) ----------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LogCreated(EventBody):
    EVENT: ClassVar[str] = "log_created"
    log_id: str = member(is_str)
    public_key: str = member(is_str)
    record_format: str = member(is_str)


@dataclass(frozen=True, kw_only=True)
class CheckpointRecorded(EventBody):
    EVENT: ClassVar[str] = "checkpoint"
    checkpoint: str = member(is_str)  # the signed note (protocol/audit/checkpoint.py)


@dataclass(frozen=True, kw_only=True)
class LogResumed(EventBody):
    EVENT: ClassVar[str] = "log_resumed"
    error: str = member(is_str)


@dataclass(frozen=True, kw_only=True)
class Recovery(EventBody):
    """A torn tail moved aside at open: where it was, how long, and its hash."""

    EVENT: ClassVar[str] = "recovery"
    quarantine_file: str = member(is_str)
    offset: int = member(is_count)
    bytes: int = member(is_count)
    sha256: str = member(is_str)


# --- consortium rounds (node/consortium/client.py for a participant, hub_service.py) ------------


@dataclass(frozen=True, kw_only=True)
class ConsortiumCompleted(EventBody):
    """A participant keeps its own receipt and the hub's; the hub keeps every lab's both."""

    EVENT: ClassVar[str] = "consortium_completed"
    round_id: str = member(text())
    role: str = member(one_of(*CONSORTIUM_ROLES))
    hub: str = member(text())
    participants: list[str] = member(str_list)
    policy_hash: str = member(is_str)
    k: int = member(is_count)
    reveal_count: bool = member(is_bool)
    kinds: list[str] = member(str_list)
    sizes: dict[str, dict[str, int]] = member(is_dict)
    result_counts: dict[str, Any] = member(is_dict)  # per kind; the hub's: per lab, per kind
    transcript_hash: str = member(matches(HEX32_RE))
    own_receipt: dict[str, Any] | None = member(is_dict, optional=True)
    hub_receipt: dict[str, Any] | None = member(is_dict, optional=True)
    lab_receipts: dict[str, Any] | None = member(is_dict, optional=True)
    hub_receipts: dict[str, Any] | None = member(is_dict, optional=True)


@dataclass(frozen=True, kw_only=True)
class ConsortiumAborted(EventBody):
    EVENT: ClassVar[str] = "consortium_aborted"
    round_id: str = member(text())  # "" when the round ended before its header
    role: str = member(one_of(*CONSORTIUM_ROLES))
    hub: str = member(text())
    stage: str = member(text())
    reason: str = member(text(MAX_REASON))
    rule: str = member(text())
    participants: list[str] | None = member(str_list, optional=True)  # the hub's record


# --- opinions on matches (node/net/feedback.py) ------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OpinionsSent(EventBody):
    EVENT: ClassVar[str] = "opinions_sent"
    peer: str = member(text())
    count: int = member(is_count)
    case_id: str = member(text())
    confirmed: int | None = member(is_count, optional=True)
    false_positive: int | None = member(is_count, optional=True)


@dataclass(frozen=True, kw_only=True)
class OpinionsReceived(EventBody):
    EVENT: ClassVar[str] = "opinions_received"
    peer: str = member(text())
    count: int = member(is_count)
    confirmed: int | None = member(is_count, optional=True)
    false_positive: int | None = member(is_count, optional=True)


@dataclass(frozen=True, kw_only=True)
class OpinionsRefused(EventBody):
    EVENT: ClassVar[str] = "opinions_refused"
    peer: str = member(text())
    count: int = member(is_count)
    reason: str = member(text(MAX_REASON))
    rule: str = member(text())  # "" when the error named none


# --- what an operator installs (node/cli/nodes.py, policy.py) ------------------------------------


@dataclass(frozen=True, kw_only=True)
class NodeInitialized(EventBody):
    EVENT: ClassVar[str] = "node_initialized"
    lab: str = member(is_str)


@dataclass(frozen=True, kw_only=True)
class PeerAdded(EventBody):
    EVENT: ClassVar[str] = "peer_added"
    lab: str = member(is_str)
    address: str = member(is_str)


@dataclass(frozen=True, kw_only=True)
class PolicyInstalled(EventBody):
    EVENT: ClassVar[str] = "policy_installed"
    policy_id: str = member(is_str)
    version: int = member(is_count)
    policy_hash: str = member(is_str)
    not_after: str = member(is_str)


@dataclass(frozen=True, kw_only=True)
class CrlInstalled(EventBody):
    EVENT: ClassVar[str] = "crl_installed"
    crl_number: int = member(is_count)
    revoked: int = member(is_count)


@dataclass(frozen=True, kw_only=True)
class EntitiesImported(EventBody):
    EVENT: ClassVar[str] = "entities_imported"
    added: int = member(is_count)
    updated: int = member(is_count)
    held_back: int = member(is_count)
    source_sha256: str = member(is_str)


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
        LogCreated,
        CheckpointRecorded,
        LogResumed,
        Recovery,
        ConsortiumCompleted,
        ConsortiumAborted,
        OpinionsSent,
        OpinionsReceived,
        OpinionsRefused,
        NodeInitialized,
        PeerAdded,
        PolicyInstalled,
        CrlInstalled,
        EntitiesImported,
        CaseReopened,
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
    ConsortiumCompleted,
    ConsortiumAborted,
    OpinionsSent,
    OpinionsReceived,
    OpinionsRefused,
)


def body_shape_problem(event: str, body: Mapping[str, Any]) -> str | None:
    """What is wrong with the body of ``event`` (required members present), or None."""
    body_type = next((t for t in VERIFIED_SHAPES if t.EVENT == event), None)
    return None if body_type is None else shape_problem(body_type, body)
