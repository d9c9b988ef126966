"""Time helpers: every timestamp in tokenwarden is an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from tokenwarden.domain.errors import InvalidInput


class Clock(Protocol):
    """Source of the current time (replaceable in tests)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("date is out of range once converted to UTC (years 1 to 9999)") from None


def iso_z(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` suffix (``None`` stays ``None``)."""
    if value is None:
        return None
    return ensure_utc(value).isoformat().replace("+00:00", "Z")
