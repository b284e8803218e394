"""The one timestamp format: RFC 3339 UTC with 'Z', formatting pure, parsing strict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.audit.records import format_time
from protocol.errors import InputError
from protocol.policy import format_instant
from protocol.timestamps import epoch_us, format_utc, parse_utc

MOMENT = datetime(2026, 6, 1, 12, 0, 5, 123456, tzinfo=UTC)


def test_records_and_files_use_the_one_format() -> None:
    assert format_utc(MOMENT) == "2026-06-01T12:00:05.123456Z" == format_time(MOMENT)
    assert format_utc(MOMENT, timespec="seconds") == "2026-06-01T12:00:05Z"
    assert format_instant(MOMENT) == "2026-06-01T12:00:05Z"


def test_any_offset_is_written_in_utc() -> None:
    plus_two = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert format_utc(plus_two) == format_utc(MOMENT)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        format_utc(datetime(2026, 1, 1))
    with pytest.raises(InputError, match="has no timezone"):
        parse_utc("2026-01-01T00:00:00", "now")


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01T00:00:00Z", 5, None])
def test_not_a_timestamp(text: object) -> None:
    with pytest.raises(InputError):
        parse_utc(text, "now")


@given(st.datetimes(timezones=st.just(UTC)))
def test_round_trip_and_order(moment: datetime) -> None:
    assert parse_utc(format_utc(moment), "t") == moment
    later = moment + timedelta(microseconds=1) if moment.year < 9999 else moment
    assert epoch_us(later) >= epoch_us(moment)


def test_epoch_us_is_exact() -> None:
    assert epoch_us(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert epoch_us(MOMENT) == int(MOMENT.timestamp()) * 1_000_000 + 123456
