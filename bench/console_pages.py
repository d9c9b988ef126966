"""Console page renders at 10,000 users and 100,000 tokens (issue 16): p50/p95 per page.

A real ``tokenwarden serve`` (one worker) on SQLite, seeded set-based: 10,000 members with
ten tokens each (scopes, kinds, expiry and last use spread), one administrator signed in with a
password (no MFA: the step is not what is measured). Each page is fetched ``rounds`` times over
a kept-alive connection, pages interleaved; the figure is the time to the last byte. The
ceiling: ``GET /health`` on the same server and connection in the same run.

Three runs on the same data: the services' calls in process (no server; what the page costs
before HTTP and rendering), then over HTTP with the scheduler off
(``TOKENWARDEN_SCHEDULER_ENABLED=false``: nothing but the pages in the worker), then over HTTP
with the start-up jobs (expiry scan, enforcement over the 100,000 tokens) running in the same
worker, as a fresh ``serve`` does. Deep token pages are keyset pages: their cursors are found
by walking the listing once, in process, before the timed runs.

``python -m bench --only console`` (part of ``make bench``); ``TW_BENCH_CONSOLE_JOBS=off``
(or ``running``) runs one of the two HTTP runs only (default: both).
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import create_engine, insert, select

from bench.http_load import _free_port

EXE = str(Path(sys.executable).parent / "tokenwarden")
PASSWORD = "correct horse battery staple 42"
SCOPES = ("vso.code", "vso.build vso.code", "vso.packaging", "app_token", "vso.work vso.code_write")
KINDS = ("pat", "pat", "pat", "session", "refresh", "access", "pat", "pat", "service", "pat")


def _seed(db_file: Path, users: int, per_user: int) -> None:
    from tokenwarden.adapters.sql import tables as t

    engine = create_engine(f"sqlite:///{db_file}")
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        org_id = conn.execute(select(t.orgs.c.id)).scalar_one()
        rows = [(str(uuid.uuid4()), f"user{i:05d}@example.com") for i in range(users)]
        conn.execute(
            insert(t.users),
            [
                {
                    "id": uid,
                    "upn": upn,
                    "upn_key": upn,
                    "display_name": f"User {i:05d}",
                    "status": "active",
                    "risk_level": "none",
                    "identity_source": "local",
                    "created_at": now,
                    "risk_state": "none",
                }
                for i, (uid, upn) in enumerate(rows)
            ],
        )
        conn.execute(
            insert(t.memberships),
            [
                {
                    "org_id": org_id,
                    "user_id": uid,
                    "role": "member",
                    "status": "disabled" if i % 50 == 0 else "active",
                    "risk_level": "high" if i % 97 == 0 else "none",
                }
                for i, (uid, _) in enumerate(rows)
            ],
        )
        tokens = []
        for i, (uid, _) in enumerate(rows):
            for j in range(per_user):
                n = i * per_user + j
                created = now - timedelta(days=n % 200)
                tokens.append(
                    {
                        "id": str(uuid.uuid4()),
                        "kind": KINDS[n % len(KINDS)],
                        "user_id": uid,
                        "org_id": org_id,
                        "display_name": f"token {n}",
                        "scopes": SCOPES[n % len(SCOPES)],
                        "secret_hash": secrets.token_bytes(16),
                        "pepper_id": "p1",
                        "valid_from": created,
                        "valid_to": created + timedelta(days=30 + n % 300),
                        "created_at": created,
                        "revoked_at": created + timedelta(days=1) if n % 13 == 0 else None,
                        "last_used_at": now - timedelta(days=n % 120) if n % 3 else None,
                    }
                )
        for start in range(0, len(tokens), 20_000):
            conn.execute(insert(t.tokens), tokens[start : start + 20_000])
    engine.dispose()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def _stats(ts: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _pct(ts, 0.5),
        "p95_ms": _pct(ts, 0.95),
        "mean_ms": round(statistics.mean(ts) * 1000, 1),
    }


def _walk(service: Any, viewer: Any, position: int, **filters: Any) -> str:
    """The ``after`` cursor of the page starting at ``position`` (pages of 200, then the rest)."""
    after, at = None, 0
    while at < position:
        page, _ = service.tokens(viewer, **filters, after=after, limit=min(200, position - at))
        after, at = page.next_after, at + len(page.items)
        if after is None:
            raise RuntimeError(f"the listing ends before {position}")
    return str(after)


TOKEN_PAGES: dict[str, tuple[dict[str, Any], int]] = {  # name: (filters, first row's position)
    "tokens, page 1": ({}, 0),
    "tokens, live, expiring in 7 days": ({"state": "live", "expiring_days": 7}, 0),
    "tokens, full access": ({"full_scope": True}, 0),
    "tokens, dormant 90 days": ({"state": "live", "dormant_days": 90}, 0),
    "tokens, page 1000": ({}, 49_950),
    "tokens, dormant 90 days, page 100": ({"state": "live", "dormant_days": 90}, 4_950),
}
_QUERY_NAMES = {
    "state": "state",
    "expiring_days": "expiring",
    "full_scope": "full",
    "dormant_days": "dormant",
}


def _in_process(
    db_url: str, data_dir: Path, rounds: int, scale: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """The console service's token pages in process, and the deep pages' cursors (positions
    scaled by ``scale`` for a smaller seed)."""
    from tokenwarden.adapters.sql import tables as t
    from tokenwarden.bootstrap import build
    from tokenwarden.services.common import Actor
    from tokenwarden.settings import Settings

    engine = create_engine(db_url)
    with engine.connect() as conn:
        admin_id = conn.execute(select(t.users.c.id).where(t.users.c.upn == "admin@example.com")).scalar_one()
        org_id = conn.execute(select(t.orgs.c.id)).scalar_one()
    engine.dispose()
    c = build(Settings(data_dir=data_dir, database_url=db_url))
    try:
        viewer = c.console.viewer(Actor(admin_id, "admin@example.com"), org_id)
        cursors = {
            name: _walk(c.console, viewer, int(at * scale) // 50 * 50, **filters)
            for name, (filters, at) in TOKEN_PAGES.items()
            if at
        }
        times: dict[str, list[float]] = {name: [] for name in TOKEN_PAGES}
        for _ in range(rounds):
            for name, (filters, _at) in TOKEN_PAGES.items():
                t1 = time.perf_counter()
                c.console.tokens(viewer, **filters, after=cursors.get(name))
                times[name].append(time.perf_counter() - t1)
    finally:
        c.database.dispose()
    return {name: _stats(ts) for name, ts in times.items()}, cursors


def _token_path(name: str, cursors: dict[str, str]) -> str:
    filters, _ = TOKEN_PAGES[name]
    params = {_QUERY_NAMES[k]: ("1" if v is True else str(v)) for k, v in filters.items()}
    if name in cursors:
        params["after"] = cursors[name]
    return "/console/tokens" + ("?" + urlencode(params) if params else "")


def _over_http(tmp: str, env: dict[str, str], rounds: int, cursors: dict[str, str]) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen(
        [EXE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as c:
            page = c.get("/signin")
            token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
            assert token is not None
            signed = c.post(
                "/signin",
                data={"username": "admin@example.com", "password": PASSWORD, "csrf_token": token.group(1)},
            )
            if signed.status_code != 303:
                raise RuntimeError(f"sign-in: {signed.status_code}")
            some_user = c.get("/console/users?q=user00042").text
            user_id = re.search(r'href="/console/users/([0-9a-f-]{36})"', some_user)
            assert user_id is not None
            pages = {
                "health (ceiling)": "/health",
                "dashboard": "/console/dashboard",
                "users, page 1": "/console/users",
                "users, page 100": "/console/users?offset=4950",
                "users, search": "/console/users?q=user0999",
                "users, at risk": "/console/users?risk=any",
                "a user's page": f"/console/users/{user_id.group(1)}",
                **{name: _token_path(name, cursors) for name in TOKEN_PAGES},
            }
            times: dict[str, list[float]] = {name: [] for name in pages}
            for path in pages.values():  # warm-up (and check every page answers)
                r = c.get(path)
                if r.status_code != 200:
                    raise RuntimeError(f"{path}: {r.status_code}")
            if c.get("/console/tokens?after=not-a-cursor").status_code != 400:
                raise RuntimeError("a garbage cursor must be a 400 page")
            for _ in range(rounds):
                for name, path in pages.items():
                    t1 = time.perf_counter()
                    c.get(path).read()
                    times[name].append(time.perf_counter() - t1)
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {name: _stats(ts) for name, ts in times.items()}


def run(users: int = 10_000, per_user: int = 10, rounds: int = 40, jobs: str | None = None) -> dict[str, Any]:
    """Seed once; the token pages in process; the pages over HTTP with the scheduler off and/or
    with the start-up jobs running (``jobs``: off, running or both; default
    ``TW_BENCH_CONSOLE_JOBS``, else both)."""
    jobs = jobs or os.environ.get("TW_BENCH_CONSOLE_JOBS", "both")
    if jobs not in ("off", "running", "both"):
        raise ValueError("jobs: off, running or both")
    with tempfile.TemporaryDirectory(prefix="tw-console-") as tmp:
        env = {**os.environ, "TOKENWARDEN_DATA_DIR": f"{tmp}/data", "TOKENWARDEN_LOG_LEVEL": "warning"}
        env.pop("TOKENWARDEN_DATABASE_URL", None)
        env.pop("TOKENWARDEN_SCHEDULER_ENABLED", None)
        subprocess.run(
            [EXE, "init", "--org", "bench", "--admin", "admin@example.com", "--json"],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [EXE, "user", "passwd", "admin@example.com"],
            env=env,
            cwd=tmp,
            input=PASSWORD,
            text=True,
            check=True,
            capture_output=True,
        )
        db_file = Path(tmp) / "data" / "tokenwarden.db"
        t0 = time.perf_counter()
        _seed(db_file, users, per_user)
        seed_s = time.perf_counter() - t0
        in_process, cursors = _in_process(
            f"sqlite:///{db_file}", Path(tmp) / "data", rounds, users * per_user / 100_000
        )
        out: dict[str, Any] = {
            "users": users,
            "tokens": users * per_user,
            "seed_s": round(seed_s, 1),
            "rounds": rounds,
            "in_process": in_process,
        }
        # the quiet run first: the start-up jobs change what they scan (notices, revocations)
        if jobs in ("off", "both"):
            out["pages"] = _over_http(tmp, {**env, "TOKENWARDEN_SCHEDULER_ENABLED": "false"}, rounds, cursors)
        if jobs in ("running", "both"):
            key = "pages_jobs_running" if "pages" in out else "pages"
            out[key] = _over_http(tmp, env, rounds, cursors)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
