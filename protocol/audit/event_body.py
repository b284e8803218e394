"""The one path to and from an audit-event body: ``EventBody`` and its member checks.

A type (events.py) declares each member with ``member(check)``; ``to_body`` writes the
declared members (an optional one left as None is absent), then ``extra``; ``from_body``
checks every declared member in declaration order and names the first that is wrong, and
keeps members it does not declare in ``extra`` (the format may grow; a reader keeps what
it does not know). Text a peer can influence is bounded (``MAX_REASON``, ``MAX_NAME``).
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
ROUND_ID_RE = re.compile(r"^[0-9a-f]{32}$")
HEX32_RE = re.compile(r"^[0-9a-f]{64}$")
WORD_RE = re.compile(r"^[a-z][a-z_-]{0,31}$")  # a stage: open, connect, exchange, receipt

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


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


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
