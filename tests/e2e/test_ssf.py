"""Shared Signals over HTTP on a real SQLite file: discovery, stream management and auth,
verification, SETs from revocations via poll (signatures checked against the JWKS), acks, push
to a real local receiver with a retry, SSE, and no double delivery from two nodes."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from joserfc import jws
from joserfc.jwk import KeySet

from tests.e2e.conftest import Server, free_port, make_settings
from tokenwarden.bootstrap import build
from tokenwarden.domain.netpolicy import PushAllowList
from tokenwarden.domain.principals import Role
from tokenwarden.http.app import create_app
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.ssf import Receiver as Who
from tokenwarden.services.ssf import Timing

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"


# ---------------------------------------------------------------------- helpers
def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def verified_claims(server: Server, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact SET with the keys published at /.well-known/jwks.json."""
    jwks = server.client.get("/.well-known/jwks.json").json()
    compact = jws.deserialize_compact(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    return compact.headers(), json.loads(compact.payload)


def create_stream(server: Server, token: str | None = None, **body: Any) -> dict[str, Any]:
    r = server.client.post("/ssf/stream", json=body, headers=server.auth(token))
    assert r.status_code == 201, r.text
    return dict(r.json())


def poll(server: Server, stream_id: str, **body: Any) -> dict[str, Any]:
    payload = {"returnImmediately": True, **body}
    r = server.client.post(f"/ssf/poll?stream_id={stream_id}", json=payload, headers=server.auth())
    assert r.status_code == 200, r.text
    return dict(r.json())


@dataclass
class Receiver:
    """A tiny RFC 8935 receiver: records every POST, answers from ``statuses`` then 202."""

    url: str
    seen: list[tuple[dict[str, str], str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    location: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def jtis(self) -> list[str]:
        with self.lock:
            bodies = [body for _, body in self.seen]
        return [json.loads(_b64(b.split(".")[1]))["jti"] for b in bodies]


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture
def receiver(server: Server) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 — allowed for pushes the way an operator would allow it."""
    server.container.ssf.push_allow = PushAllowList.parse("127.0.0.1/32")
    yield from _receiver()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    yield from _receiver()


def _receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = state["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            with rec.lock:
                rec.seen.append((dict(self.headers.items()), body))
                status = rec.statuses.pop(0) if rec.statuses else 202
            self.send_response(status)
            if rec.location is not None:
                self.send_header("Location", rec.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(f"http://127.0.0.1:{httpd.server_address[1]}/events")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------- discovery and streams
def test_discovery_document_and_jwks(server: Server) -> None:
    r = server.client.get("/.well-known/ssf-configuration")
    assert r.status_code == 200
    conf = r.json()
    assert conf["spec_version"] == "1_0" and conf["issuer"] == "http://testserver"
    assert conf["delivery_methods_supported"] == [PUSH, POLL]
    assert conf["authorization_schemes"] == [{"spec_urn": "urn:ietf:rfc:6749"}]
    assert conf["default_subjects"] == "ALL"
    for name in (
        "configuration_endpoint",
        "status_endpoint",
        "add_subject_endpoint",
        "remove_subject_endpoint",
        "verification_endpoint",
    ):
        assert conf[name].startswith("http://testserver/ssf/")
    assert conf["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    keys = server.client.get("/.well-known/jwks.json").json()["keys"]
    assert [k["alg"] for k in keys] == ["RS256"] and "d" not in keys[0]


def test_issuer_setting_overrides_the_request_url(server: Server) -> None:
    server.container.settings.issuer = "https://tokens.example.com/"
    conf = server.client.get("/.well-known/ssf-configuration").json()
    assert conf["issuer"] == "https://tokens.example.com"
    assert conf["configuration_endpoint"] == "https://tokens.example.com/ssf/stream"
    assert create_stream(server)["iss"] == f"https://tokens.example.com/ssf/orgs/{server.org_id}"


def test_stream_crud_and_authorization(server: Server) -> None:
    server.add_member("rs@acme.test")
    _, manage = server.pat_for("rs@acme.test", scope="ssf.manage")
    _, code = server.pat_for("rs@acme.test", scope="vso.code")
    assert server.client.post("/ssf/stream", json={}).status_code == 401
    assert server.client.get("/ssf/stream").status_code == 401
    assert server.client.post("/ssf/stream", json={}, headers=server.auth(code)).status_code == 403
    assert server.client.get("/ssf/stream", headers=server.auth(code)).status_code == 403
    # ssf.manage, but not an organization admin: may read, may not create
    r = server.client.post("/ssf/stream", json={}, headers=server.auth(manage))
    assert r.status_code == 403 and r.json()["error"]["code"] == "accessDenied"

    created = create_stream(
        server, description="resource server A", events_requested=[CAEP + "session-revoked"]
    )
    sid = created["stream_id"]
    assert created["delivery"] == {
        "method": POLL,
        "endpoint_url": f"http://testserver/ssf/poll?stream_id={sid}",
    }
    assert created["iss"] == f"http://testserver/ssf/orgs/{server.org_id}" and created["aud"]
    assert set(created["events_supported"]) == {
        CAEP + "session-revoked",
        CAEP + "credential-change",
        CAEP + "token-claims-change",
    }
    assert created["events_delivered"] == [CAEP + "session-revoked"]

    listed = server.client.get("/ssf/stream", headers=server.auth(manage))
    assert listed.status_code == 200 and [s["stream_id"] for s in listed.json()] == [sid]
    one = server.client.get("/ssf/stream", params={"stream_id": sid}, headers=server.auth(manage)).json()
    assert one == created

    patch = {"stream_id": sid, "events_requested": [CAEP + "credential-change", "urn:unknown"]}
    assert server.client.patch("/ssf/stream", json=patch, headers=server.auth(manage)).status_code == 403
    r = server.client.patch("/ssf/stream", json=patch, headers=server.auth())
    assert r.status_code == 200
    assert r.json()["events_delivered"] == [CAEP + "credential-change"]
    assert r.json()["description"] == "resource server A"  # PATCH keeps what was not sent
    r = server.client.put(
        "/ssf/stream",
        json={"stream_id": sid, "delivery": {"method": PUSH, "endpoint_url": "https://rs.example/ssf"}},
        headers=server.auth(),
    )
    assert r.status_code == 200 and "description" not in r.json()  # PUT replaces everything
    assert r.json()["delivery"] == {"method": PUSH, "endpoint_url": "https://rs.example/ssf"}
    assert len(r.json()["events_requested"]) == 3
    bad = {"stream_id": sid, "delivery": {"method": PUSH, "endpoint_url": "ftp://x"}}
    assert server.client.put("/ssf/stream", json=bad, headers=server.auth()).status_code == 400

    status = server.client.get("/ssf/status", params={"stream_id": sid}, headers=server.auth(manage))
    assert status.json() == {"stream_id": sid, "status": "enabled"}
    r = server.client.post(
        "/ssf/status",
        json={"stream_id": sid, "status": "paused", "reason": "maintenance"},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json() == {
        "stream_id": sid,
        "status": "paused",
        "reason": "maintenance",
    }
    bad_status = {"stream_id": sid, "status": "sleeping"}
    assert server.client.post("/ssf/status", json=bad_status, headers=server.auth()).status_code == 400

    subject = {"stream_id": sid, "subject": {"format": "email", "email": "rs@acme.test"}}
    assert server.client.post("/ssf/subjects/add", json=subject, headers=server.auth()).status_code == 200
    assert server.client.post("/ssf/subjects/remove", json=subject, headers=server.auth()).status_code == 204
    bad_subject = {"stream_id": sid, "subject": "rs@acme.test"}
    assert server.client.post("/ssf/subjects/add", json=bad_subject, headers=server.auth()).status_code == 400

    assert (
        server.client.delete(
            "/ssf/stream", params={"stream_id": sid}, headers=server.auth(manage)
        ).status_code
        == 403
    )
    assert (
        server.client.delete("/ssf/stream", params={"stream_id": sid}, headers=server.auth()).status_code
        == 204
    )
    gone = server.client.get("/ssf/stream", params={"stream_id": sid}, headers=server.auth())
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "streamNotFound"


def test_streams_of_another_organization_are_invisible(server: Server) -> None:
    sid = create_stream(server)["stream_id"]
    other = server.container.directory.create_org(OPERATOR, "Other")
    server.container.directory.add_user(OPERATOR, other.name, "boss@other.test", role=Role.ADMIN)
    issued = server.container.pats.create(
        OPERATOR, org=other.name, user="boss@other.test", display_name="x", scope="ssf.manage"
    )
    headers = server.auth(issued.secret)
    assert server.client.get("/ssf/stream", headers=headers).json() == []
    assert server.client.get("/ssf/stream", params={"stream_id": sid}, headers=headers).status_code == 404
    assert server.client.post("/ssf/verify", json={"stream_id": sid}, headers=headers).status_code == 404


# ---------------------------------------------------------------------- poll
def test_verification_set_via_poll(server: Server) -> None:
    sid = create_stream(server)["stream_id"]
    r = server.client.post("/ssf/verify", json={"stream_id": sid, "state": "abc123"}, headers=server.auth())
    assert r.status_code == 204 and r.content == b""
    got = poll(server, sid)
    assert got["moreAvailable"] is False
    [(jti, token)] = got["sets"].items()
    header, claims = verified_claims(server, token)
    assert header["typ"] == "secevent+jwt"
    assert claims["jti"] == jti and claims["sub_id"] == {"format": "opaque", "id": sid}
    assert claims["events"] == {VERIFICATION: {"state": "abc123"}}


def test_pat_revocation_is_a_signed_credential_change_set_and_acks_are_honoured(server: Server) -> None:
    server.add_member("dev@acme.test")
    auth_id, _ = server.pat_for("dev@acme.test", scope="vso.code", name="laptop")
    stream = create_stream(server, aud="https://rs.example")
    sid = stream["stream_id"]
    server.container.ssf.timing = Timing(redeliver_after=1.0)
    r = server.client.delete(f"/api/v1/orgs/Acme/pats/{auth_id}", headers=server.auth())
    assert r.status_code == 204, r.text
    got = poll(server, sid, maxEvents=10)
    [(jti, token)] = got["sets"].items()
    header, claims = verified_claims(server, token)
    kids = {k["kid"] for k in server.client.get("/.well-known/jwks.json").json()["keys"]}
    assert header["kid"] in kids and header["alg"] == "RS256"
    assert claims["iss"] == stream["iss"] and claims["aud"] == "https://rs.example"
    assert claims["jti"] == jti and claims["txn"] and isinstance(claims["iat"], int)
    assert "sub" not in claims and "exp" not in claims
    assert claims["sub_id"] == {"format": "email", "email": "dev@acme.test"}
    assert list(claims["events"]) == [CAEP + "credential-change"]
    event = claims["events"][CAEP + "credential-change"]
    assert event["credential_type"] == "app" and event["change_type"] == "revoke"
    assert event["credential_id"] == auth_id and event["friendly_name"] == "laptop"

    # Not acknowledged yet: not offered again before the redelivery delay...
    assert poll(server, sid)["sets"] == {}
    # ... and offered again after it; the acknowledged one never again.
    time.sleep(1.1)
    r = server.client.post(f"/ssf/verify?stream_id={sid}", json={"stream_id": sid}, headers=server.auth())
    assert r.status_code == 204
    again = poll(server, sid)
    assert jti in again["sets"] and len(again["sets"]) == 2
    verification = next(j for j in again["sets"] if j != jti)
    after_ack = poll(server, sid, ack=[jti], setErrs={verification: {"err": "jwtAud", "description": "no"}})
    assert after_ack["sets"] == {}
    assert poll(server, sid, maxEvents=0)["sets"] == {}
    rows = {d.jti: d for d in server.container.ssf.deliveries(sid)}
    assert rows[jti].status == "acked" and rows[verification].status == "failed"
    assert rows[verification].last_error == "jwtAud: no"


def test_poll_limits_more_available_and_snake_case(server: Server) -> None:
    sid = create_stream(server)["stream_id"]
    for state in ("1", "2", "3"):
        server.client.post("/ssf/verify", json={"stream_id": sid, "state": state}, headers=server.auth())
    r = server.client.post(
        "/ssf/poll",
        json={"stream_id": sid, "max_events": 2, "return_immediately": True},
        headers=server.auth(),
    )
    assert r.status_code == 200 and len(r.json()["sets"]) == 2 and r.json()["moreAvailable"] is True
    rest = poll(server, sid)
    assert len(rest["sets"]) == 1 and rest["moreAvailable"] is False
    bad = server.client.post("/ssf/poll", json={"stream_id": sid, "maxEvents": "all"}, headers=server.auth())
    assert bad.status_code == 400


def test_long_poll_returns_as_soon_as_an_event_arrives(server: Server) -> None:
    sid = create_stream(server)["stream_id"]
    who = _admin_receiver(server)
    timer = threading.Timer(0.5, lambda: server.container.ssf.verify(who, sid, "late"))
    started = time.monotonic()
    timer.start()
    got = server.client.post(f"/ssf/poll?stream_id={sid}", json={}, headers=server.auth()).json()
    assert len(got["sets"]) == 1 and 0.4 < time.monotonic() - started < 4.5


def _admin_receiver(server: Server) -> Who:
    with server.container.uow() as uow:
        admin = uow.users.by_upn(server.admin_upn)
    assert admin is not None
    return Who(org_id=server.org_id, user_id=admin.id, is_admin=True)


def test_revoke_user_is_session_revoked(server: Server) -> None:
    server.add_member("gone@acme.test")
    sid = create_stream(server, events_requested=[CAEP + "session-revoked"])["stream_id"]
    r = server.client.post(
        "/api/v1/orgs/Acme/users/gone@acme.test/revoke", json={"reason": "offboarded"}, headers=server.auth()
    )
    assert r.status_code == 200, r.text
    [token] = poll(server, sid)["sets"].values()
    claims = verified_claims(server, token)[1]
    assert claims["sub_id"] == {"format": "email", "email": "gone@acme.test"}
    event = claims["events"][CAEP + "session-revoked"]
    assert event["initiating_entity"] == "admin" and event["reason_admin"] == {"en": "offboarded"}


# ---------------------------------------------------------------------- push
def test_push_delivery_retries_until_202(server: Server, receiver: Receiver) -> None:
    server.add_member("ci@acme.test")
    auth_id, _ = server.pat_for("ci@acme.test")
    receiver.statuses.append(503)
    stream = create_stream(
        server,
        delivery={"method": PUSH, "endpoint_url": receiver.url, "authorization_header": "Bearer rs-secret"},
    )
    assert "authorization_header" not in stream["delivery"]
    sid = stream["stream_id"]
    assert server.client.delete(f"/api/v1/orgs/Acme/pats/{auth_id}", headers=server.auth()).status_code == 204
    wait_for(lambda: len(receiver.seen) >= 2)
    (_, b1), (h2, b2) = receiver.seen[:2]
    assert b1 == b2 and b1.count(".") == 2  # the same compact JWS, retried
    assert h2["Content-Type"] == "application/secevent+jwt" and h2["Authorization"] == "Bearer rs-secret"
    claims = verified_claims(server, b2)[1]
    assert claims["events"][CAEP + "credential-change"]["credential_id"] == auth_id
    wait_for(lambda: server.container.ssf.deliveries(sid)[0].status == "delivered")
    [row] = server.container.ssf.deliveries(sid)
    assert row.attempts == 2 and row.last_error is None
    time.sleep(0.6)
    assert len(receiver.seen) == 2  # delivered once accepted: never again


def test_no_double_delivery_from_two_nodes(tmp_path: Path, server: Server, receiver: Receiver) -> None:
    """Two containers (two nodes) run the push worker against one SQLite file."""
    server.add_member("many@acme.test")
    ids = [server.pat_for("many@acme.test", name=f"t{i}")[0] for i in range(12)]
    sid = create_stream(server, delivery={"method": PUSH, "endpoint_url": receiver.url})["stream_id"]
    second = build(make_settings(tmp_path).model_copy(update={"ssf_push_allow": "127.0.0.1"}))
    second.start_background()
    try:
        half = len(ids) // 2
        server.container.pats.revoke_many(OPERATOR, "Acme", ids[:half])
        for auth_id in ids[half:]:
            second.pats.revoke(OPERATOR, auth_id)
        wait_for(lambda: len(receiver.seen) >= len(ids))
        time.sleep(1.0)
    finally:
        second.close()
    jtis = receiver.jtis()
    assert len(jtis) == len(ids) and len(set(jtis)) == len(ids)
    rows = server.container.ssf.deliveries(sid)
    assert len(rows) == len(ids) and {(r.status, r.attempts) for r in rows} == {("delivered", 1)}


# ---------------------------------------------------------------------- SSE
def test_sse_stream_yields_a_set(server: Server) -> None:
    sid = create_stream(server)["stream_id"]
    port = free_port()
    app = create_app(server.container, start_background=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: uv.started, timeout=10)
        base = f"http://127.0.0.1:{port}"
        r = httpx.get(f"{base}/ssf/sse", params={"stream_id": sid}, timeout=5)
        assert r.status_code == 401
        server.client.post("/ssf/verify", json={"stream_id": sid, "state": "sse"}, headers=server.auth())
        lines: list[str] = []
        with httpx.stream(
            "GET", f"{base}/ssf/sse", params={"stream_id": sid}, headers=server.auth(), timeout=10
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                lines.append(line)
                if line.startswith("data: "):
                    break
        assert "event: set" in lines
        token = lines[-1].removeprefix("data: ")
        claims = verified_claims(server, token)[1]
        assert claims["events"] == {VERIFICATION: {"state": "sse"}}
        assert f"id: {claims['jti']}" in lines
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------------- issue 10
def test_members_cannot_change_status_subjects_or_verify(server: Server) -> None:
    """ssf.manage is not enough: every change to a stream is for organization admins only."""
    server.add_member("rs@acme.test")
    _, manage = server.pat_for("rs@acme.test", scope="ssf.manage")
    sid = create_stream(server)["stream_id"]
    subject = {"stream_id": sid, "subject": {"format": "email", "email": "rs@acme.test"}}
    member = server.auth(manage)
    c = server.client
    for method, url, body in (
        ("POST", "/ssf/stream", {}),
        ("PATCH", "/ssf/stream", {"stream_id": sid, "description": "mine"}),
        ("PUT", "/ssf/stream", {"stream_id": sid}),
        ("POST", "/ssf/status", {"stream_id": sid, "status": "disabled"}),
        ("POST", "/ssf/subjects/add", subject),
        ("POST", "/ssf/subjects/remove", subject),
        ("POST", "/ssf/verify", {"stream_id": sid, "state": "x"}),
    ):
        r = c.request(method, url, json=body, headers=member)
        assert r.status_code == 403 and r.json()["error"]["code"] == "accessDenied", (method, url, r.text)
    r = c.delete("/ssf/stream", params={"stream_id": sid}, headers=member)
    assert r.status_code == 403
    # nothing changed: enabled, no subject rows, no verification SET queued
    assert c.get("/ssf/status", params={"stream_id": sid}, headers=member).json()["status"] == "enabled"
    with server.container.uow() as uow:
        assert uow.signals.subjects(sid) == []
    assert poll(server, sid)["sets"] == {}
    # the member may still read
    assert c.get("/ssf/stream", params={"stream_id": sid}, headers=member).status_code == 200


def test_a_set_sent_on_sse_and_not_acked_is_polled_again(server: Server) -> None:
    """At-least-once per stream: SSE and poll share one lease; only an ack ends delivery."""
    sid = create_stream(server)["stream_id"]
    server.container.ssf.timing = Timing(redeliver_after=0.5)
    who = _admin_receiver(server)
    server.container.ssf.verify(who, sid, "once")
    [sent] = server.container.ssf.sse_batch(who, sid)
    assert poll(server, sid)["sets"] == {}  # leased to the SSE reader for now...
    time.sleep(0.6)
    again = poll(server, sid)["sets"]  # ... but not taken away: offered again on poll
    assert list(again) == [sent.jti]
    time.sleep(0.6)
    [resent] = server.container.ssf.sse_batch(who, sid)  # and again on SSE while un-acked
    assert resent.jti == sent.jti
    assert poll(server, sid, ack=[sent.jti], maxEvents=0)["sets"] == {}  # ack through poll
    time.sleep(0.6)
    assert server.container.ssf.sse_batch(who, sid) == [] and poll(server, sid)["sets"] == {}
    [row] = server.container.ssf.deliveries(sid)
    assert row.status == "acked"


def test_each_organization_has_its_own_issuer(server: Server) -> None:
    """Org B's receiver checks iss: a SET of org A can never pass as B's, whatever its aud."""
    mine = create_stream(server, aud="https://rs.shared.example")
    other = server.container.directory.create_org(OPERATOR, "Other")
    server.container.directory.add_user(OPERATOR, other.name, "boss@other.test", role=Role.ADMIN)
    issued = server.container.pats.create(
        OPERATOR, org=other.name, user="boss@other.test", display_name="x", scope="ssf.manage"
    )
    theirs = create_stream(server, issued.secret, aud="https://rs.shared.example")
    assert mine["iss"] == f"http://testserver/ssf/orgs/{server.org_id}"
    assert theirs["iss"] == f"http://testserver/ssf/orgs/{other.id}"
    server.client.post("/ssf/verify", json={"stream_id": mine["stream_id"]}, headers=server.auth())
    [token] = poll(server, mine["stream_id"])["sets"].values()
    claims = verified_claims(server, token)[1]
    assert claims["iss"] == mine["iss"] != theirs["iss"]
    meta = server.client.get(f"/.well-known/ssf-configuration/ssf/orgs/{other.id}")
    assert meta.status_code == 200 and meta.json()["issuer"] == theirs["iss"]
    assert meta.json()["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert server.client.get("/.well-known/ssf-configuration/ssf/orgs/nope").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/events",
        "http://localhost/events",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "https://192.168.0.10/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
    ],
)
def test_push_to_internal_addresses_is_refused(server: Server, url: str) -> None:
    delivery = {"method": PUSH, "endpoint_url": url}
    r = server.client.post("/ssf/stream", json={"delivery": delivery}, headers=server.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "pushTargetRefused", r.text
    assert "TOKENWARDEN_SSF_PUSH_ALLOW" in r.json()["error"]["message"]
    sid = create_stream(server)["stream_id"]
    for method in ("PATCH", "PUT"):
        r = server.client.request(
            method, "/ssf/stream", json={"stream_id": sid, "delivery": delivery}, headers=server.auth()
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "pushTargetRefused", r.text


def test_push_to_a_name_resolving_inward_is_refused(server: Server) -> None:
    server.container.ssf.resolve = lambda host, port: ["10.0.0.7"]
    delivery = {"method": PUSH, "endpoint_url": "https://rs.example/ssf"}
    r = server.client.post("/ssf/stream", json={"delivery": delivery}, headers=server.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "pushTargetRefused"
    server.container.ssf.push_allow = PushAllowList.parse("rs.example")
    assert create_stream(server, delivery=delivery)["delivery"]["endpoint_url"] == delivery["endpoint_url"]


def test_push_allow_list_setting() -> None:
    from tokenwarden.settings import Settings

    setting = Settings(ssf_push_allow="10.0.0.0/8, 127.0.0.1 receiver.internal").ssf_push_allow
    allow = PushAllowList.parse(setting)
    assert allow.allows_host("Receiver.Internal") and not allow.allows_host("other.internal")
    from tokenwarden.domain.netpolicy import refusal

    assert refusal("x", ["10.9.9.9"], allow) is None and refusal("x", ["127.0.0.1"], allow) is None
    assert refusal("x", ["127.0.0.2"], allow) is not None and refusal("x", ["192.168.1.1"], allow)
    assert refusal("x", ["93.184.216.34"], PushAllowList()) is None
    assert refusal("x", [], PushAllowList()) is not None


def test_push_target_is_checked_again_at_delivery(server: Server, receiver: Receiver) -> None:
    server.add_member("ci@acme.test")
    auth_id, _ = server.pat_for("ci@acme.test")
    sid = create_stream(server, delivery={"method": PUSH, "endpoint_url": receiver.url})["stream_id"]
    server.container.ssf.push_allow = PushAllowList()  # the operator withdraws the exception
    assert server.client.delete(f"/api/v1/orgs/Acme/pats/{auth_id}", headers=server.auth()).status_code == 204
    wait_for(lambda: any(d.last_error for d in server.container.ssf.deliveries(sid)))
    [row] = server.container.ssf.deliveries(sid)
    assert row.status == "pending" and row.last_error is not None and row.last_error.startswith("refused")
    assert receiver.seen == []


def test_push_does_not_follow_redirects(server: Server, receiver: Receiver, other_receiver: Receiver) -> None:
    server.add_member("ci@acme.test")
    auth_id, _ = server.pat_for("ci@acme.test")
    receiver.statuses.extend([307, 307, 307])
    receiver.location = other_receiver.url
    sid = create_stream(server, delivery={"method": PUSH, "endpoint_url": receiver.url})["stream_id"]
    assert server.client.delete(f"/api/v1/orgs/Acme/pats/{auth_id}", headers=server.auth()).status_code == 204
    wait_for(lambda: len(receiver.seen) >= 1 and bool(server.container.ssf.deliveries(sid)[0].last_error))
    [row] = server.container.ssf.deliveries(sid)
    assert row.status == "pending" and (row.last_error or "").startswith("HTTP 307")
    time.sleep(0.5)
    assert other_receiver.seen == []
