"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC, by
``cronsim`` (the parser and matcher of Healthchecks.io; docs/adr/0005-libraries-and-duplicates.md).

Numbers, ranges, lists, steps, names (``MON``, ``JAN``) and cronsim's extensions (``L``,
``#``) are accepted; as in Debian cron, when both day fields are restricted a day matches
if either matches. Exactly five fields: cronsim would read a sixth as seconds, and an
``@daily`` shortcut is refused, so an operator sees an error, never a different schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

from protocol.errors import ConfigError

# Feb 29 on a Monday can take years; beyond that, give up loudly.
_HORIZON = timedelta(days=366 * 5)


@dataclass(frozen=True)
class Cron:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (UTC)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0)
        try:
            found = next(CronSim(self.expression, start))
        except (CronSimError, StopIteration) as e:
            raise ConfigError(f"cron {self.expression!r}: {e or 'matches no time'}") from e
        if found - start > _HORIZON:
            raise ConfigError(f"cron {self.expression!r} matches no time in five years")
        return found


def parse_cron(expression: str) -> Cron:
    """A checked expression; ConfigError naming what is wrong otherwise."""
    if len(expression.split()) != 5:
        raise ConfigError(
            f"cron {expression!r} must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ConfigError(f"cron {expression!r}: {e}") from e
    return Cron(expression)
