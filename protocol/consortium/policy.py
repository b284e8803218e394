"""The ``[consortium]`` section of the signed policy: who takes part in a >= k round.

Kept apart from protocol/policy.py (which only calls :func:`parse_consortium` and
adds :meth:`ConsortiumPolicy.to_dict` to the canonical encoding when the section is
present, so policies without it keep their hash). Pure: values in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from protocol.errors import InputError, PolicyError
from protocol.fingerprints.identifiers import IDENTIFIER_KIND_ORDER
from protocol.rules import Rule

KNOWN_KINDS: tuple[str, ...] = (*IDENTIFIER_KIND_ORDER, "prompt")
MIN_PARTICIPANTS = 3
MAX_PARTICIPANTS = 64  # counts travel as one byte per position; far above any real ISAC
_LAB = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_KEYS = {"hub", "participants", "k", "kinds", "max_set_size", "reveal_count",
         "interval_seconds", "join_timeout_seconds", "stage_timeout_seconds"}  # fmt: skip
DEFAULT_STAGE_TIMEOUT = 300
_REQUIRED = ("hub", "participants", "k", "kinds", "max_set_size")


@dataclass(frozen=True)
class ConsortiumPolicy:
    """Rules of the consortium round, as signed by the consortium CA."""

    hub: str
    participants: tuple[str, ...]  # also the ring order of re-blinding
    k: int
    kinds: tuple[str, ...]  # in KNOWN_KINDS order: the sections of every set
    max_set_size: int  # per kind, per lab
    reveal_count: bool = False  # False: a lab learns only "held by >= k labs"
    interval_seconds: int = 0  # scheduled rounds; 0 means on demand only
    join_timeout_seconds: int = 120
    # The longest the hub waits, once every lab joined, without a message that moves the
    # round on (each one restarts the clock, so it holds at any set size): a lab that
    # announced more than it sends is cut off after this, not after the round timeout.
    stage_timeout_seconds: int = DEFAULT_STAGE_TIMEOUT

    def to_dict(self) -> dict[str, object]:
        # Present only when set, so the policies signed before it keep their hash.
        stage = {"stage_timeout_seconds": self.stage_timeout_seconds}
        return {
            "hub": self.hub,
            "participants": list(self.participants),
            "k": self.k,
            "kinds": list(self.kinds),
            "max_set_size": self.max_set_size,
            "reveal_count": self.reveal_count,
            "interval_seconds": self.interval_seconds,
            "join_timeout_seconds": self.join_timeout_seconds,
            **(stage if self.stage_timeout_seconds != DEFAULT_STAGE_TIMEOUT else {}),
        }

    def index_of(self, lab: str) -> int:
        """The lab's place in the ring; PolicyError if it is not a participant."""
        try:
            return self.participants.index(lab)
        except ValueError:
            raise PolicyError(
                f"lab {lab!r} is not a participant of the consortium round",
                rule=Rule.CONSORTIUM_NOT_PARTICIPANT,
            ) from None

    def check_sizes(self, lab: str, sizes: tuple[int, ...]) -> None:
        """Refuse a set that is larger than the cap (announced sizes, per kind)."""
        if len(sizes) != len(self.kinds):
            raise PolicyError(
                f"{lab} announced {len(sizes)} kind sizes, the policy has {len(self.kinds)}",
                rule=Rule.CONSORTIUM_KINDS,
            )
        for kind, size in zip(self.kinds, sizes, strict=True):
            if size > self.max_set_size:
                raise PolicyError(
                    f"{lab}'s {kind} set of {size} exceeds the consortium cap of "
                    f"{self.max_set_size}",
                    rule=Rule.MAX_SET_SIZE,
                )


def _fail(message: str) -> InputError:
    return InputError(f"[consortium] {message}", rule=Rule.POLICY_SYNTAX)


def _integer(table: dict[str, Any], key: str, default: int | None, minimum: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_consortium(table: Any) -> ConsortiumPolicy | None:
    """The section as a value (None when absent); InputError naming the problem."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise _fail("must be a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise _fail(f"unknown setting(s): {', '.join(sorted(unknown))}")
    missing = [key for key in _REQUIRED if key not in table]
    if missing:
        raise _fail(f"setting(s) required: {', '.join(missing)}")
    hub, participants = table["hub"], table["participants"]
    if not isinstance(hub, str) or not _LAB.match(hub):
        raise _fail(f"hub must be a lab id, got {hub!r}")
    if not isinstance(participants, list) or not all(
        isinstance(p, str) and _LAB.match(p) for p in participants
    ):
        raise _fail("participants must be a list of lab ids")
    if len(set(participants)) != len(participants) or hub in participants:
        raise _fail("participants must be distinct and must not include the hub")
    if not MIN_PARTICIPANTS <= len(participants) <= MAX_PARTICIPANTS:
        raise _fail(f"needs {MIN_PARTICIPANTS} to {MAX_PARTICIPANTS} participants")
    kinds = table["kinds"]
    if not isinstance(kinds, list) or not kinds or not set(kinds) <= set(KNOWN_KINDS):
        raise _fail(f"kinds must be a non-empty list of {', '.join(KNOWN_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise _fail("a kind is listed twice")
    k = _integer(table, "k", None, 1)
    if k > len(participants):
        raise _fail(f"k = {k} exceeds the {len(participants)} participants")
    reveal = table.get("reveal_count", False)
    if not isinstance(reveal, bool):
        raise _fail("reveal_count must be true or false")
    return ConsortiumPolicy(
        hub=hub,
        participants=tuple(participants),
        k=k,
        kinds=tuple(kind for kind in KNOWN_KINDS if kind in kinds),
        max_set_size=_integer(table, "max_set_size", None, 1),
        reveal_count=reveal,
        interval_seconds=_integer(table, "interval_seconds", 0, 0),
        join_timeout_seconds=_integer(table, "join_timeout_seconds", 120, 1),
        stage_timeout_seconds=_integer(table, "stage_timeout_seconds", DEFAULT_STAGE_TIMEOUT, 1),
    )
