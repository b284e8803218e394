"""Typed audit-event bodies (protocol/audit/events.py): one path to and from a record body."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.audit.canonical import encode_canonical, parse_canonical
from protocol.audit.events import (
    EVENT_TYPES,
    MAX_REASON,
    BodyShapeError,
    CaseDecision,
    RefusalsSummarised,
    RoundAborted,
    RoundRefused,
    body_shape_problem,
)
from protocol.audit.records import EVENT_FIELDS


@pytest.mark.parametrize("event", sorted(EVENT_TYPES))
def test_each_type_requires_exactly_what_the_record_format_requires(event: str) -> None:
    assert EVENT_TYPES[event].required() == EVENT_FIELDS[event]


def aborted(**changes: object) -> RoundAborted:
    body = RoundAborted(
        round_id="0" * 32, role="initiator", peer="lab-b", stage="exchange", reason="peer left"
    )
    return dataclasses.replace(body, **changes)


def test_an_optional_member_left_out_is_absent_and_extra_members_travel() -> None:
    body = aborted(extra={"attempt": 2}).to_body()
    assert "rule" not in body and body["attempt"] == 2
    assert RoundAborted.from_body(body) == aborted(extra={"attempt": 2})
    assert aborted(rule="lab-mismatch").to_body()["rule"] == "lab-mismatch"


def test_extra_may_not_shadow_a_declared_member() -> None:
    with pytest.raises(ValueError, match="shadow"):
        aborted(extra={"peer": "someone else"}).to_body()


def test_a_tuple_is_written_as_a_json_list() -> None:
    decision = CaseDecision(
        case_id="c1",
        decision="confirm",
        analyst="ana",
        state_from="new",
        state_to="confirmed",
        entities=2,
        entities_digest="d",
        entity_hashes=("h1", "h2"),  # type: ignore[arg-type]
    )
    assert encode_canonical(decision.to_body()).count(b'["h1","h2"]') == 1
    assert "note_hmac" not in decision.to_body()


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("round_id", "not-hex"),
        ("role", "observer"),
        ("peer", "x" * 129),
        ("stage", "Exchange!"),
        ("reason", "r" * (MAX_REASON + 1)),
        ("rule", 7),
    ],
)
def test_each_member_of_an_abort_is_checked(member: str, value: object) -> None:
    body = aborted(rule="lab-mismatch").to_body() | {member: value}
    with pytest.raises(BodyShapeError, match=f"member '{member}'"):
        RoundAborted.from_body(body)
    assert body_shape_problem("round_aborted", body) == (
        f"member {member!r} has the wrong type or form"
    )


def test_a_missing_member_is_named() -> None:
    body = RoundRefused(peer="p", claimed_lab="c", reason="r", rule="x").to_body()
    del body["claimed_lab"]
    with pytest.raises(BodyShapeError, match="lacks member 'claimed_lab'"):
        RoundRefused.from_body(body)


def test_events_the_verifier_never_checked_stay_unchecked() -> None:
    # Logs written before typed bodies must still verify: no new shape rules for them.
    assert body_shape_problem("case_decision", {"entities": "two"}) is None


names = st.text(alphabet="abcdefghij-", min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.dictionaries(names, st.integers(0, 10**9), max_size=64),
    total=st.integers(0, 10**9),
    window=st.integers(0, 10**6),
    extra=st.dictionaries(st.sampled_from(["note", "first_seen"]), names, max_size=2),
)
def test_body_and_type_round_trip_through_canonical_json(counts, total, window, extra) -> None:
    typed = RefusalsSummarised(counts=counts, total=total, window_seconds=window, extra=extra)
    line = encode_canonical(typed.to_body())
    assert RefusalsSummarised.from_body(parse_canonical(line)) == typed
    assert encode_canonical(RefusalsSummarised.from_body(parse_canonical(line)).to_body()) == line


def stored_body(event: str) -> dict[str, object]:
    """The golden body of ``event`` (tests/vectors/make_audit_vectors.py typed_bodies)."""
    from tests.vectors.make_audit_vectors import typed_bodies

    return next(b for b in typed_bodies() if b.EVENT == event).to_body()


@pytest.mark.parametrize(
    ("event", "member", "value"),
    [
        ("consortium_completed", "role", "observer"),
        ("consortium_completed", "k", -1),
        ("consortium_completed", "reveal_count", 1),
        ("consortium_completed", "transcript_hash", "not-hex"),
        ("consortium_completed", "own_receipt", "signed"),
        ("consortium_aborted", "reason", "r" * (MAX_REASON + 1)),
        ("consortium_aborted", "hub", "h" * 129),
        ("consortium_aborted", "participants", "lab-a"),
        ("opinions_sent", "count", "3"),
        ("opinions_received", "confirmed", -1),
        ("opinions_refused", "reason", "r" * (MAX_REASON + 1)),
        ("opinions_refused", "rule", 7),
    ],
)
def test_each_member_a_peer_can_influence_is_checked_by_the_verifier(
    event: str, member: str, value: object
) -> None:
    body = stored_body(event)
    assert body_shape_problem(event, body) is None
    assert body_shape_problem(event, body | {member: value}) == (
        f"member {member!r} has the wrong type or form"
    )
