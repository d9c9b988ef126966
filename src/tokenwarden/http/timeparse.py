"""Timestamps from the wire: lenient ISO-8601 parsing for Azure DevOps and Graph clients, and
``UtcDateTime`` for native bodies and query parameters.

Every door normalises through :func:`to_utc`: naive values are UTC, aware values are converted,
and a value that leaves datetime's range once shifted to UTC (``0001-01-01T00:00:00+01:00``,
``9999-12-31T23:59:59-12:00``) is bad input, never a 500 further down.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

from tokenwarden.domain.errors import InvalidInput

_ISO = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: object, field: str, code: str = "invalidInput") -> datetime:
    """Accept 0-9 fractional digits and ``Z`` or an offset; naive values are UTC."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an ISO-8601 timestamp string", code=code)
    m = _ISO.match(value.strip())
    if not m:
        raise InvalidInput(f"{field} is not an ISO-8601 timestamp: {value!r:.60}", code=code)
    text = m.group("base")
    if m.group("frac"):
        text += "." + m.group("frac")[:6].ljust(6, "0")
    tz = m.group("tz")
    if tz and tz not in ("Z", "z"):
        text += tz if ":" in tz else f"{tz[:3]}:{tz[3:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a valid date: {value!r:.60}", code=code) from exc
    try:
        return to_utc(parsed)
    except ValueError as exc:
        raise InvalidInput(f"{field} {exc}: {value!r:.60}", code=code) from exc


def to_utc(value: datetime) -> datetime:
    """``value`` in UTC (naive = UTC); ValueError when it leaves the representable range."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None


UtcDateTime = Annotated[datetime, AfterValidator(to_utc)]
"""A datetime field or query parameter, always aware and in UTC (see :func:`to_utc`)."""
