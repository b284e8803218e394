"""The one timestamp format of crossmatch records: RFC 3339, UTC, with a 'Z'.

``format_utc`` turns a given instant into text (pure: the caller reads the clock);
``parse_utc`` reads any timezone-aware ISO 8601 / RFC 3339 text back, and
``epoch_us`` gives the integer that orders instants whatever their spelling.
Audit records keep microseconds (``2026-06-01T12:00:00.000000Z``); files people read
and write (policies, CA bookkeeping) use whole seconds (``2026-06-01T12:00:00Z``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from protocol.errors import CrossmatchError, InputError
from protocol.rules import Rule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_utc(moment: datetime, *, timespec: str = "microseconds") -> str:
    """``moment`` (timezone-aware) as RFC 3339 UTC text ending in 'Z'."""
    if moment.tzinfo is None:
        raise ValueError("a timestamp must be timezone-aware")
    if timespec not in ("microseconds", "seconds"):
        raise ValueError(f"timespec must be microseconds or seconds, not {timespec!r}")
    # isoformat, not strftime: strftime's %Y does not pad years before 1000 to four digits.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def parse_utc(
    text: object, what: str, *, error: type[CrossmatchError] = InputError, rule: Rule | None = None
) -> datetime:
    """A timezone-aware instant (in UTC) from ISO 8601 text; ``error`` naming ``what`` if not."""
    if not isinstance(text, str):
        raise error(f"{what} must be a timestamp, got {type(text).__name__}", rule=rule)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise error(f"{what} is not an ISO 8601 timestamp: {text[:40]!r}", rule=rule) from e
    if moment.tzinfo is None:
        raise error(
            f"{what} has no timezone (use UTC, e.g. 2026-01-01T00:00:00Z): {text[:40]!r}",
            rule=rule,
        )
    return moment.astimezone(UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970-01-01T00:00:00Z, exact (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
