"""Azure DevOps as a token source: the PAT Lifecycle API of an Azure DevOps-compatible server.

``/{org}/_apis/tokens/pats?api-version=7.1-preview.1`` — GET (list, or one by
``authorizationId``), POST (create), DELETE ``?authorizationId=`` (revoke).

Authentication: ``Authorization: Bearer <credential>`` on every request. Azure DevOps expects a
Microsoft Entra access token there (its PAT Lifecycle API does not take PATs); tokenwarden takes
a PAT (scope ``vso.pats_manage``) as Bearer too. The credential lives in memory only and is never
put in a message, a log line or ``repr``.

Retries (tenacity): connection errors, timeouts, 5xx and 429 are transient; up to
``retry_attempts`` attempts, waiting full-jitter exponential backoff (``wait_random_exponential``)
or, when a 429/503 carries ``Retry-After`` (seconds or an HTTP-date), that long — each wait capped
at ``retry_max_seconds``. Then :class:`TokenSourceError` (``transient=True``, ``retry_after``,
``status``). Other 4xx fail at once with the server's reason.

create() is not idempotent: once the request may have reached the server (a read/write timeout,
a dropped connection, a 5xx other than 503) the token may exist, and a resend would leave two live
tokens. create() therefore resends only after a failure to connect (nothing was sent) or a
429/503 answer (refused, nothing done); otherwise it raises a transient error at once and the
caller recovers with :meth:`AdoPatSource.find_by_display_name` (it names each token uniquely).

Response bodies are untrusted: at most ``MAX_BODY`` bytes are read, shapes are checked, and only
a short, cleaned excerpt of an *error* body is quoted (never a 2xx body, which may hold a secret).
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from tokenwarden.domain.netpolicy import PushAllowList, is_public, parse_ip
from tokenwarden.ports.token_sources import SourceToken, TokenSourceError

log = logging.getLogger(__name__)

API_VERSION: Final = "7.1-preview.1"
MAX_BODY: Final = 1 << 20  # bytes read from any response
MAX_QUOTE: Final = 200  # characters of an error body quoted in a message
MAX_PAGES: Final = 200  # list pages followed before giving up (a looping continuationToken)
ALLOW_SETTING: Final = "TOKENWARDEN_ADO_ALLOW"
_NOT_FOUND: Final = frozenset({"authorizationNotFound", "tokenNotFound"})
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool


class _Transient(TokenSourceError):
    """One failed attempt; ``resend_safe``: the server certainly did nothing (not connected, 429/503)."""

    def __init__(
        self, message: str, *, status: int | None, retry_after: float | None, resend_safe: bool
    ) -> None:
        super().__init__(message, transient=True, retry_after=retry_after, status=status)
        self.resend_safe = resend_safe


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None if absent/bad."""
    if value is None:
        return None
    value = value.strip()[:64]
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _clean(text: str, limit: int = MAX_QUOTE) -> str:
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _when(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not 0 < len(value) <= 40:
        raise ValueError(f"{field} is not an ISO 8601 timestamp")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed  # no offset: UTC


def _uuid(value: str) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("authorizationId must be a UUID string")
    return str(uuid.UUID(value))


class AdoPatSource:
    """A :class:`~tokenwarden.ports.token_sources.TokenSource` over the Azure DevOps PAT Lifecycle
    API, acting for the owner of ``credential`` in organization ``org`` (thread-safe)."""

    kind = "ado"

    def __init__(
        self,
        base_url: str,
        org: str,
        credential: str,
        *,
        timeout: float = 15.0,
        retry_attempts: int = 5,
        retry_max_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        allow: PushAllowList | None = None,
        resolve: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("base_url must be an http(s) URL without query or fragment")
        if parts.username or parts.password:
            raise ValueError("base_url must not carry credentials")
        if not org or len(org) > 256 or _UNPRINTABLE.search(org):
            raise ValueError("org must be a non-empty organization name")
        if not isinstance(credential, str) or not credential or any(c.isspace() for c in credential):
            raise ValueError("credential must be a non-empty string without whitespace")
        if retry_attempts < 1 or retry_max_seconds < 0 or timeout <= 0:
            raise ValueError("retry_attempts >= 1, retry_max_seconds >= 0 and timeout > 0 are required")
        self._base_url = base_url.rstrip("/")
        self._org = org
        self._url = f"{self._base_url}/{quote(org, safe='')}/_apis/tokens/pats"
        self._credential = credential
        self._attempts = retry_attempts
        self._max_wait = float(retry_max_seconds)
        self._backoff = wait_random_exponential(multiplier=0.5, max=self._max_wait)
        self._sleep = sleep
        # a whole operation (its retries and a slow-dripping answer included) ends by this budget
        self._budget = max(4 * timeout, timeout + retry_max_seconds)
        self._deadline = math.inf
        # None: any host (tests); otherwise a loopback, private or link-local target is refused
        # unless the operator allowed it, so an org admin cannot point tokenwarden at the inside
        self._allow = allow
        self._resolve = resolve or _resolve
        self._target_checked = allow is None
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"Authorization": f"Bearer {credential}", "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"AdoPatSource(base_url={self._base_url!r}, org={self._org!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AdoPatSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ TokenSource
    def get(self, authorization_id: str) -> SourceToken | None:
        """The token (``revoked`` from the server's revoked listing), or None when the server
        answers ``authorizationNotFound``/``tokenNotFound``. An HTTP 404 (unknown organization or
        route) raises: it must not pass for a vanished token."""
        auth_id = self._check_id(authorization_id)
        answer = self._call("GET", "get", {"authorizationId": auth_id})
        if answer.status != 200:
            raise self._refused(answer, "get")
        result = self._result(answer, "get")
        if result is None:
            return None
        token = self._token(result, "get")
        if token.authorization_id != auth_id:
            raise self._malformed("get", f"answered for another authorizationId ({token.authorization_id})")
        if self._is_revoked(auth_id):
            token = SourceToken(
                token.authorization_id,
                token.display_name,
                token.scopes,
                token.valid_from,
                token.valid_to,
                revoked=True,
            )
        return token

    def create(self, display_name: str, scopes: Sequence[str], valid_to: datetime) -> SourceToken:
        """Mint a PAT for this organization only (``allOrgs: false``); the secret is in the answer.
        Resent only when nothing can have been created (see the module docstring)."""
        if not display_name or not isinstance(display_name, str):
            raise ValueError("display_name must be a non-empty string")
        if isinstance(scopes, str) or not scopes or any(not s or _has_space(s) for s in scopes):
            raise ValueError("scopes must be a non-empty sequence of scope names")
        if valid_to.tzinfo is None:
            raise ValueError("valid_to must be timezone-aware")
        body = {
            "displayName": display_name,
            "scope": " ".join(scopes),
            "validTo": valid_to.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "allOrgs": False,
        }
        answer = self._call("POST", "create", {}, body, idempotent=False)
        if not 200 <= answer.status < 300:
            raise self._refused(answer, "create")
        try:
            result = self._result(answer, "create")
            if result is None:
                raise TokenSourceError(
                    f"{self._what('create')}: the server answered authorizationNotFound", status=200
                )
            token = self._token(result, "create")
            if not token.secret:
                raise self._malformed("create", f"returned token {token.authorization_id} without its secret")
        except TokenSourceError as exc:
            if exc.code != "malformedResponse":
                raise  # a refusal (patTokenError): nothing was created
            # a success we cannot use: the token may exist, so the caller must look for it
            raise TokenSourceError(
                f"{exc.message}; the token may have been created",
                code=exc.code,
                transient=True,
                status=answer.status,
            ) from None
        return token

    def find_by_display_name(self, display_name: str) -> list[SourceToken]:
        """Live (active or not yet valid) tokens named exactly ``display_name``, over all pages."""
        return [t for t in self._list("active") if t.display_name == display_name]

    def revoke(self, authorization_id: str, reason: str | None = None) -> bool:
        """True if the token was not revoked before (looked up first) and is now; False when it
        was already revoked, or unknown (also a 404 from DELETE: revoked in between). ``reason``
        is ignored: the PAT Lifecycle API records none."""
        current = self.get(authorization_id)
        if current is None or current.revoked:
            return False
        answer = self._call("DELETE", "revoke", {"authorizationId": current.authorization_id})
        if answer.status in (200, 204):
            return True
        if answer.status == 404:
            return False
        raise self._refused(answer, "revoke")

    # ------------------------------------------------------------------ listing
    def _is_revoked(self, auth_id: str) -> bool:
        return any(t.authorization_id == auth_id for t in self._list("revoked"))

    def _list(self, filter_option: str) -> Iterator[SourceToken]:
        seen: set[str] = set()
        continuation: str | None = None
        for _ in range(MAX_PAGES):
            params = {"displayFilterOption": filter_option}
            if continuation:
                params["continuationToken"] = continuation
            answer = self._call("GET", "list", params)
            if answer.status != 200:
                raise self._refused(answer, "list")
            page = self._json(answer, "list")
            items = page.get("patTokens") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise self._malformed("list", "is not a PagedPatTokens object")
            for item in items:
                yield self._token(item, "list")
            continuation = page.get("continuationToken")
            if continuation is None or continuation == "":
                return
            if not isinstance(continuation, str) or len(continuation) > 4096 or continuation in seen:
                raise self._malformed("list", "has an invalid or repeated continuationToken")
            seen.add(continuation)
        raise self._malformed("list", f"did not end within {MAX_PAGES} pages")

    # ------------------------------------------------------------------ requests and retries
    def _call(
        self,
        method: str,
        op: str,
        params: dict[str, str],
        body: dict[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> _Answer:
        """One operation with retries; returns any non-transient answer (2xx or 4xx)."""
        self._check_target()
        attempts = 0
        self._deadline = time.monotonic() + self._budget

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, _Transient) and (idempotent or exc.resend_safe)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info("%s: %s; attempt %d, retrying in %.1fs", self._what(op), exc, attempts, wait)

        def attempt() -> _Answer:
            nonlocal attempts
            attempts += 1
            return self._attempt(method, op, params, body)

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts) | stop_after_delay(self._budget),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as exc:
            why = "not resent: the token may have been created" if not retryable(exc) else "gave up"
            raise TokenSourceError(
                f"{exc.message} ({why} after {attempts} attempt{'s' if attempts != 1 else ''})",
                transient=True,
                retry_after=exc.retry_after,
                status=exc.status,
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        """``Retry-After`` when the last answer had one (capped), else jittered backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TokenSourceError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_wait)
        return float(self._backoff(state))

    def _attempt(self, method: str, op: str, params: dict[str, str], body: dict[str, Any] | None) -> _Answer:
        answer = self._send(method, op, params, body)
        status = answer.status
        if status == 429 or status >= 500:
            retry_after = (
                parse_retry_after(answer.headers.get("retry-after")) if status in (429, 503) else None
            )
            raise _Transient(
                f"{self._what(op)}: HTTP {status}{self._detail(answer)}",
                status=status,
                retry_after=retry_after,
                resend_safe=status in (429, 503),
            )
        return answer

    def _send(self, method: str, op: str, params: dict[str, str], body: dict[str, Any] | None) -> _Answer:
        query = {**params, "api-version": API_VERSION}
        try:
            with self._client.stream(method, self._url, params=query, json=body) as response:
                data, truncated = _read_capped(response, self._deadline)
                return _Answer(response.status_code, response.headers, data, truncated)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(self._failed(op, exc), status=None, retry_after=None, resend_safe=True) from None
        except httpx.TransportError as exc:  # sent, or partly: timeouts, dropped connections
            raise _Transient(
                self._failed(op, exc), status=None, retry_after=None, resend_safe=False
            ) from None
        except httpx.HTTPError as exc:
            raise TokenSourceError(self._failed(op, exc)) from None

    # ------------------------------------------------------------------ answers
    def _result(self, answer: _Answer, op: str) -> dict[str, Any] | None:
        """The ``patToken`` of a PatTokenResult; None for not-found; raises for other errors."""
        result = self._json(answer, op)
        if not isinstance(result, dict):
            raise self._malformed(op, "is not a PatTokenResult object")
        error = result.get("patTokenError")
        if error == "none":
            token = result.get("patToken")
            if not isinstance(token, dict):
                raise self._malformed(op, "has patTokenError none but no patToken")
            return token
        if not isinstance(error, str) or not error:
            raise self._malformed(op, "has no patTokenError")
        if error in _NOT_FOUND:
            return None
        message = result.get("patTokenErrorMessage")
        reason = _clean(error, 80) + (f": {self._scrub(message)}" if isinstance(message, str) else "")
        raise TokenSourceError(f"{self._what(op)}: the server refused: {reason}", code=error[:80], status=200)

    def _token(self, item: Any, op: str) -> SourceToken:
        if not isinstance(item, dict):
            raise self._malformed(op, "has a patToken that is not an object")
        try:
            auth_id = _uuid(item.get("authorizationId"))  # type: ignore[arg-type]
            name, scope, secret = item.get("displayName"), item.get("scope"), item.get("token")
            if not isinstance(name, str) or not isinstance(scope, str):
                raise ValueError("displayName and scope must be strings")
            if secret is not None and not isinstance(secret, str):
                raise ValueError("token must be a string or null")
            valid_from = item.get("validFrom")
            return SourceToken(
                authorization_id=auth_id,
                display_name=name,
                scopes=tuple(scope.split()),
                valid_from=None if valid_from is None else _when(valid_from, "validFrom"),
                valid_to=_when(item.get("validTo"), "validTo"),
                secret=secret or None,
            )
        except ValueError as exc:
            raise self._malformed(op, f"has an invalid patToken: {_clean(str(exc), 120)}") from None

    def _json(self, answer: _Answer, op: str) -> Any:
        if answer.truncated:
            raise self._malformed(op, f"is larger than {MAX_BODY} bytes")
        try:
            return json.loads(answer.body)
        except (ValueError, RecursionError):
            raise self._malformed(op, f"is not valid JSON ({len(answer.body)} bytes)") from None

    def _refused(self, answer: _Answer, op: str) -> TokenSourceError:
        return TokenSourceError(
            f"{self._what(op)}: HTTP {answer.status}{self._detail(answer)}", status=answer.status
        )

    def _malformed(self, op: str, problem: str) -> TokenSourceError:
        return TokenSourceError(f"{self._what(op)}: the server's answer {problem}", code="malformedResponse")

    def _detail(self, answer: _Answer) -> str:
        """A short excerpt of an error body: its ``message`` (WrappedException) or its text."""
        if not answer.body:
            return ""
        text = answer.body[: 16 * 1024].decode("utf-8", "replace")
        try:
            parsed = json.loads(answer.body) if not answer.truncated else None
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            for key in ("message", "patTokenErrorMessage", "patTokenError", "typeKey"):
                if isinstance(parsed.get(key), str) and parsed[key]:
                    return f": {self._scrub(parsed[key])}"
        return f": {self._scrub(text)}"

    def _scrub(self, text: str) -> str:
        return _clean(text.replace(self._credential, "[credential]"))

    def _failed(self, op: str, exc: Exception) -> str:
        return f"{self._what(op)}: {type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"

    def _what(self, op: str) -> str:
        return f"Azure DevOps PAT {op} ({self._org[:80]!r} at {self._base_url[:120]})"

    def _check_target(self) -> None:
        """Refuse a loopback, private or link-local server unless allowed (checked once)."""
        if self._target_checked or self._allow is None:
            return
        parts = urlsplit(self._base_url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self._allow.allows_host(host):
            self._target_checked = True
            return
        literal = parse_ip(host)
        try:
            addresses = [str(literal)] if literal is not None else self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise TokenSourceError(
                f"{self._what('connect')}: {host!r} does not resolve ({type(exc).__name__})", transient=True
            ) from None
        for address in (a for a in (parse_ip(x) for x in addresses) if a is not None):
            if not is_public(address) and not self._allow.allows_address(address):
                raise TokenSourceError(
                    f"{self._what('connect')}: {host!r} is a loopback, private or link-local address "
                    f"({address}); an operator may allow it with {ALLOW_SETTING}",
                    code="targetRefused",
                )
        self._target_checked = True

    def _check_id(self, authorization_id: str) -> str:
        try:
            return _uuid(authorization_id)
        except ValueError:
            raise TokenSourceError(f"{self._what('get')}: authorizationId is not a UUID") from None


def _has_space(value: str) -> bool:
    return any(c.isspace() for c in value)


def _read_capped(response: httpx.Response, deadline: float = math.inf) -> tuple[bytes, bool]:
    """At most MAX_BODY bytes of the (decoded) body, and whether there was more; a body still
    dripping in at ``deadline`` is a read timeout (the per-read timeout alone never ends it)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer took longer than the operation's time budget")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], True
    return b"".join(chunks), False


def _resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
