"""The scope catalog: which scopes exist and which imply which.

The catalog is data: the default is the Azure DevOps catalog below, and an operator can load
another from TOML (``[scopes]`` name = description, ``[implies]`` name = [implied, ...]).
Implication is transitive. Besides explicit rules, the suffix ladder holds for every family in
the catalog: ``x_full`` ⊇ ``x_manage`` ⊇ ``x_write`` ⊇ ``x``, ``x_execute`` ⊇ ``x``, and
``app_token`` (full access) implies every scope.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tokenwarden.domain.errors import InvalidInput

FULL_ACCESS: Final = "app_token"
# A provisioning token (SCIM) carries this scope and is good for SCIM only: no other door, not even
# those that ask for no scope, accepts it.
PROVISIONING: Final = "scim.provision"
_LADDER: Final = ("", "_write", "_manage", "_full")
_EXECUTE: Final = "_execute"

DEFAULT_SCOPES: Final[dict[str, str]] = {
    "app_token": "Full access to everything the owner can reach",
    "vso.agentpools": "Agent pools (read)",
    "vso.agentpools_manage": "Agent pools (read & manage)",
    "vso.analytics": "Analytics (read)",
    "vso.auditlog": "Audit log (read)",
    "vso.build": "Build (read)",
    "vso.build_execute": "Build (read & execute)",
    "vso.code": "Code (read)",
    "vso.code_write": "Code (read & write)",
    "vso.code_manage": "Code (read, write & manage)",
    "vso.code_full": "Code (full)",
    "vso.code_status": "Code (status)",
    "vso.connected_server": "Connected server",
    "vso.entitlements": "Entitlements (read)",
    "vso.extension": "Extensions (read)",
    "vso.extension_manage": "Extensions (read & manage)",
    "vso.extension.data": "Extension data (read)",
    "vso.extension.data_write": "Extension data (read & write)",
    "vso.graph": "Graph (read)",
    "vso.graph_manage": "Graph (manage)",
    "vso.identity": "Identity (read)",
    "vso.identity_manage": "Identity (manage)",
    "vso.machinegroup_manage": "Deployment groups (read & manage)",
    "vso.memberentitlementmanagement": "Member entitlement management (read)",
    "vso.memberentitlementmanagement_write": "Member entitlement management (write)",
    "vso.notification": "Notifications (read)",
    "vso.notification_write": "Notifications (write)",
    "vso.notification_manage": "Notifications (manage)",
    "vso.packaging": "Packaging (read)",
    "vso.packaging_write": "Packaging (read & write)",
    "vso.packaging_manage": "Packaging (read, write & manage)",
    "vso.pats": "PATs (read own)",
    "vso.pats_manage": "PATs (create, update and revoke own)",
    "vso.profile": "User profile (read)",
    "vso.profile_write": "User profile (write)",
    "vso.project": "Project and team (read)",
    "vso.project_write": "Project and team (read & write)",
    "vso.project_manage": "Project and team (read, write & manage)",
    "vso.release": "Release (read)",
    "vso.release_execute": "Release (read, write & execute)",
    "vso.release_manage": "Release (read, write, execute & manage)",
    "vso.security_manage": "Security (manage)",
    "vso.serviceendpoint": "Service connections (read)",
    "vso.serviceendpoint_query": "Service connections (read & query)",
    "vso.serviceendpoint_manage": "Service connections (read, query & manage)",
    "vso.symbols": "Symbols (read)",
    "vso.symbols_write": "Symbols (read & write)",
    "vso.symbols_manage": "Symbols (read, write & manage)",
    "vso.taskgroups_read": "Task groups (read)",
    "vso.taskgroups_write": "Task groups (read & create)",
    "vso.taskgroups_manage": "Task groups (read, create & manage)",
    "vso.test": "Test management (read)",
    "vso.test_write": "Test management (read & write)",
    "vso.threads_full": "Pull request threads",
    "vso.tokenadministration": "Token administration (organization admins)",
    "vso.tokens": "Delegated authorization tokens",
    "vso.variablegroups_read": "Variable groups (read)",
    "vso.variablegroups_write": "Variable groups (read & create)",
    "vso.variablegroups_manage": "Variable groups (read, create & manage)",
    "vso.wiki": "Wiki (read)",
    "vso.wiki_write": "Wiki (read & write)",
    "vso.work": "Work items (read)",
    "vso.work_write": "Work items (read & write)",
    "vso.work_full": "Work items (full)",
    "graph.users": "Graph-style identity (read users, their watermarks and risky users)",
    "graph.users_manage": "Graph-style identity (revoke sessions and refresh tokens, confirm/dismiss risk)",
    "ssf.read": "Shared Signals streams (read configuration, poll and stream events)",
    "ssf.manage": "Shared Signals streams (read & manage)",
    "tokenwarden.introspect": "Token introspection (RFC 7662) for the organization's tokens",
    "scim.provision": "SCIM 2.0 provisioning of users and groups (provisioning tokens only)",
}

DEFAULT_IMPLIES: Final[dict[str, tuple[str, ...]]] = {
    "vso.build_execute": ("vso.build",),
    "vso.release_execute": ("vso.release",),
    "vso.release_manage": ("vso.release_execute",),
    "vso.serviceendpoint_query": ("vso.serviceendpoint",),
    "vso.serviceendpoint_manage": ("vso.serviceendpoint_query",),
    "vso.taskgroups_write": ("vso.taskgroups_read",),
    "vso.variablegroups_write": ("vso.variablegroups_read",),
    "vso.code_manage": ("vso.code_status",),
    "vso.pats_manage": ("vso.pats",),
    "ssf.manage": ("ssf.read",),
    "graph.users_manage": ("graph.users",),
}


@dataclass(frozen=True)
class ScopeCatalog:
    """Known scopes and the transitive closure of their implications."""

    scopes: Mapping[str, str]
    implies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _closure: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    _interned: dict[frozenset[str], frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if FULL_ACCESS not in self.scopes:
            raise InvalidInput(f"scope catalog must define {FULL_ACCESS!r}")
        edges: dict[str, set[str]] = {name: set() for name in self.scopes}
        for name, implied in self.implies.items():
            for target in (name, *implied):
                if target not in self.scopes:
                    raise InvalidInput(f"implication names unknown scope {target!r}")
            edges[name].update(implied)
        for name in self.scopes:
            for lower, higher in itertools.pairwise(_LADDER):
                base = name.removesuffix(higher) if higher and name.endswith(higher) else None
                if base is None:
                    continue
                below = _nearest_below(self.scopes, base, lower)
                if below:
                    edges[name].add(below)
            if name.endswith(_EXECUTE) and name.removesuffix(_EXECUTE) in self.scopes:
                edges[name].add(name.removesuffix(_EXECUTE))
        edges[FULL_ACCESS] = set(self.scopes) - {FULL_ACCESS}
        closure: dict[str, frozenset[str]] = {}
        for name in self.scopes:
            seen = {name}
            stack = [name]
            while stack:
                for nxt in edges[stack.pop()]:
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            closure[name] = frozenset(seen)
        object.__setattr__(self, "_closure", closure)
        object.__setattr__(self, "_interned", {})

    def __contains__(self, scope: object) -> bool:
        return scope in self.scopes

    def parse(self, text: str | Iterable[str]) -> tuple[str, ...]:
        """Split a space-separated scope string, check every name, drop duplicates (keep order)."""
        names = text.split() if isinstance(text, str) else list(text)
        if not names:
            raise InvalidInput("at least one scope is required", code="invalidScope")
        unknown = [n for n in names if n not in self.scopes]
        if unknown:
            raise InvalidInput(f"unknown scope(s): {', '.join(sorted(set(unknown)))}", code="invalidScope")
        return tuple(dict.fromkeys(names))

    def expand(self, scopes: Iterable[str]) -> frozenset[str]:
        """Every scope granted by ``scopes`` (interned: equal sets share one object)."""
        result: set[str] = set()
        for name in scopes:
            result |= self._closure.get(name, frozenset())
        key = frozenset(result)
        return self._interned.setdefault(key, key)

    def implying(self, scope: str) -> frozenset[str]:
        """Every scope that implies ``scope`` (itself included)."""
        return frozenset(name for name, closure in self._closure.items() if scope in closure)

    def satisfies(self, granted: Iterable[str], needed: str) -> bool:
        """True when ``needed`` is implied by one of ``granted``."""
        return any(needed in self._closure.get(g, ()) for g in granted)

    @classmethod
    def default(cls) -> ScopeCatalog:
        return cls(DEFAULT_SCOPES, DEFAULT_IMPLIES)

    @classmethod
    def from_toml(cls, path: Path) -> ScopeCatalog:
        """Load ``[scopes]`` and ``[implies]`` tables from a TOML file."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"cannot read scope catalog {path}: {exc}") from exc
        scopes = data.get("scopes")
        if not isinstance(scopes, dict) or not scopes:
            raise InvalidInput(f"{path}: a non-empty [scopes] table is required")
        implies = data.get("implies", {})
        if not isinstance(implies, dict):
            raise InvalidInput(f"{path}: [implies] must be a table")
        for name, implied in implies.items():
            if not isinstance(implied, list) or not all(isinstance(x, str) for x in implied):
                raise InvalidInput(f"{path}: [implies] {name!r} must be a list of scope names")
        return cls(
            {str(k): str(v) for k, v in scopes.items()},
            {str(k): tuple(implied) for k, implied in implies.items()},
        )


def _nearest_below(scopes: Mapping[str, str], base: str, lower: str) -> str | None:
    """The closest existing rung at or below ``lower`` for family ``base``."""
    idx = _LADDER.index(lower)
    for suffix in reversed(_LADDER[: idx + 1]):
        if base + suffix in scopes:
            return base + suffix
    return None
