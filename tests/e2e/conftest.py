"""End-to-end fixtures: a real app over a real SQLite file (or PostgreSQL), driven over HTTP."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.bootstrap import Container, build
from tokenwarden.http.app import create_app
from tokenwarden.settings import Settings


@dataclass
class Server:
    client: TestClient
    container: Container
    org: str
    org_id: str
    admin_upn: str
    admin_token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def basic(self, token: str | None = None, user: str = "") -> dict[str, str]:
        raw = base64.b64encode(f"{user}:{token or self.admin_token}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    def add_member(self, upn: str, role: str = "member") -> str:
        r = self.client.post(
            f"/api/v1/orgs/{self.org}/users", json={"upn": upn, "role": role}, headers=self.auth()
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def pat_for(
        self, upn: str, scope: str = "vso.pats_manage", name: str = "t", days: int = 30
    ) -> tuple[str, str]:
        """Operator-issued PAT for ``upn``: (authorizationId, secret)."""
        from tokenwarden.services.common import OPERATOR

        issued = self.container.pats.create(
            OPERATOR,
            org=self.org,
            user=upn,
            display_name=name,
            scope=scope,
            valid_to=self.container.clock.now() + timedelta(days=days),
        )
        return issued.record.authorization_id, issued.secret


def make_settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url or f"sqlite:///{tmp_path / 'data' / 'tw.db'}",
        usage_flush_seconds=0.2,
        # The scheduler's start-up runs would write in the background of every test; the
        # lifecycle tests turn it on where they test it.
        scheduler_enabled=False,
    )


def start(settings: Settings) -> Iterator[Server]:
    container = build(settings, create_pepper=True)
    container.database.upgrade()
    result = container.directory.initialize("Acme", "admin@acme.test")
    app = create_app(container)
    with TestClient(app, base_url="http://testserver") as client:
        yield Server(client, container, "Acme", result.org.id, "admin@acme.test", result.token.secret)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from start(make_settings(tmp_path))


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    """The same app on a fresh PostgreSQL database of its own."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    name = f"tw_e2e_{secrets.token_hex(4)}"
    admin = f"host={url.host} port={url.port or 5432} user={url.username} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield from start(
            make_settings(tmp_path, url.set(database=name).render_as_string(hide_password=False))
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    org: str
    admin_token: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "tokenwarden"
    return subprocess.run(
        [str(exe), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
        check=False,
    )


def serve_process(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``tokenwarden serve`` on a free port; (process, base URL) once /health answers."""
    port = free_port()
    exe = Path(sys.executable).parent / "tokenwarden"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))


def live(tmp_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    """A real ``tokenwarden serve`` process on a free port over SQLite (``extra_env``: more
    ``TOKENWARDEN_*`` settings)."""
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data"), **extra_env}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    init = run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], env, tmp_path)
    assert init.returncode == 0, init.stderr
    import json

    token = json.loads(init.stdout)["token"]
    proc, base = serve_process(env, tmp_path)
    try:
        yield LiveServer(base, "Acme", token, env, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real ``tokenwarden serve`` process on a free port over SQLite."""
    yield from live(tmp_path)


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], SqlDatabase, str]]:
    """An initialised SQLite data directory for CLI processes: (env, database, org id)."""
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    r = run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    database = SqlDatabase(f"sqlite:///{tmp_path / 'data' / 'tokenwarden.db'}")
    with database.engine.connect() as conn:
        org_id = str(conn.execute(select(t.orgs.c.id)).scalar_one())
    yield env, database, org_id
    database.dispose()
