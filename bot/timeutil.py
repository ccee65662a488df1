"""The project's one way to read a time as UTC: stored datetimes and Matrix millisecond stamps.

SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones, Matrix events
milliseconds since the epoch; everything the bot compares or shows is aware UTC. Both helpers
are total: no stored value can make a page or a sweep raise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import overload

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# datetime's range, less a couple of days so day arithmetic on a clamped value cannot overflow.
_MIN_MS = (datetime(1, 1, 3, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime(9999, 12, 29, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
@overload
def as_utc(moment: datetime | None) -> datetime | None: ...


def as_utc(moment: datetime | None) -> datetime | None:
    """Aware UTC; a naive value is taken to be UTC already (as ``models.UTCDateTime`` stores
    it), an aware one is converted, None stays None.

    Total: an aware value whose UTC time falls outside ``datetime``'s range (year 1 or 9999
    with an offset) keeps its wall time instead of raising ``OverflowError``.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return moment.replace(tzinfo=UTC)


def utc_from_ms(ms: int) -> datetime:
    """Aware UTC time of ``ms`` since the epoch, for any int: values beyond what ``datetime``
    holds are clamped (a stored timestamp must never make a page fail)."""
    return _EPOCH + timedelta(milliseconds=min(max(ms, _MIN_MS), _MAX_MS))
