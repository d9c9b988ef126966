"""Issue 10 §3: request bodies and headers are size-limited before they are read or authenticated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server, make_settings, start

MIB = 1024 * 1024


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    settings = make_settings(tmp_path).model_copy(
        update={"max_body_bytes": 64 * 1024, "max_upload_bytes": 256 * 1024, "max_header_bytes": 4096}
    )
    yield from start(settings)


def chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_declared_oversized_body_is_413_before_authentication(server: Server) -> None:
    body = b"[" + b" " * (2 * MIB) + b"]"
    for path, shape in [
        (f"/api/v1/orgs/{server.org}/pats", "native"),
        ("/Acme/_apis/tokens/pats", "ado"),
        ("/graph/v1.0/identityProtection/riskyUsers/confirmCompromised", "graph"),
    ]:
        r = server.client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.status_code, r.text)
        data = r.json()
        if shape == "ado":
            assert data["typeKey"] == "RequestContentTooLargeException" and "1 MiB" in data["message"]
        else:
            assert data["error"]["code"] in ("payloadTooLarge", "RequestEntityTooLarge")
            assert "1 MiB" in data["error"]["message"]


def test_chunked_oversized_body_is_413(small_server: Server) -> None:
    r = small_server.client.post(
        f"/api/v1/orgs/{small_server.org}/revocations",
        content=chunks(200 * 1024),
        headers={"Content-Type": "application/json", **small_server.auth()},
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payloadTooLarge"


def test_body_within_the_limit_is_served(small_server: Server) -> None:
    r = small_server.client.post(
        f"/api/v1/orgs/{small_server.org}/revocations",
        json={"authorizationIds": ["x" * 100] * 100},
        headers=small_server.auth(),
    )
    assert r.status_code != 413 and r.status_code < 500, r.text


def test_csv_upload_route_has_its_own_larger_limit(small_server: Server) -> None:
    path = f"/api/v1/orgs/{small_server.org}/revocations/users-csv"
    csv = b"UserPrincipalName\n" + b"".join(f"u{i}@acme.test\n".encode() for i in range(10_000))
    assert 64 * 1024 < len(csv) < 256 * 1024
    h = {"Content-Type": "text/csv", **small_server.auth()}
    r = small_server.client.post(path + "?dryRun=true", content=csv, headers=h)
    assert r.status_code == 202, r.text
    r = small_server.client.post(path, content=csv * 3, headers=h)
    assert r.status_code == 413, r.text


def test_oversized_headers_are_431(small_server: Server) -> None:
    for path in (f"/api/v1/orgs/{small_server.org}/users", "/api/v1/validate", "/Acme/_apis/tokens/pats"):
        r = small_server.client.get(path, headers={"X-Padding": "a" * 8000, **small_server.auth()})
        assert r.status_code == 431, (path, r.status_code, r.text)


def test_streamed_body_is_not_read_past_the_limit(small_server: Server) -> None:
    """The app stops pulling chunks as soon as the limit is passed (nothing is buffered)."""
    app = small_server.client.app
    pulled = 0
    total_chunks = 1000  # 16 MB offered in 16 KiB chunks; limit is 64 KiB

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 16384, "more_body": pulled < total_chunks}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/orgs/{small_server.org}/pats",
        "raw_path": f"/api/v1/orgs/{small_server.org}/pats".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert pulled <= 6, pulled
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] == 413
