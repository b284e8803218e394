"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Supports ``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` / ``a-b/n``;
day-of-week 0-7 with 0 and 7 both Sunday. As in classic cron, when both day
fields are restricted a day matches if either matches. Names (``MON``) and
``@daily``-style shortcuts are not supported: an operator sees an error, not a
silently different schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocol.errors import ConfigError

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_SEARCH_DAYS = 366 * 5  # Feb 29 on a Monday can take years; beyond that, give up loudly


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (UTC)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ConfigError(f"cron {self.expression!r} matches no time in five years")


def parse_cron(expression: str) -> Cron:
    parts = expression.split()
    if len(parts) != 5:
        raise ConfigError(
            f"cron {expression!r} must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    sets = [
        _parse_field(part, name, lo, hi, expression)
        for part, (name, lo, hi) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in sets[4])
    return Cron(
        expression,
        sets[0],
        sets[1],
        sets[2],
        sets[3],
        weekdays,
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def _parse_field(text: str, name: str, lo: int, hi: int, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = lo, hi
            elif "-" in body:
                a, b = body.split("-", 1)
                first, last = int(a), int(b)
            else:
                first = last = int(body)
                if step_text:
                    last = hi
        except ValueError as e:
            raise ConfigError(f"cron {expression!r}: bad {name} {item!r}") from e
        if step < 1 or not lo <= first <= last <= hi:
            raise ConfigError(f"cron {expression!r}: {name} {item!r} outside {lo}-{hi}")
        values.update(range(first, last + 1, step))
    return frozenset(values)
