"""Typed audit bodies of cases and what acts on them (docs/cases.md): analysts' decisions,
reopened cases, enforcement hooks, exports and review-UI actions. Listed with every other
type in events.EVENT_TYPES."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.audit.event_body import EventBody, is_count, is_int, is_str, member, str_list


@dataclass(frozen=True, kw_only=True)
class CaseReopened(EventBody):
    EVENT: ClassVar[str] = "case_reopened"
    case_id: str = member(is_str)
    state_from: str = member(is_str)
    new_pairs: int = member(is_count)


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
