"""Issue 10 §3: a lost database is a 503 with Retry-After on every door, never a 500.

A server runs on a PostgreSQL database of its own; then the database is made unreachable
(connections refused, every backend terminated) and every wire format is asked again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tests.e2e.conftest import Server, make_settings, start

pytestmark = pytest.mark.postgres


def _admin(url: str) -> psycopg.Connection:
    u = make_url(url)
    return psycopg.connect(
        f"host={u.host} port={u.port or 5432} user={u.username} dbname=postgres", autocommit=True
    )


@pytest.fixture(params=["cache-trusted", "cache-stale", "mid-transaction"])
def outage_server(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    """A server on a fresh PostgreSQL database; ``cache-trusted`` keeps authentication in memory
    (a long staleness bound) so the failure is met by the route's own database work."""
    name = f"tw_outage_{secrets.token_hex(4)}"
    with _admin(postgres_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    staleness = 0.5 if request.param == "cache-stale" else 3600.0
    settings = make_settings(tmp_path, url).model_copy(update={"staleness_seconds": staleness})
    try:
        for server in start(settings):
            server.mode = request.param  # type: ignore[attr-defined]
            yield server
    finally:
        with _admin(postgres_url) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def cut_database(server: Server) -> None:
    if getattr(server, "mode", "") == "mid-transaction":
        # The connection dies after the unit of work began: every statement fails as a driver
        # error, the way a backend killed in the middle of a transaction fails.
        def broken(*_: object) -> None:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        event.listen(server.container.database.engine, "before_cursor_execute", broken)
        return
    name = make_url(server.container.database.url).database
    with _admin(server.container.database.url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def test_every_door_answers_503_with_retry_after(outage_server: Server) -> None:
    s = outage_server
    member = s.add_member("mia@acme.test")
    _, member_pat = s.pat_for("mia@acme.test", scope="vso.pats_manage vso.graph")
    assert member
    c = s.client
    assert c.get(f"/api/v1/orgs/{s.org}/users", headers=s.auth()).status_code == 200
    cut_database(s)
    time.sleep(1.0)  # past the staleness bound of the stale variant
    requests = [
        ("native", "GET", f"/api/v1/orgs/{s.org}/users", s.auth(), None),
        ("native", "GET", f"/api/v1/orgs/{s.org}/pats", s.auth(member_pat), None),
        ("native", "POST", f"/api/v1/orgs/{s.org}/pats", s.auth(member_pat), {"displayName": "x"}),
        ("native", "GET", f"/api/v1/orgs/{s.org}/audit", s.auth(), None),
        ("native", "GET", "/api/v1/me", s.auth(), None),
        ("ado", "GET", "/Acme/_apis/tokens/pats", s.basic(member_pat), None),
        ("ado", "POST", "/Acme/_apis/tokens/pats", s.basic(member_pat), {"displayName": "x", "scope": "vso"}),
        ("ado", "GET", "/Acme/_apis/graph/users", s.basic(), None),
        ("graph", "GET", "/graph/v1.0/me", s.auth(member_pat), None),
        ("graph", "POST", "/graph/v1.0/me/revokeSignInSessions", s.auth(member_pat), None),
        ("graph", "GET", "/graph/v1.0/identityProtection/riskyUsers", s.auth(), None),
    ]
    if getattr(s, "mode", "") == "cache-stale":  # a trusted cache answers validation from memory
        requests += [
            ("validate", "GET", "/api/v1/validate?scope=vso.pats&org=Acme", s.auth(member_pat), None),
            ("validate", "GET", "/api/v1/validate", s.auth(), None),
        ]
    for door, method, path, headers, body in requests:
        r = c.request(method, path, headers=headers, json=body)
        assert r.status_code == 503, (door, method, path, r.status_code, r.text)
        assert r.headers.get("retry-after"), (door, path)
        data = r.json()
        if door == "ado":
            assert data["typeKey"] == "ServiceUnavailableException", data
        elif door == "graph":
            assert data["error"]["code"] == "serviceNotAvailable", data
        else:
            assert data["error"]["code"] == "unavailable", data
    assert c.get("/health").status_code == 503
