"""Usage records: one authenticated request, counted per token, per minute, per client.

A request is reduced to its token, the minute it arrived in, the client's address and
network, its user agent, the route area and the class of its status. The reduction keeps the
table small (one row per distinct combination per minute) and is what detection reads.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

MAX_USER_AGENT: Final = 256
MAX_AREA: Final = 32
STATUS_CLASSES: Final = ("2xx", "3xx", "401", "403", "429", "4xx", "5xx")
_AREA_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


def status_class(status: int) -> str:
    """``2xx``, ``3xx``, ``401``, ``403``, ``429``, ``4xx`` or ``5xx``: refusals keep their code,
    because 401 and 403 bursts are what a stolen token probing its scopes looks like."""
    if status in (401, 403, 429):
        return str(status)
    if status < 300:
        return "2xx"
    if status < 400:
        return "3xx"
    if status < 500:
        return "4xx"
    return "5xx"


def network_of(ip: str | None) -> str:
    """The client's network: the /24 of an IPv4 address, the /64 of an IPv6 one, '' if none."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def minute_of(ts: float) -> datetime:
    """The start of the UTC minute a POSIX time falls in."""
    return datetime.fromtimestamp(ts - ts % 60, UTC)


def area_of(path: str) -> str:
    """The route area of a request path: the resource after the organization (``pats``,
    ``audit``, ...), ``ado.{area}`` for Azure DevOps routes, ``graph.{resource}``, ``oauth2``,
    ``validate``, ... Unknown-looking values are folded to ``other`` by the caller."""
    parts = [p for p in path.split("/") if p][:5]
    if not parts:
        return "root"
    lowered = [p.lower() for p in parts]
    if lowered[:3] == ["api", "v1", "orgs"]:
        name = lowered[4] if len(lowered) > 4 else "org"
    elif lowered[:2] == ["api", "v1"]:
        name = lowered[2] if len(lowered) > 2 else "api"
    elif len(lowered) > 1 and lowered[1] == "_apis":
        name = "ado." + (lowered[2] if len(lowered) > 2 else "discovery")
    elif lowered[0] == "graph":
        name = "graph." + (lowered[2] if len(lowered) > 2 else "root")
    elif lowered[0] == "scim":
        name = "scim." + (lowered[3] if len(lowered) > 3 else "root")
    else:
        name = lowered[0]
    name = name[:MAX_AREA]
    return name if set(name) <= _AREA_CHARS else "other"


@dataclass(frozen=True, slots=True)
class UsageCount:
    """Requests of one token in one minute from one client, area and status class."""

    token_id: str
    org_id: str
    bucket: datetime  # the minute, UTC
    ip: str  # '' when unknown
    network: str
    user_agent: str
    area: str
    status: str
    count: int

    @property
    def day(self) -> str:
        return self.bucket.strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """What the usage table knows about one token (within the retention period)."""

    token_id: str
    first_used: datetime | None
    last_used: datetime | None
    requests: int
    per_day: list[tuple[str, int]]  # (YYYY-MM-DD, requests), oldest first
    networks: list[tuple[str, int, datetime, datetime]]  # (network, requests, first, last)
    user_agents: list[tuple[str, int]]  # most used first
    areas: list[tuple[str, int]]
    statuses: dict[str, int]  # status class -> requests, since ``recent_since``
    recent_since: datetime


@dataclass(frozen=True, slots=True)
class UsageStats:
    """What detection reads about one token after a flush (across every node's counts)."""

    first_used: datetime | None
    prior_use: datetime | None  # the latest minute before the flush's first minute
    network_first_seen: dict[str, datetime]
    minute_totals: dict[datetime, int]  # of the flush's minutes
    baseline_minutes: int  # active minutes in the baseline window, before the flush
    baseline_requests: int
    forbidden_recent: int  # 403s since the burst window began
