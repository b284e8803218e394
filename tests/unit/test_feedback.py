"""Peer feedback rules: one test per refusal, each changing one thing of a valid batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol.errors import CrossmatchError
from protocol.feedback import MAX_OPINIONS, MIN_SECONDS_BETWEEN, Opinion, check_batch, verdict_of
from protocol.policy_document import parse_policy_toml

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
GOOD = Opinion("r1", "email", b"\x01" * 32, "confirmed")
KNOWN = {("r1", "email", b"\x01" * 32)}


def check(opinions=(GOOD,), *, enabled=True, last=None):
    check_batch(
        list(opinions),
        enabled=enabled,
        known=lambda r, k, f: (r, k, f) in KNOWN,
        last_batch=last,
        now=NOW,
    )


def test_a_valid_batch_passes():
    check()
    check(last=NOW - timedelta(seconds=MIN_SECONDS_BETWEEN))


@pytest.mark.parametrize(
    "change, rule",
    [
        (dict(enabled=False), "feedback-disabled"),
        (dict(opinions=()), "feedback-batch"),
        (dict(opinions=(GOOD,) * (MAX_OPINIONS + 1)), "feedback-batch"),
        (dict(last=NOW - timedelta(seconds=MIN_SECONDS_BETWEEN - 1)), "feedback-rate"),
        (
            dict(opinions=(Opinion("r2", "email", b"\x01" * 32, "confirmed"),)),
            "feedback-unknown-match",
        ),
        (
            dict(opinions=(Opinion("r1", "phone", b"\x01" * 32, "confirmed"),)),
            "feedback-unknown-match",
        ),
        (
            dict(opinions=(Opinion("r1", "email", b"\x02" * 32, "confirmed"),)),
            "feedback-unknown-match",
        ),
        (dict(opinions=(Opinion("r1", "email", b"\x01" * 32, ""),)), "feedback-unknown-match"),
        (
            dict(opinions=(GOOD, Opinion("r1", "email", b"\x02" * 32, "confirmed"))),
            "feedback-unknown-match",
        ),
    ],
)
def test_each_rule_refuses(change, rule):
    with pytest.raises(CrossmatchError) as caught:
        check(**change)
    assert caught.value.rule == rule


def test_only_decided_cases_give_opinions():
    assert verdict_of("confirmed") == "confirmed"
    assert verdict_of("false_positive") == "false_positive"
    for state in ("new", "in_review", "benign", "expired"):
        with pytest.raises(CrossmatchError):
            verdict_of(state)


POLICY = """policy_id = "p"
version = 1
purpose = "test"
not_before = 2026-01-01T00:00:00Z
not_after = 2027-01-01T00:00:00Z
[kinds.email]
max_set_size = 10
"""


def test_policy_switch_is_off_by_default_and_keeps_the_hash():
    off = parse_policy_toml(POLICY)
    on = parse_policy_toml(
        POLICY.replace('purpose = "test"', 'purpose = "test"\npeer_feedback = true')
    )
    assert not off.peer_feedback and on.peer_feedback
    assert "peer_feedback" not in off.to_dict() and on.hash() != off.hash()
    with pytest.raises(CrossmatchError, match="true or false"):
        parse_policy_toml(POLICY.replace('purpose = "test"', 'purpose = "test"\npeer_feedback = 1'))
