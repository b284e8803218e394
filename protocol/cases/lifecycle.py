"""Review states of a case and which decision may move it where.

    new -> in_review -> confirmed | false_positive | benign
    any decided state -> new     when new matches arrive (re-opened by the node)
    any state -> expired         when its last match is older than the policy's retention
    any state -> merged          when its cluster joined another case's

A note never changes the state. Analysts' names are short printable text.
"""

from __future__ import annotations

import re

from protocol.errors import InputError
from protocol.rules import Rule

STATES = ("new", "in_review", "confirmed", "false_positive", "benign", "expired", "merged")
DECIDED = frozenset({"confirmed", "false_positive", "benign"})
DECISIONS = ("review", "confirm", "false_positive", "benign", "note")
_TARGET = {
    "review": "in_review",
    "confirm": "confirmed",
    "false_positive": "false_positive",
    "benign": "benign",
}
_ANALYST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
MAX_NOTE_CHARS = 4000


def next_state(current: str, decision: str) -> str:
    """The state after ``decision``; InputError (rule case-transition) if not allowed."""
    if decision not in DECISIONS:
        raise InputError(
            f"unknown decision {decision!r} (known: {', '.join(DECISIONS)})",
            rule=Rule.CASE_TRANSITION,
        )
    if decision == "note":
        return current
    if current in ("expired", "merged"):
        raise InputError(f"a case that is {current} takes notes only", rule=Rule.CASE_TRANSITION)
    target = _TARGET[decision]
    if current == target:
        raise InputError(f"the case is already {current}", rule=Rule.CASE_TRANSITION)
    return target


def check_analyst(name: str) -> str:
    if not isinstance(name, str) or not _ANALYST.match(name):
        raise InputError(
            "analyst name must be 1-64 letters, digits, spaces or ._@- "
            "starting with a letter or digit",
            rule=Rule.CASE_ANALYST,
        )
    return name


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE_CHARS:
        raise InputError(f"a note is at most {MAX_NOTE_CHARS} characters", rule=Rule.CASE_NOTE)
    if any(ord(c) < 32 and c not in "\n\t" for c in note):
        raise InputError("a note may not hold control characters", rule=Rule.CASE_NOTE)
    return note
