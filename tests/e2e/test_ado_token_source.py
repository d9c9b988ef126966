"""AdoPatSource against a real ``tokenwarden serve`` (as the Azure DevOps server), and its retry
rules against a scripted loopback HTTP server."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tokenwarden.adapters.providers.ado import MAX_BODY, AdoPatSource, parse_retry_after
from tokenwarden.ports.token_sources import TokenSource, TokenSourceError

API = "api-version=7.1-preview.1"


# ---------------------------------------------------------------------- against tokenwarden
@dataclass
class Ado:
    server: LiveServer
    credential: str
    sleeps: list[float] = field(default_factory=list)

    def source(self, credential: str | None = None, org: str | None = None) -> AdoPatSource:
        return AdoPatSource(
            self.server.base_url,
            org or self.server.org,
            credential or self.credential,
            timeout=10,
            sleep=self.sleeps.append,
        )


@pytest.fixture
def ado(live_server: LiveServer) -> Ado:
    """The admin's PAT with ``vso.pats_manage``, made through the server's own API."""
    r = httpx.post(
        f"{live_server.base_url}/{live_server.org}/_apis/tokens/pats?{API}",
        json={"displayName": "rotation credential", "scope": "vso.pats_manage", "allOrgs": False},
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["patTokenError"] == "none", r.text
    return Ado(live_server, r.json()["patToken"]["token"])


def _as_port(source: AdoPatSource) -> TokenSource:
    return source  # mypy checks that AdoPatSource implements the TokenSource port


def _name() -> str:
    return f"tw-rotation-{secrets.token_hex(4)}"


def _later(days: int = 7) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def test_create_get_authenticate_find_revoke(ado: Ado) -> None:
    name, valid_to = _name(), _later()
    with ado.source() as source:
        assert source.kind == "ado"
        made = source.create(name, ["vso.pats"], valid_to)
        assert made.secret and len(made.secret) >= 20
        assert (made.display_name, made.scopes, made.valid_to, made.revoked) == (
            name,
            ("vso.pats",),
            valid_to,
            False,
        )
        assert made.valid_from is not None and made.valid_from.tzinfo is not None
        assert abs((made.valid_from - datetime.now(UTC)).total_seconds()) < 120

        got = source.get(made.authorization_id)
        assert got is not None
        assert (got.authorization_id, got.display_name, got.scopes, got.valid_to) == (
            made.authorization_id,
            name,
            ("vso.pats",),
            valid_to,
        )
        assert got.secret is None and got.revoked is False

        # The minted secret is a working credential on the server (vso.pats: list own PATs).
        listing = f"{ado.server.base_url}/{ado.server.org}/_apis/tokens/pats?{API}"
        r = httpx.get(listing, headers={"Authorization": f"Bearer {made.secret}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert made.authorization_id in {t["authorizationId"] for t in r.json()["patTokens"]}

        assert [t.authorization_id for t in source.find_by_display_name(name)] == [made.authorization_id]
        assert source.find_by_display_name(name + "-other") == []

        assert _as_port(source).revoke(made.authorization_id, reason="compromised") is True
        assert source.revoke(made.authorization_id) is False
        # tokenwarden still answers GET for a revoked PAT (PatToken has no "revoked" field); the
        # source learns it from the revoked listing.
        after = source.get(made.authorization_id)
        assert after is not None and after.revoked is True and after.display_name == name
        assert source.find_by_display_name(name) == []
        r = httpx.get(listing, headers={"Authorization": f"Bearer {made.secret}"}, timeout=10)
        assert r.status_code == 401

        unknown = str(uuid.uuid4())
        assert source.get(unknown) is None
        assert source.revoke(unknown) is False
    assert ado.sleeps == []  # nothing was retried


def test_find_by_display_name_pages_and_skips_revoked(ado: Ado) -> None:
    name = _name()
    with ado.source() as source:
        dead = source.create(name, ["vso.pats"], _later())
        assert source.revoke(dead.authorization_id) is True
        for i in range(100):  # one page holds 100: these push the live twin onto a later page
            source.create(f"{name}-filler-{i:03d}", ["vso.pats"], _later())
        live = source.create(name, ["vso.pats"], _later(8))
        found = source.find_by_display_name(name)
    assert [t.authorization_id for t in found] == [live.authorization_id]
    assert found[0].revoked is False and found[0].secret is None
    r = httpx.get(
        f"{ado.server.base_url}/{ado.server.org}/_apis/tokens/pats?{API}",
        headers={"Authorization": f"Bearer {ado.credential}"},
        timeout=10,
    )
    assert r.json()["continuationToken"], "the listing must span more than one page"


def test_wrong_credential_is_a_401_without_the_credential(ado: Ado) -> None:
    bogus = "x" * 52
    with ado.source(credential=bogus) as source:
        with pytest.raises(TokenSourceError) as info:
            source.find_by_display_name("anything")
        assert info.value.status == 401 and info.value.transient is False
        assert bogus not in str(info.value)
        with pytest.raises(TokenSourceError) as info:
            source.create(_name(), ["vso.pats"], _later())
        assert info.value.status == 401 and bogus not in repr(source)
    assert ado.sleeps == []


def test_unknown_org_is_a_clear_error_not_a_missing_token(ado: Ado) -> None:
    with ado.source(org="NoSuchOrg") as source:
        for call in (
            lambda: source.get(str(uuid.uuid4())),
            lambda: source.find_by_display_name("x"),
            lambda: source.create(_name(), ["vso.pats"], _later()),
        ):
            with pytest.raises(TokenSourceError) as info:
                call()
            assert info.value.status == 404 and info.value.transient is False
            assert "organization 'NoSuchOrg' not found" in str(info.value)


def test_refused_create_carries_the_servers_reason(ado: Ado) -> None:
    with ado.source() as source:
        with pytest.raises(TokenSourceError) as info:
            source.create(_name(), ["vso.nonsense"], _later())
        assert info.value.code == "invalidScope" and info.value.transient is False
        assert "vso.nonsense" in str(info.value)
        # The credential holds vso.pats_manage only: it cannot mint vso.code.
        with pytest.raises(TokenSourceError) as info:
            source.create(_name(), ["vso.code"], _later())
        assert info.value.code == "scopeEscalation" and "vso.code" in str(info.value)
        with pytest.raises(TokenSourceError) as info:
            source.create(_name(), ["vso.pats"], datetime.now(UTC) - timedelta(days=1))
        assert info.value.code == "invalidValidTo"
        assert source.find_by_display_name("vso.nonsense") == []


# ---------------------------------------------------------------------- scripted fault server
@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait, after reading the request, before answering


class FaultServer:
    """Answers requests with a script of replies (the last one repeats); records each request."""

    def __init__(self, script: list[Reply]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                reply = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if reply.hang:
                    time.sleep(reply.hang)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


CRED = "cred-" + "s" * 40
AUTH_ID = "3f2b8c1e-9a4d-4e7f-8b21-5c6d7e8f9a0b"
TOKEN = {
    "authorizationId": AUTH_ID,
    "displayName": "succ-1",
    "scope": "vso.code vso.pats",
    "targetAccounts": None,
    "validFrom": "2026-12-01T10:00:00.1234567Z",
    "validTo": "2027-01-01T00:00:00Z",
    "token": None,
}
CREATED = {"patToken": {**TOKEN, "token": "minted-secret-123"}, "patTokenError": "none"}
PAGE = {"patTokens": [TOKEN], "continuationToken": ""}


@pytest.fixture
def sleeps() -> list[float]:
    return []


def faulty(server: FaultServer, sleeps: list[float], **kw: Any) -> AdoPatSource:
    kw.setdefault("timeout", 2.0)
    return AdoPatSource(server.url, "Org One", CRED, sleep=sleeps.append, **kw)


def test_429_with_retry_after_is_honoured(sleeps: list[float]) -> None:
    script = [Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, PAGE)]
    with FaultServer(script) as server, faulty(server, sleeps) as source:
        found = source.find_by_display_name("succ-1")
    assert sleeps == [1.0]
    assert [t.authorization_id for t in found] == [AUTH_ID]
    assert found[0].scopes == ("vso.code", "vso.pats")
    assert found[0].valid_from == datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert found[0].valid_to == datetime(2027, 1, 1, tzinfo=UTC)
    method, path, headers, _ = server.requests[0]
    assert method == "GET" and path.startswith("/Org%20One/_apis/tokens/pats?")
    assert "api-version=7.1-preview.1" in path and "displayFilterOption=active" in path
    assert headers["Authorization"] == f"Bearer {CRED}"
    assert len(server.requests) == 2


def test_retry_after_is_capped_and_http_dates_count(sleeps: list[float]) -> None:
    script = [Reply(503, b"", {"Retry-After": "3600"}), Reply(200, PAGE)]
    with FaultServer(script) as server, faulty(server, sleeps, retry_max_seconds=4) as source:
        assert len(source.find_by_display_name("succ-1")) == 1
    assert sleeps == [4.0]
    now = float(int(time.time()))
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True), now) == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after("soon") is None


def failure(
    script: list[Reply], sleeps: list[float], call: Callable[[AdoPatSource], object], **kw: Any
) -> tuple[TokenSourceError, FaultServer]:
    """Run ``call`` against a fault server with ``script``; the error it must raise, and the server."""
    with (
        FaultServer(script) as server,
        faulty(server, sleeps, **kw) as source,
        pytest.raises(TokenSourceError) as info,
    ):
        call(source)
    return info.value, server


def _create(source: AdoPatSource) -> object:
    return source.create("succ-1", ["vso.code"], datetime(2027, 1, 1, tzinfo=UTC))


def _get(source: AdoPatSource) -> object:
    return source.get(AUTH_ID)


def _find(source: AdoPatSource) -> object:
    return source.find_by_display_name("x")


def test_503_beyond_the_attempts_is_transient(sleeps: list[float]) -> None:
    script = [Reply(503, {"message": "down for maintenance"})]
    err, server = failure(script, sleeps, _get, retry_attempts=3, retry_max_seconds=2)
    assert err.transient is True and err.status == 503 and err.retry_after is None
    assert "down for maintenance" in str(err) and "3 attempts" in str(err)
    assert len(server.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 2 for s in sleeps)


def test_429_exhausted_keeps_retry_after(sleeps: list[float]) -> None:
    script = [Reply(429, b"", {"Retry-After": "7"})]
    err, server = failure(script, sleeps, lambda s: s.revoke(AUTH_ID), retry_attempts=2)
    assert (err.transient, err.status, err.retry_after) == (True, 429, 7.0)
    assert sleeps == [7.0] and len(server.requests) == 2


def test_create_is_not_resent_after_a_read_timeout(sleeps: list[float]) -> None:
    err, server = failure([Reply(200, CREATED, hang=1.5)], sleeps, _create, timeout=0.3)
    assert err.transient is True and err.status is None
    assert "ReadTimeout" in str(err) and "not resent" in str(err)
    assert [r[0] for r in server.requests] == ["POST"] and sleeps == []
    assert json.loads(server.requests[0][3]) == {
        "displayName": "succ-1",
        "scope": "vso.code",
        "validTo": "2027-01-01T00:00:00Z",
        "allOrgs": False,
    }


def test_create_is_not_resent_after_a_500(sleeps: list[float]) -> None:
    err, server = failure([Reply(500, b"boom"), Reply(200, CREATED)], sleeps, _create)
    assert err.transient is True and err.status == 500 and "boom" in str(err)
    assert len(server.requests) == 1 and sleeps == []


def test_create_is_resent_after_503_and_a_read_timeout_get_is_retried(sleeps: list[float]) -> None:
    script = [Reply(503, b"", {"Retry-After": "2"}), Reply(200, CREATED)]
    with FaultServer(script) as server, faulty(server, sleeps) as source:
        made = source.create("succ-1", ["vso.code", "vso.pats"], datetime(2027, 1, 1, tzinfo=UTC))
    assert made.secret == "minted-secret-123" and len(server.requests) == 2 and sleeps == [2.0]

    sleeps.clear()
    script = [Reply(200, PAGE, hang=1.5), Reply(200, PAGE)]
    with FaultServer(script) as server, faulty(server, sleeps, timeout=0.3) as source:
        assert len(source.find_by_display_name("succ-1")) == 1  # GET is idempotent: resent
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_create_is_resent_when_it_could_not_connect(sleeps: list[float]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    source = AdoPatSource(f"http://127.0.0.1:{port}", "Org", CRED, retry_attempts=3, sleep=sleeps.append)
    with source, pytest.raises(TokenSourceError) as info:
        _create(source)
    assert info.value.transient is True and "ConnectError" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value) and len(sleeps) == 2


def test_malformed_json_is_a_clear_non_transient_error(sleeps: list[float]) -> None:
    err, server = failure([Reply(200, b'{"patTokens": [')], sleeps, _find)
    assert err.transient is False and err.code == "malformedResponse"
    assert "is not valid JSON" in str(err) and len(server.requests) == 1

    bad_shapes: list[Any] = [
        [],
        {"patTokens": "nope"},
        {"patTokens": [{**TOKEN, "validTo": "tomorrow"}], "continuationToken": ""},
        {"patTokens": [{**TOKEN, "authorizationId": 42}], "continuationToken": ""},
        {"patTokens": [TOKEN], "continuationToken": "same"},  # repeats forever
    ]
    for shape in bad_shapes:
        err, _ = failure([Reply(200, shape)], sleeps, _find)
        assert err.transient is False and err.code == "malformedResponse", shape


def test_a_bad_create_answer_never_quotes_the_body(sleeps: list[float]) -> None:
    no_secret = {"patToken": TOKEN, "patTokenError": "none"}
    leaky = {"patToken": {**TOKEN, "token": "minted-secret-123", "validTo": 5}, "patTokenError": "none"}
    for body in (no_secret, leaky):
        err, _ = failure([Reply(200, body)], sleeps, _create)
        assert err.code == "malformedResponse" and "minted-secret" not in str(err)


def test_huge_bodies_give_bounded_errors(sleeps: list[float]) -> None:
    huge = b"A" * (3 * MAX_BODY)
    err, _ = failure([Reply(200, huge)], sleeps, _find)
    assert "larger than" in str(err) and len(str(err)) < 400
    err, _ = failure([Reply(400, {"message": "bad " + "B" * 100_000})], sleeps, _get)
    assert err.status == 400 and "bad BBB" in str(err) and len(str(err)) < 400
    err, _ = failure([Reply(403, huge)], sleeps, _get)
    assert err.status == 403 and err.transient is False and len(str(err)) < 400


def test_the_credential_never_shows(sleeps: list[float]) -> None:
    echo = {"message": f"token {CRED} is not allowed here"}
    err, server = failure([Reply(401, echo)], sleeps, _get)
    assert err.status == 401 and err.transient is False
    assert CRED not in str(err) and "[credential]" in str(err)
    assert sleeps == [] and len(server.requests) == 1
    source = AdoPatSource("http://127.0.0.1:9", "Org One", CRED)
    assert CRED not in repr(source) and "Org One" in repr(source)
    source.close()


def test_get_answers_none_only_for_not_found(sleeps: list[float]) -> None:
    missing = {"patToken": None, "patTokenError": "authorizationNotFound", "patTokenErrorMessage": "no"}
    with FaultServer([Reply(200, missing)]) as server, faulty(server, sleeps) as source:
        assert source.get(AUTH_ID) is None
    other = {**TOKEN, "authorizationId": str(uuid.uuid4())}
    err, _ = failure([Reply(200, {"patToken": other, "patTokenError": "none"})], sleeps, _get)
    assert "another authorizationId" in str(err)
    err, _ = failure([Reply(404, {"message": "organization 'Org One' not found"})], sleeps, _get)
    assert err.status == 404 and "organization 'Org One' not found" in str(err)


def test_an_unusable_create_success_is_transient_the_token_may_exist(sleeps: list[float]) -> None:
    no_secret = {"patToken": TOKEN, "patTokenError": "none"}
    with (
        FaultServer([Reply(201, no_secret)]) as server,
        faulty(server, sleeps) as source,
        pytest.raises(TokenSourceError) as caught,
    ):
        _create(source)
    assert caught.value.transient is True and "may have been created" in str(caught.value)
    assert len(server.requests) == 1  # and never resent


def test_a_private_target_is_refused_unless_the_operator_allows_it(sleeps: list[float]) -> None:
    from tokenwarden.domain.netpolicy import PushAllowList

    with FaultServer([Reply(200, PAGE)]) as server:
        with (
            faulty(server, sleeps, allow=PushAllowList()) as source,
            pytest.raises(TokenSourceError) as caught,
        ):
            source.find_by_display_name("succ-1")
        assert caught.value.code == "targetRefused" and "TOKENWARDEN_ADO_ALLOW" in str(caught.value)
        assert server.requests == []  # nothing was sent there
        with faulty(server, sleeps, allow=PushAllowList.parse("127.0.0.1")) as source:
            assert [t.display_name for t in source.find_by_display_name("succ-1")] == ["succ-1"]


def test_a_dripping_answer_ends_within_the_operation_budget(sleeps: list[float]) -> None:
    class Drip(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        source = AdoPatSource(
            f"http://127.0.0.1:{httpd.server_address[1]}",
            "Org",
            CRED,
            timeout=0.5,
            retry_attempts=1,
            retry_max_seconds=0,
            sleep=sleeps.append,
        )
        started = time.monotonic()
        with source, pytest.raises(TokenSourceError) as caught:
            source.find_by_display_name("x")
        assert time.monotonic() - started < 5  # a 0.5 s per-read timeout alone never ends a drip
        assert caught.value.transient is True
    finally:
        httpd.shutdown()
        httpd.server_close()
