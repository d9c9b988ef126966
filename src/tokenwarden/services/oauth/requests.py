"""The framework-neutral HTTP request authlib's server runs on (the HTTP layer fills it in)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the OAuth endpoints need of a request: method, full URL, headers, the query and the
    form (each a name -> values mapping, repeated parameters kept so authlib can refuse them)."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, list[str]] = field(default_factory=dict)
    form: dict[str, list[str]] = field(default_factory=dict)
    ip: str | None = None
    user_agent: str | None = None


class _Headers(dict[str, str]):
    """Header names match case-insensitively (authlib asks for ``Authorization``)."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._datalist: defaultdict[str, list[Any]] = defaultdict(list, values)
        self._data = {k: v[0] for k, v in values.items() if v}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[Any]]:
        return self._datalist


class TwOAuth2Request(OAuth2Request):
    """authlib's request over an :class:`HttpRequest`, plus what one request of ours carries:
    its unit of work, the issuer it was addressed to, and the token families to revoke once
    its transaction has ended (a replayed code, a reused refresh token)."""

    def __init__(self, http: HttpRequest, issuer: str) -> None:
        super().__init__(method=http.method, uri=http.url, headers=_Headers(http.headers))
        merged = {**http.query, **http.form} if http.method == "POST" else dict(http.query)
        self.payload = _Payload(merged)
        self.http = http
        self.issuer = issuer
        self.uow: Any = None
        self.families_to_revoke: list[tuple[Any, str]] = []  # (the code or token found, reason)
        self.secrets_to_upgrade: list[tuple[Any, str]] = []  # (client, secret) under a retired pepper
        self.session_id: str | None = None  # the browser session that consented

    @property
    def args(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.http.query.items() if v}

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.http.form.items() if v}
