"""Compromise detection (issue 14): rules over a token's usage records, per organization.

Pure functions: :func:`evaluate` reads one token's :class:`Activity` (what the usage table says
about it around a flush) and the organization's :class:`DetectionPolicy`, and returns the
:class:`Finding` s that should become alerts. One open alert per token and rule is the
service's job (the alerts table enforces it).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokenwarden.domain.errors import InvalidInput


class Rule(StrEnum):
    UNKNOWN_NETWORK = "unknownNetwork"
    OUTSIDE_HOURS = "outsideWorkingHours"
    DORMANT = "dormantReactivated"
    HIGH_FREQUENCY = "highFrequency"
    FORBIDDEN_BURST = "forbiddenBurst"
    OWNER_INACTIVE = "ownerInactive"
    LEAKED = "leakedToken"  # reported by a secret scanner (GitHub): not evaluated, raised by intake


class Level(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Action(StrEnum):
    NOTIFY = "notify"  # the security contact, by the lifecycle channels (email, webhooks)
    REVOKE = "revoke"  # the token, reason "compromised"
    ROTATE = "rotate"  # every managed credential that depended on the token
    RAISE_RISK = "raiseRisk"  # the owner's risk level in the organization: high, atRisk


DEFAULT_LEVELS: Final[dict[Rule, Level]] = {
    Rule.UNKNOWN_NETWORK: Level.HIGH,
    Rule.OUTSIDE_HOURS: Level.MEDIUM,
    Rule.DORMANT: Level.MEDIUM,
    Rule.HIGH_FREQUENCY: Level.HIGH,
    Rule.FORBIDDEN_BURST: Level.HIGH,
    Rule.OWNER_INACTIVE: Level.HIGH,
    Rule.LEAKED: Level.HIGH,
}
BURST_MINUTES: Final = 5
BURST_WINDOW: Final = timedelta(minutes=BURST_MINUTES)
BASELINE_WINDOW: Final = timedelta(days=7)
MIN_BASELINE_MINUTES: Final = 60  # a baseline from fewer active minutes is no baseline
_NETWORKS_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class DetectionPolicy:
    """An organization's rules and responses (``GET/PUT /api/v1/orgs/{org}/detection``)."""

    enabled: bool = True
    disabled_rules: tuple[Rule, ...] = ()
    levels: dict[Rule, Level] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    learning_days: float = 7.0  # networks first seen this long after first use are the token's own
    allowed_networks: tuple[str, ...] = ()  # the organization's known networks (CIDRs)
    working_hours: tuple[int, int] | None = None  # [start, end) local hours; None: rule off
    working_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    timezone: str = "UTC"
    dormant_days: int = 60
    max_per_minute: int = 1000
    baseline_multiple: float = 10.0
    forbidden_burst: int = 20  # 403s within BURST_WINDOW
    responses: dict[Level, tuple[Action, ...]] = field(
        default_factory=lambda: dict.fromkeys(Level, (Action.NOTIFY,))
    )

    def active(self, rule: Rule) -> bool:
        if not self.enabled or rule in self.disabled_rules:
            return False
        return rule is not Rule.OUTSIDE_HOURS or self.working_hours is not None

    def level_of(self, rule: Rule) -> Level:
        return self.levels.get(rule, DEFAULT_LEVELS[rule])

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "disabledRules": [r.value for r in self.disabled_rules],
            "levels": {r.value: self.level_of(r).value for r in Rule},
            "learningDays": self.learning_days,
            "allowedNetworks": list(self.allowed_networks),
            "workingHours": None if self.working_hours is None else list(self.working_hours),
            "workingDays": list(self.working_days),
            "timezone": self.timezone,
            "dormantDays": self.dormant_days,
            "maxPerMinute": self.max_per_minute,
            "baselineMultiple": self.baseline_multiple,
            "forbiddenBurst": self.forbidden_burst,
            "responses": {lv.value: [a.value for a in self.responses.get(lv, ())] for lv in Level},
        }

    @classmethod
    def from_json(cls, data: object, base: DetectionPolicy | None = None) -> DetectionPolicy:
        """Validate a (partial) JSON object over ``base``; every bad value is a precise 400."""
        if not isinstance(data, dict):
            raise InvalidInput("the detection policy must be a JSON object", code="invalidDetectionPolicy")
        policy = base or cls()
        known = set(policy.to_json())
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown detection setting {unknown[0]!r:.60}; known: {', '.join(sorted(known))}",
                code="invalidDetectionPolicy",
            )
        changes: dict[str, Any] = {}
        for key, value in data.items():
            changes.update(_parse(key, value, policy))
        return replace(policy, **changes)


