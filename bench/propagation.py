"""Revocation propagation across three `tokenwarden serve` nodes on one PostgreSQL.

* latency revoke -> reject, p50/p99, per bus (PostgreSQL LISTEN/NOTIFY, Redis pub/sub):
  a token is validated on nodes B and C (cached), revoked through node A, and B and C are
  polled in tight loops until they reject it;
* break-glass over 1,000,000 tokens: time from the break-glass call until every node
  rejects a sample of warmed tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.http_load import _free_port

ADMIN_DSN = os.environ.get("TW_BENCH_POSTGRES_DSN", "host=127.0.0.1 user=postgres dbname=postgres")
EXE = str(Path(sys.executable).parent / "tokenwarden")


class Cluster:
    def __init__(self, bus_url: str, nodes: int = 3) -> None:
        self.dbname = f"tw_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.tmp = tempfile.TemporaryDirectory(prefix="tw-prop-")
        self.db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.dbname}"
        self.env = {
            **os.environ,
            "TOKENWARDEN_DATABASE_URL": self.db_url,
            "TOKENWARDEN_PEPPERS": f"p1:{secrets.token_hex(32)}",
            "TOKENWARDEN_BUS_URL": bus_url,
            "TOKENWARDEN_LOG_LEVEL": "warning",
        }
        init = subprocess.run(
            [EXE, "init", "--org", "bench", "--admin", "bench@example.com", "--json"],
            env=self.env,
            cwd=self.tmp.name,
            capture_output=True,
            text=True,
            check=True,
        )
        self.admin = json.loads(init.stdout)["token"]
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for _ in range(nodes):
            port = _free_port()
            self.procs.append(
                subprocess.Popen(
                    [EXE, "serve", "--port", str(port)],
                    env=self.env,
                    cwd=self.tmp.name,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")
        for url in self.urls:
            for _ in range(300):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        self.clients = [httpx.Client(base_url=u, timeout=10) for u in self.urls]

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=10)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        self.tmp.cleanup()

    def create_pat(self) -> tuple[str, str]:
        r = self.clients[0].post(
            "/api/v1/orgs/bench/pats",
            json={"displayName": "p", "scope": "vso.code"},
            headers={"Authorization": f"Bearer {self.admin}"},
        )
        r.raise_for_status()
        return r.json()["authorizationId"], r.json()["token"]


def _until_rejected(
    client: httpx.Client, token: str, t0_box: list[float], out: list[float], start: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    start.wait()
    while True:
        if client.get("/api/v1/validate", headers=headers).status_code == 401:
            out.append(time.perf_counter() - t0_box[0])
            return


def latency(bus_url: str, samples: int = 200) -> dict[str, Any]:
    cluster = Cluster(bus_url)
    try:
        results = []
        for _ in range(samples):
            auth_id, token = cluster.create_pat()
            for c in cluster.clients:
                assert (
                    c.get("/api/v1/validate", headers={"Authorization": f"Bearer {token}"}).status_code == 200
                )
            out: list[float] = []
            t0_box = [0.0]
            start = threading.Event()
            threads = [
                threading.Thread(target=_until_rejected, args=(c, token, t0_box, out, start))
                for c in cluster.clients[1:]
            ]
            for t in threads:
                t.start()
            t0_box[0] = time.perf_counter()
            start.set()
            cluster.clients[0].delete(
                f"/api/v1/orgs/bench/pats/{auth_id}", headers={"Authorization": f"Bearer {cluster.admin}"}
            ).raise_for_status()
            for t in threads:
                t.join(timeout=10)
            results.append(max(out) * 1000)
        results.sort()
        return {
            "samples": samples,
            "p50_ms": round(statistics.median(results), 2),
            "p99_ms": round(results[int(len(results) * 0.99) - 1], 2),
            "max_ms": round(results[-1], 2),
        }
    finally:
        cluster.close()


def break_glass(total: int = 1_000_000, warmed: int = 300) -> dict[str, Any]:
    """Break-glass with ``total`` live tokens in the database, ``warmed`` of them cached on every node."""
    cluster = Cluster("auto")
    try:
        tokens = [cluster.create_pat()[1] for _ in range(warmed)]
        with psycopg.connect(cluster.db_url.replace("+psycopg", ""), autocommit=False) as conn:
            org_id, user_id = conn.execute(
                "SELECT o.id, m.user_id FROM orgs o JOIN memberships m ON m.org_id = o.id LIMIT 1"
            ).fetchone()  # type: ignore[misc]
            now = datetime.now(UTC).replace(tzinfo=None)
            later = now + timedelta(days=30)
            t0 = time.perf_counter()
            with conn.cursor().copy(
                "COPY tokens (id, kind, user_id, org_id, display_name, scopes, target_orgs, secret_hash,"
                " pepper_id, valid_from, valid_to, created_at) FROM STDIN"
            ) as copy:
                for _ in range(total - warmed):
                    copy.write_row(
                        (
                            str(uuid.uuid4()),
                            "pat",
                            user_id,
                            org_id,
                            "bulk",
                            "vso.code",
                            org_id,
                            os.urandom(16),
                            "p1",
                            now,
                            later,
                            now,
                        )
                    )
            conn.commit()
            load_s = time.perf_counter() - t0
        for c in cluster.clients:
            for t in tokens:
                assert c.get("/api/v1/validate", headers={"Authorization": f"Bearer {t}"}).status_code == 200
        out: list[float] = []
        t0_box = [0.0]
        start = threading.Event()
        watchers = [
            threading.Thread(target=_until_rejected, args=(c, tokens[-1], t0_box, out, start))
            for c in cluster.clients
        ]
        for w in watchers:
            w.start()
        t0_box[0] = t0 = time.perf_counter()
        start.set()
        r = cluster.clients[0].post(
            "/api/v1/orgs/bench/break-glass",
            json={"confirm": "bench"},
            headers={"Authorization": f"Bearer {cluster.admin}"},
        )
        r.raise_for_status()
        call_s = time.perf_counter() - t0
        for w in watchers:
            w.join(timeout=30)
        all_rejected_s = max(out)
        for c in cluster.clients:  # and every other warmed token is dead on every node too
            for t in tokens:
                assert c.get("/api/v1/validate", headers={"Authorization": f"Bearer {t}"}).status_code == 401
        return {
            "tokens": total,
            "load_s": round(load_s, 1),
            "break_glass_call_ms": round(call_s * 1000, 1),
            "revoked_reported": r.json()["total"],
            "every_node_rejects_ms": round(all_rejected_s * 1000, 1),
            "note": f"{warmed} tokens cached on each of {len(cluster.clients)} nodes; one watched per node",
        }
    finally:
        cluster.close()


def run(quick: bool = False) -> dict[str, Any]:
    samples = 30 if quick else 200
    return {
        "latency_postgres_bus": latency("auto", samples),
        "latency_redis_bus": latency("redis://127.0.0.1:6379/0", samples),
        "break_glass": break_glass(20_000 if quick else 1_000_000, 50 if quick else 300),
    }
