"""Watermarks: revoke every token of a subject issued before an instant, in O(1).

A watermark is (subject, kind, instant): every token of that subject and kind issued before the
instant is dead. Raising one is a single row write, however many tokens it kills. Watermarks
only ever move forward. Users carry per-kind watermarks plus the two Entra-style ones:

* ``signInSessions`` (Graph ``signInSessionsValidFromDateTime``): sessions, refresh and access tokens;
* ``refreshTokens`` (Graph ``refreshTokensValidFromDateTime``): refresh tokens and sessions.

Organizations carry per-kind watermarks (break-glass raises all of them). What an organization's
administrator does to a user raises *member* watermarks: (user, org), never the user's global ones.

OAuth clients carry per-kind watermarks too (subject id: the client_id; a token's ``client_id``
names its client): disabling or removing a client raises all of them to "now". Removing one also
sets :data:`CLIENT_REMOVED` at :data:`END_OF_TIME`, so every token that names the client dies,
whenever it was issued — even one a token endpoint was minting while the removal committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.tokens import TokenKind


class SubjectType(StrEnum):
    USER = "user"  # global to the identity: only the operator or the user themselves raise these
    MEMBER = "member"  # one user in one organization (subject id: principals.member_subject)
    ORG = "org"
    CLIENT = "client"


SIGN_IN_SESSIONS: Final = "signInSessions"
REFRESH_TOKENS: Final = "refreshTokens"
ENTRA_MARKS: Final[dict[str, tuple[TokenKind, ...]]] = {
    SIGN_IN_SESSIONS: (TokenKind.SESSION, TokenKind.REFRESH, TokenKind.ACCESS),
    REFRESH_TOKENS: (TokenKind.REFRESH, TokenKind.SESSION),
}
ALL_KINDS: Final = tuple(TokenKind)
CLIENT_REMOVED: Final = "removed"  # client watermark name: the client is gone, every token of it dies
END_OF_TIME: Final = datetime(9999, 12, 31, tzinfo=UTC)  # the instant CLIENT_REMOVED is raised to


_KIND_VALUES: Final = frozenset(k.value for k in TokenKind)
_KIND_NAMES: Final[dict[str, TokenKind]] = {
    **{k.value: k for k in TokenKind},
    **{k.value + "s": k for k in TokenKind},
    "access_tokens": TokenKind.ACCESS,
    "refresh_tokens": TokenKind.REFRESH,
}


def parse_kinds(values: Iterable[str] | str | None) -> tuple[TokenKind, ...]:
    """Token kinds from names (``pat``, ``access``, ``refresh``, ``session``, ``service``, their
    plurals, or ``all``); ``None`` or empty means all kinds."""
    if values is None:
        return ALL_KINDS
    items = values.replace(",", " ").split() if isinstance(values, str) else list(values)
    kinds: list[TokenKind] = []
    for item in items:
        name = item.strip().lower()
        if name == "all":
            return ALL_KINDS
        if name not in _KIND_NAMES:
            allowed = ", ".join(k.value for k in TokenKind)
            raise InvalidInput(f"unknown token kind {item!r}: use {allowed} or all", code="invalidKind")
        kinds.append(_KIND_NAMES[name])
    return tuple(dict.fromkeys(kinds)) or ALL_KINDS


def effective_cutoffs(marks: Mapping[str, float]) -> dict[TokenKind, float]:
    """Per-kind cut-offs (epoch seconds) from a subject's raw watermarks, Entra ones folded in."""
    result: dict[TokenKind, float] = {}
    for name, ts in marks.items():
        kinds = ENTRA_MARKS.get(name)
        if kinds is None:
            try:
                kinds = (TokenKind(name),)
            except ValueError:
                continue
        for kind in kinds:
            if ts > result.get(kind, float("-inf")):
                result[kind] = ts
    return result


def client_cutoffs(marks: Mapping[str, float]) -> dict[TokenKind, float]:
    """Per-kind cut-offs (epoch seconds) of one OAuth client: +inf for every kind once removed."""
    if CLIENT_REMOVED in marks:
        return dict.fromkeys(ALL_KINDS, float("inf"))
    return {TokenKind(k): v for k, v in marks.items() if k in _KIND_VALUES}


def mark_names_for(kind: TokenKind) -> tuple[str, ...]:
    """The raw watermark names that cut tokens of ``kind``: its own and the Entra ones over it."""
    return (kind.value, *(name for name, kinds in ENTRA_MARKS.items() if kind in kinds))
