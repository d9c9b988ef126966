"""Console page renders at 10,000 users and 100,000 tokens (issue 16): p50/p95 per page.

A real ``tokenwarden serve`` (one worker) on SQLite, seeded set-based: 10,000 members with
ten tokens each (scopes, kinds, expiry and last use spread), one administrator signed in with a
password (no MFA: the step is not what is measured). Each page is fetched ``rounds`` times over
a kept-alive connection, pages interleaved; the figure is the time to the last byte. The
ceiling: ``GET /health`` on the same server and connection in the same run.

``python -m bench --only console`` (part of ``make bench``).
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


def run(users: int = 10_000, per_user: int = 10, rounds: int = 40) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tw-console-") as tmp:
        env = {**os.environ, "TOKENWARDEN_DATA_DIR": f"{tmp}/data", "TOKENWARDEN_LOG_LEVEL": "warning"}
        env.pop("TOKENWARDEN_DATABASE_URL", None)
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
        t0 = time.perf_counter()
        _seed(Path(tmp) / "data" / "tokenwarden.db", users, per_user)
        seed_s = time.perf_counter() - t0
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
                    data={
                        "username": "admin@example.com",
                        "password": PASSWORD,
                        "csrf_token": token.group(1),
                    },
                )
                if signed.status_code != 303:
                    raise RuntimeError(f"sign-in: {signed.status_code}")
                some_user = c.get("/console/users?q=user04242").text
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
                    "tokens, page 1": "/console/tokens",
                    "tokens, live, expiring in 7 days": "/console/tokens?state=live&expiring=7",
                    "tokens, full access": "/console/tokens?full=1",
                    "tokens, dormant 90 days": "/console/tokens?state=live&dormant=90",
                    "tokens, page 1000": "/console/tokens?offset=49950",
                }
                times: dict[str, list[float]] = {name: [] for name in pages}
                for path in pages.values():  # warm-up (and check every page answers)
                    r = c.get(path)
                    if r.status_code != 200:
                        raise RuntimeError(f"{path}: {r.status_code}")
                for _ in range(rounds):
                    for name, path in pages.items():
                        t1 = time.perf_counter()
                        c.get(path).read()
                        times[name].append(time.perf_counter() - t1)
        finally:
            server.terminate()
            server.wait(timeout=20)
    return {
        "users": users,
        "tokens": users * per_user,
        "seed_s": round(seed_s, 1),
        "rounds": rounds,
        "pages": {
            name: {
                "p50_ms": _pct(ts, 0.5),
                "p95_ms": _pct(ts, 0.95),
                "mean_ms": round(statistics.mean(ts) * 1000, 1),
            }
            for name, ts in times.items()
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
