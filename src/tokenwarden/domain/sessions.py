"""Browser sessions: the sliding window of the Azure DevOps FedAuth cookie, as pure arithmetic.

A session is a token of kind ``session`` whose ``valid_to`` *is* its sliding expiry: valid
``idle`` from the last use, moved forward on use, never past ``valid_from + absolute`` (the
absolute maximum from sign-in). Every node checks ``valid_to`` as it checks any token's, so
the window needs no extra state. Moving it is a database write and an invalidation event, so it
happens at most once every ``extend_every`` per session, not on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tokenwarden.domain.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class SessionWindow:
    idle: timedelta = timedelta(days=7)
    absolute: timedelta = timedelta(days=90)
    extend_every: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if self.idle <= timedelta(0) or self.absolute <= timedelta(0):
            raise InvalidInput("session lifetimes must be positive", code="invalidSetting")
        if self.extend_every < timedelta(0):
            raise InvalidInput("the session extension interval must not be negative", code="invalidSetting")

    def first_expiry(self, signed_in: datetime) -> datetime:
        """``valid_to`` of a session that starts now."""
        return signed_in + min(self.idle, self.absolute)

    def cap(self, signed_in: datetime) -> datetime:
        """The absolute end of a session signed in at ``signed_in``."""
        return signed_in + self.absolute

    def extended(self, signed_in: datetime, now: datetime) -> datetime:
        """``valid_to`` after a use at ``now``: ``idle`` ahead, never past the absolute cap."""
        return min(now + self.idle, self.cap(signed_in))

    def due(self, signed_in: float, valid_to: float, now: datetime) -> datetime | None:
        """The new ``valid_to`` if a use at ``now`` should move the window (epoch seconds in,
        as the validator caches them), else None: only when it would move by at least
        ``extend_every`` (at most one write per interval, and none once the cap is reached)."""
        start = datetime.fromtimestamp(signed_in, UTC)
        target = self.extended(start, now)
        if target.timestamp() - valid_to < max(self.extend_every.total_seconds(), 1e-3):
            return None
        return target


def describe_user_agent(user_agent: str | None) -> str:
    """A short name for a browser (``Firefox on Linux``) from its User-Agent header, for
    session listings; ``browser session`` when nothing is recognised."""
    ua = user_agent or ""
    browser = next(
        (
            name
            for marker, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("Firefox/", "Firefox"),
                ("Chromium/", "Chromium"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
                ("curl/", "curl"),
                ("python-httpx/", "httpx"),
            )
            if marker in ua
        ),
        None,
    )
    system = next(
        (
            name
            for marker, name in (
                ("Windows", "Windows"),
                ("Android", "Android"),
                ("iPhone", "iOS"),
                ("iPad", "iPadOS"),
                ("Mac OS X", "macOS"),
                ("CrOS", "ChromeOS"),
                ("Linux", "Linux"),
            )
            if marker in ua
        ),
        None,
    )
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "browser session"
