"""bot.timeutil: the one UTC helper and the millisecond reader are total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.timeutil import as_utc, utc_from_ms


@pytest.mark.parametrize("ms", [2**53 - 1, 2**63 - 1, -(2**63), -(2**53), -1, 0, 10**20])
def test_ms_to_datetime_is_total(ms: int) -> None:
    moment = utc_from_ms(ms)
    assert moment.tzinfo is UTC
    assert moment.date() + timedelta(days=1) > moment.date() - timedelta(days=1)
    assert utc_from_ms(1_700_000_000_000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_as_utc_is_total() -> None:
    east = timezone(timedelta(hours=5))
    west = timezone(timedelta(hours=-5))
    for moment in (datetime.min.replace(tzinfo=east), datetime.max.replace(tzinfo=west)):
        converted = as_utc(moment)
        assert converted is not None and converted.tzinfo is UTC
    assert as_utc(datetime(2024, 1, 1, 5, tzinfo=east)) == datetime(2024, 1, 1, tzinfo=UTC)


def test_as_utc_reads_naive_as_utc_and_passes_none() -> None:
    assert as_utc(datetime(2024, 1, 1, 5)) == datetime(2024, 1, 1, 5, tzinfo=UTC)
    assert as_utc(None) is None