def _bad(key: str, why: str) -> InvalidInput:
    return InvalidInput(f"{key}: {why}", code="invalidDetectionPolicy")


def _number(key: str, value: object, low: float, high: float, integer: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise _bad(key, f"must be {'an integer' if integer else 'a number'}")
    if not low <= value <= high:
        raise _bad(key, f"must be between {low:g} and {high:g}")
    return value


def _enum_list(key: str, value: object, enum: type[StrEnum]) -> tuple[Any, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(key, "must be a list of strings")
    try:
        return tuple(dict.fromkeys(enum(v) for v in value))
    except ValueError:
        raise _bad(key, f"valid values: {', '.join(e.value for e in enum)}") from None


def _parse(key: str, value: object, policy: DetectionPolicy) -> dict[str, Any]:
    if key == "enabled":
        if not isinstance(value, bool):
            raise _bad(key, "must be true or false")
        return {"enabled": value}
    if key == "disabledRules":
        return {"disabled_rules": _enum_list(key, value, Rule)}
    if key == "levels":
        if not isinstance(value, dict):
            raise _bad(key, "must be an object of rule: level")
        try:
            levels = {Rule(k): Level(v) for k, v in value.items()}
        except (ValueError, TypeError):
            raise _bad(
                key, "rules: " + ", ".join(r.value for r in Rule) + "; levels: high, medium, low"
            ) from None
        return {"levels": {**policy.levels, **levels}}
    if key == "learningDays":
        return {"learning_days": float(_number(key, value, 0, 365))}
    if key == "allowedNetworks":
        if not isinstance(value, list) or len(value) > _NETWORKS_MAX:
            raise _bad(key, f"must be a list of at most {_NETWORKS_MAX} CIDRs")
        for item in value:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                raise _bad(key, f"not a CIDR: {item!r:.60}") from None
        return {"allowed_networks": tuple(str(ipaddress.ip_network(str(v), strict=False)) for v in value)}
    if key == "workingHours":
        if value is None:
            return {"working_hours": None}
        if not isinstance(value, list) or len(value) != 2:
            raise _bad(key, "must be [startHour, endHour] (0-24) or null")
        start, end = (int(_number(key, v, 0, 24, integer=True)) for v in value)
        if start == end:
            raise _bad(key, "start and end must differ")
        return {"working_hours": (start, end)}
    if key == "workingDays":
        if not isinstance(value, list) or not value:
            raise _bad(key, "must be a non-empty list of weekdays (0 = Monday .. 6 = Sunday)")
        return {"working_days": tuple(sorted({int(_number(key, v, 0, 6, integer=True)) for v in value}))}
    if key == "timezone":
        if not isinstance(value, str) or not value or len(value) > 64:
            raise _bad(key, "must be an IANA time zone name such as Europe/Berlin")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _bad(key, f"unknown time zone {value!r:.64}") from None
        return {"timezone": value}
    if key == "dormantDays":
        return {"dormant_days": int(_number(key, value, 1, 3650, integer=True))}
    if key == "maxPerMinute":
        return {"max_per_minute": int(_number(key, value, 1, 10_000_000, integer=True))}
    if key == "baselineMultiple":
        return {"baseline_multiple": float(_number(key, value, 1.5, 1000))}
    if key == "forbiddenBurst":
        return {"forbidden_burst": int(_number(key, value, 1, 1_000_000, integer=True))}
    # responses
    if not isinstance(value, dict):
        raise _bad(key, "must be an object of level: [actions]")
    try:
        parsed = {Level(k): _enum_list(f"{key}.{k}", v, Action) for k, v in value.items()}
    except ValueError:
        raise _bad(key, "levels: high, medium, low") from None
    return {"responses": {**policy.responses, **parsed}}


@dataclass(frozen=True, slots=True)
class Activity:
    """What the usage table says about one token at a flush."""

    token_id: str
    created_at: datetime
    owner_active: bool  # the owner is active and an active member of the token's organization
    first_used: datetime | None  # earliest usage minute on record
    prior_use: datetime | None  # latest minute before this flush's minutes
    batch_minutes: tuple[datetime, ...]  # minutes this flush counted requests in
    batch_networks: dict[str, int]  # network -> requests in this flush
    network_first_seen: dict[str, datetime]  # every network on record -> its first minute
    busiest_minute: tuple[datetime, int] | None  # of the flush's minutes, across all nodes
    baseline_per_minute: float | None  # mean over active minutes in the last week (before the flush)
    forbidden_recent: int  # 403s in the last BURST_WINDOW
    statuses: dict[str, int]  # status class -> requests in this flush


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    level: Level
    message: str
    evidence: dict[str, Any]


def _in(network: str, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False
    return any(net.version == a.version and net.subnet_of(a) for a in allowed)  # type: ignore[arg-type]


def evaluate(policy: DetectionPolicy, a: Activity) -> list[Finding]:
    """Every rule that fires for this activity (at most one finding per rule)."""
    out: list[Finding] = []

    def fire(rule: Rule, message: str, **evidence: Any) -> None:
        if policy.active(rule):
            out.append(Finding(rule, policy.level_of(rule), message, evidence))

    # use after the owner was disabled or left (their tokens are refused: this is a probe)
    if not a.owner_active and a.batch_minutes:
        fire(Rule.OWNER_INACTIVE, "token used after its owner was disabled or left", statuses=a.statuses)
    # unknown network
    if a.first_used is not None:
        learned_until = a.first_used + timedelta(days=policy.learning_days)
        allowed = policy.networks()
        known = {
            n
            for n, first in a.network_first_seen.items()
            if policy.learning_days > 0 and first <= learned_until
        }
        learning = policy.learning_days > 0 and max(a.batch_minutes, default=a.first_used) <= learned_until
        new = sorted(n for n in a.batch_networks if n and n not in known and not _in(n, allowed))
        if new and not learning:
            fire(
                Rule.UNKNOWN_NETWORK,
                f"token used from a network it has not used before: {', '.join(new[:5])}",
                networks=new[:20],
                knownNetworks=sorted(known)[:20],
                allowedNetworks=list(policy.allowed_networks),
            )
    # outside working hours (the organization's window in its time zone)
    if policy.working_hours is not None and a.batch_minutes:
        zone = ZoneInfo(policy.timezone)
        start, end = policy.working_hours
        outside = []
        for minute in a.batch_minutes:
            local = minute.astimezone(zone)
            hour_ok = start <= local.hour < end if start < end else (local.hour >= start or local.hour < end)
            if not hour_ok or local.weekday() not in policy.working_days:
                outside.append(local)
        if outside:
            first = min(outside)
            fire(
                Rule.OUTSIDE_HOURS,
                f"token used outside working hours: {first:%a %H:%M} {policy.timezone}",
                localTime=first.isoformat(),
                workingHours=list(policy.working_hours),
                workingDays=list(policy.working_days),
                timezone=policy.timezone,
            )
    # dormant token active again
    if a.batch_minutes:
        last = a.prior_use or a.created_at
        idle = min(a.batch_minutes) - last
        if idle >= timedelta(days=policy.dormant_days):
            fire(
                Rule.DORMANT,
                f"token active again after {idle.days} days without use",
                idleDays=idle.days,
                previousUse=None if a.prior_use is None else a.prior_use.isoformat(),
                dormantDays=policy.dormant_days,
            )
    # high frequency: a fixed ceiling, or a multiple of the token's own baseline
    if a.busiest_minute is not None:
        minute, count = a.busiest_minute
        over_fixed = count > policy.max_per_minute
        baseline = a.baseline_per_minute
        over_baseline = baseline is not None and count > baseline * policy.baseline_multiple and count >= 60
        if over_fixed or over_baseline:
            fire(
                Rule.HIGH_FREQUENCY,
                f"{count} requests in one minute ({minute:%H:%M} UTC)",
                requestsPerMinute=count,
                minute=minute.isoformat(),
                limit=policy.max_per_minute,
                baselinePerMinute=None if baseline is None else round(baseline, 2),
                baselineMultiple=policy.baseline_multiple,
            )
    # 403 bursts: a stolen token probing what its scopes allow
    if a.forbidden_recent >= policy.forbidden_burst and a.statuses.get("403"):
        fire(
            Rule.FORBIDDEN_BURST,
            f"{a.forbidden_recent} requests refused with 403 within {BURST_MINUTES} minutes",
            forbidden=a.forbidden_recent,
            threshold=policy.forbidden_burst,
        )
    return out
