"""Lenient ISO-8601 parsing for timestamps sent by Azure DevOps and Graph clients."""

from __future__ import annotations

import re
from datetime import UTC, datetime

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
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
