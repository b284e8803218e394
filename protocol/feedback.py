"""Peer feedback: telling a peer "confirmed" or "false positive" about signals both learned.

An opinion names a match of a completed reveal round between the two labs by its
round id, kind and fingerprint: values the receiving peer already holds for that
very round, so an opinion tells it nothing about a signal it did not learn. The
receiver accepts a batch only if

- the signed policy sets ``peer_feedback`` (``feedback-disabled``),
- the batch is not empty and holds at most :data:`MAX_OPINIONS` (``feedback-batch``),
- the same peer sent none in the last :data:`MIN_SECONDS_BETWEEN` (``feedback-rate``),
- every opinion has a known verdict and is one of its own matches of a reveal round
  with that peer (``feedback-unknown-match``; one bad opinion refuses the batch).

Pure: the caller passes its matches, the time and the last batch's time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from protocol.errors import PolicyError, ProtocolError
from protocol.rules import Rule

VERDICTS = ("confirmed", "false_positive")
MAX_OPINIONS = 1000
MIN_SECONDS_BETWEEN = 60
# A decided case's state and the opinion it gives.
VERDICT_OF_STATE = {"confirmed": "confirmed", "false_positive": "false_positive"}


@dataclass(frozen=True)
class Opinion:
    round_id: str
    kind: str
    fingerprint: bytes
    verdict: str


def verdict_of(state: str) -> str:
    """The opinion a case in ``state`` gives; PolicyError for an undecided or benign case."""
    if state not in VERDICT_OF_STATE:
        raise PolicyError(
            f"a case that is {state} gives no opinion: confirm it or dismiss it "
            "as a false positive first",
            rule=Rule.CASE_TRANSITION,
        )
    return VERDICT_OF_STATE[state]


def check_batch(
    opinions: Sequence[Opinion],
    *,
    enabled: bool,
    known: Callable[[str, str, bytes], bool],
    last_batch: datetime | None,
    now: datetime,
) -> None:
    """Raise naming the first rule the batch breaks; ``known(round, kind, fp)`` says whether
    that is one of our matches of a reveal round with the sender."""
    if not enabled:
        raise PolicyError(
            "the consortium policy does not allow peer feedback", rule=Rule.FEEDBACK_DISABLED
        )
    if not opinions or len(opinions) > MAX_OPINIONS:
        raise ProtocolError(
            f"an opinion batch holds 1 to {MAX_OPINIONS} opinions, not {len(opinions)}",
            rule=Rule.FEEDBACK_BATCH,
        )
    if last_batch is not None and (now - last_batch).total_seconds() < MIN_SECONDS_BETWEEN:
        raise PolicyError(
            f"at most one opinion batch per {MIN_SECONDS_BETWEEN} s", rule=Rule.FEEDBACK_RATE
        )
    for index, one in enumerate(opinions):
        if one.verdict not in VERDICTS or not known(one.round_id, one.kind, one.fingerprint):
            raise ProtocolError(
                f"opinion {index} is not about a match of a reveal round between us",
                rule=Rule.FEEDBACK_UNKNOWN_MATCH,
            )
