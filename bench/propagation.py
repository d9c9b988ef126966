"""Revocation propagation across `tokenwarden serve` nodes on one PostgreSQL (issue 3, issue 15).

* latency, request to refusal everywhere: a PAT is validated on every node (cached), revoked
  through node A, and the other nodes are polled over kept-alive connections until every
  connection to each of them answers 401; p50/p99/max per bus (PostgreSQL LISTEN/NOTIFY, Redis
  pub/sub), with a breakdown from a bus tap of our own (when the intent and the commit were
  heard) and the revoke response;
* scaling: the same with 3, 6 and 10 single-worker nodes, and the bus's own fan-out cost per
  subscriber (publish -> heard by all N, in process);
* break-glass over 1,000,000 tokens: time from the break-glass call until every node rejects a
  sample of warmed tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
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
from tokenwarden.adapters.bus.postgres import PostgresBus
from tokenwarden.adapters.bus.redis import RedisBus
from tokenwarden.domain.events import Announcement, AnnouncementKind
from tokenwarden.ports.bus import InvalidationBus

ADMIN_DSN = os.environ.get("TW_BENCH_POSTGRES_DSN", "host=127.0.0.1 user=postgres dbname=postgres")
REDIS_URL = os.environ.get("TW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
EXE = str(Path(sys.executable).parent / "tokenwarden")
SETTLE = float(os.environ.get("TW_BENCH_SETTLE", "0.002"))  # after warming, before the revoke
# seconds between polling rounds: the poller must not starve the nodes it polls
POLL_PAUSE = float(os.environ.get("TW_BENCH_POLL_PAUSE", "0.0002"))


class RawHttp:
    """One kept-alive HTTP/1.1 connection with a pre-built GET: the poller must cost the server
    and this process as little as possible (a 2-core machine runs every node and the poller)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = b""
        self.buf = b""
        self.last_body = b""

    def prepare(self, path: str, token: str = "", method: str = "GET") -> None:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.request = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()

    def body(self) -> bytes:
        """Read one response; its body."""
        self.status()
        return self.last_body

    def send(self) -> None:
        self.sock.sendall(self.request)

    def status(self) -> int:
        """Read one response; its status code."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        self.buf = rest[length:]
        self.last_body = rest[:length]
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


class Cluster:
    def __init__(self, bus_url: str, nodes: int = 3, workers: int = 1, trace_dir: Path | None = None) -> None:
        self.dbname = f"tw_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.tmp = tempfile.TemporaryDirectory(prefix="tw-prop-")
        self.db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.dbname}"
        self.bus_url = bus_url
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
        self.trace_files: list[Path] = []
        for n in range(nodes):
            port = _free_port()
            command = [EXE, "serve", "--port", str(port), "--workers", str(workers)]
            env = self.env
            if trace_dir is not None:  # one worker, timestamps at each step (bench/trace_node.py)
                self.trace_files.append(trace_dir / f"node{n}.trace")
                env = {**self.env, "TW_TRACE_FILE": str(self.trace_files[-1])}
                command = [sys.executable, "-m", "bench.trace_node", str(port)]
            self.procs.append(
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=Path(__file__).resolve().parent.parent if trace_dir else self.tmp.name,
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
        time.sleep(0.5 * workers)  # every worker up (health answers from the first)
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

    def tap(self) -> BusTap:
        """Our own subscriber on the cluster's bus (the same adapter the nodes use)."""
        redis = self.bus_url.startswith("redis://")
        return BusTap(RedisBus(self.bus_url) if redis else PostgresBus(self.db_url))


class BusTap:
    """Records when each kind of announcement is first heard after :meth:`reset`."""

    def __init__(self, bus: InvalidationBus) -> None:
        self.bus = bus
        self.heard: dict[AnnouncementKind, float] = {}
        bus.subscribe(self._on)
        bus.start()

    def _on(self, announcement: Announcement) -> None:
        self.heard.setdefault(announcement.kind, time.perf_counter())

    def reset(self) -> None:
        self.heard = {}

    def close(self) -> None:
        self.bus.close()


def one_per_worker(url: str, workers: int, tries: int = 64) -> list[RawHttp]:
    """Kept-alive connections to ``url``, exactly one to each of its ``workers`` processes
    (told apart by /health's instance id), so polling them covers every worker."""
    found: dict[str, RawHttp] = {}
    for _ in range(tries):
        conn = RawHttp(url)
        conn.prepare("/health")
        conn.send()
        instance = json.loads(conn.body())["instance"]
        if instance in found:
            conn.close()
        else:
            found[instance] = conn
        if len(found) == workers:
            return list(found.values())
    raise RuntimeError(f"reached {len(found)} of {workers} workers of {url} in {tries} connections")


def _poll_until_refused(
    conns: list[list[RawHttp]], t0: list[float], start: threading.Event, out: list[list[float]]
) -> None:
    """Poll every connection of every node (all requests in flight at once, then all answers,
    then a short pause) until each has answered 401; per node, the time its last connection
    (its last worker) first did."""
    start.wait()
    pending = {(n, i) for n, node in enumerate(conns) for i in range(len(node))}
    done = [0.0] * len(conns)
    while pending:
        batch = sorted(pending)
        for n, i in batch:
            conns[n][i].send()
        for n, i in batch:
            if conns[n][i].status() == 401:
                pending.discard((n, i))
                if not any(m == n for m, _ in pending):
                    done[n] = time.perf_counter() - t0[0]
        time.sleep(POLL_PAUSE)
    out.append(done)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))], 2)


def latency(
    bus_url: str, samples: int = 1000, nodes: int = 3, workers: int = 2, trace: bool = False
) -> dict[str, Any]:
    """Request to refusal on every other node, ``samples`` times (see the module docstring).
    ``trace``: single-worker traced nodes, and the per-step breakdown (see :func:`_steps`)."""
    trace_dir = Path(tempfile.mkdtemp(prefix="tw-trace-")) if trace else None
    if trace:
        workers = 1
    cluster = Cluster(bus_url, nodes, workers, trace_dir)
    tap = cluster.tap()
    conns = [one_per_worker(u, workers) for u in cluster.urls[1:]]
    revoker = RawHttp(cluster.urls[0])
    try:
        total, intent, commit, response = [], [], [], []
        windows: list[tuple[float, float]] = []
        for _ in range(samples):
            auth_id, token = cluster.create_pat()
            for node in conns:
                for conn in node:
                    conn.prepare("/api/v1/validate", token)
                    conn.send()
                    assert conn.status() == 200
            assert cluster.clients[0].get("/api/v1/validate", headers={"Authorization": f"Bearer {token}"})
            time.sleep(SETTLE)
            tap.reset()
            revoker.prepare(f"/api/v1/orgs/bench/pats/{auth_id}", cluster.admin, "DELETE")
            start = threading.Event()
            result: list[list[float]] = []
            t0_box = [0.0]
            poller = threading.Thread(target=_poll_until_refused, args=(conns, t0_box, start, result))
            poller.start()
            t0 = t0_box[0] = time.perf_counter()
            start.set()
            revoker.send()  # prepared before t0: the clock starts as the request leaves
            if revoker.status() != 204:
                raise RuntimeError("the revoke request failed")
            response.append((time.perf_counter() - t0) * 1000)
            poller.join(timeout=10)
            total.append(max(result[0]) * 1000)
            windows.append((t0, t0 + max(result[0])))
            heard = dict(tap.heard)
            if AnnouncementKind.INTENT in heard:
                intent.append((heard[AnnouncementKind.INTENT] - t0) * 1000)
            if AnnouncementKind.COMMITTED in heard:
                commit.append((heard[AnnouncementKind.COMMITTED] - t0) * 1000)
        steps = _steps(cluster.trace_files, windows) if trace else None
        return {
            **({"steps_p50_ms": steps[0], "steps_p99_ms": steps[1]} if steps else {}),
            "samples": samples,
            "nodes": nodes,
            "workers_per_node": workers,
            "p50_ms": _pct(total, 0.5),
            "p99_ms": _pct(total, 0.99),
            "max_ms": round(max(total), 2),
            "breakdown_p50_ms": {
                "intent_heard_on_bus": _pct(intent, 0.5) if intent else None,
                "all_nodes_refuse": _pct(total, 0.5),
                "commit_heard_on_bus": _pct(commit, 0.5) if commit else None,
                "revoke_response": _pct(response, 0.5),
            },
            "breakdown_p99_ms": {
                "intent_heard_on_bus": _pct(intent, 0.99) if intent else None,
                "commit_heard_on_bus": _pct(commit, 0.99) if commit else None,
                "revoke_response": _pct(response, 0.99),
            },
        }
    finally:
        for node in conns:
            for conn in node:
                conn.close()
        revoker.close()
        tap.close()
        cluster.close()


def _steps(files: list[Path], windows: list[tuple[float, float]]) -> tuple[dict[str, float], ...]:
    """Per step, its time from the start of the revoke request (bench clock = nodes' clock):
    node A's steps, then on the other nodes the later of the two (delivered, applied)."""
    marks: list[list[tuple[str, float]]] = []
    for f in files:
        rows = []
        for line in f.read_text().splitlines():
            step, _, t = line.partition(" ")
            rows.append((step, float(t)))
        marks.append(rows)
    per_step: dict[str, list[float]] = {}
    for t0, t_end in windows:
        # a window: from this request's start to well after its last refusal (the commit too)
        t_stop = t_end + 0.5
        found: dict[str, float] = {}
        for n, rows in enumerate(marks):
            for step, t in rows:
                if not t0 <= t <= t_stop:
                    continue
                if n == 0 and step.startswith("A."):
                    found.setdefault(step, t - t0)
                elif n > 0 and step.startswith("X."):
                    key = f"others.{step[2:]}"
                    first = min(t - t0, found.get(f"{key}@{n}", float("inf")))
                    found[f"{key}@{n}"] = first
        merged: dict[str, float] = {}
        for key, value in found.items():
            name = key.split("@")[0]
            merged[name] = max(value, merged.get(name, 0.0))
        for name, value in merged.items():
            per_step.setdefault(name, []).append(value * 1000)
    order = sorted(per_step, key=lambda k: statistics.median(per_step[k]))
    return (
        {k: _pct(per_step[k], 0.5) for k in order},
        {k: _pct(per_step[k], 0.99) for k in order},
    )


def fan_out(kind: str, subscribers: int, messages: int = 200) -> dict[str, Any]:
    """The bus alone: publish -> heard by all ``subscribers`` bus instances (one process)."""
    dbname = None
    buses: list[InvalidationBus] = []
    try:
        if kind == "postgres":
            dbname = f"tw_bench_{secrets.token_hex(4)}"
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{dbname}"')
            url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
            buses = [PostgresBus(url) for _ in range(subscribers + 1)]
        else:
            buses = [RedisBus(REDIS_URL, channel=f"bench:{secrets.token_hex(4)}")]
            buses += [RedisBus(REDIS_URL, channel=buses[0].channel) for _ in range(subscribers)]
        lock = threading.Lock()
        heard = threading.Event()
        count = [0]

        def on(_: Announcement) -> None:
            with lock:
                count[0] += 1
                if count[0] == subscribers:
                    heard.set()

        for bus in buses[1:]:
            bus.subscribe(on)
        for bus in buses:
            bus.start()
        times = []
        for seq in range(1, messages + 1):
            count[0] = 0
            heard.clear()
            t0 = time.perf_counter()
            buses[0].publish(Announcement(seq))
            heard.wait(5)
            times.append((time.perf_counter() - t0) * 1000)
        return {"subscribers": subscribers, "p50_ms": _pct(times, 0.5), "p99_ms": _pct(times, 0.99)}
    finally:
        for bus in buses:
            bus.close()
        if dbname:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def scaling(quick: bool = False) -> dict[str, Any]:
    """Propagation p50/p99 with 3, 6 and 10 single-worker nodes, and the buses' fan-out cost."""
    counts = (3, 6) if quick else (3, 6, 10)
    samples = 30 if quick else 200
    out: dict[str, Any] = {}
    for name, url in (("postgres", "auto"), ("redis", REDIS_URL)):
        out[name] = {str(n): latency(url, samples, nodes=n, workers=1) for n in counts}
        fans = [fan_out(name, n) for n in (1, 10, 50)]
        per_node = (fans[-1]["p50_ms"] - fans[0]["p50_ms"]) / 49
        out[name]["fan_out"] = {"by_subscribers": fans, "per_subscriber_ms": round(per_node, 4)}
    return out


def _until_rejected(
    client: httpx.Client, token: str, t0_box: list[float], out: list[float], start: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    start.wait()
    while True:
        if client.get("/api/v1/validate", headers=headers).status_code == 401:
            out.append(time.perf_counter() - t0_box[0])
            return


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
            "revoked_in_answer": r.json()["total"],  # None: still counting (audited when done)
            "counting_after_answer": r.json().get("counting"),
            "every_node_rejects_ms": round(all_rejected_s * 1000, 1),
            "note": f"{warmed} tokens cached on each of {len(cluster.clients)} nodes; one watched per node",
        }
    finally:
        cluster.close()


def run(quick: bool = False, only: str | None = None) -> dict[str, Any]:
    samples = 30 if quick else 1000
    out: dict[str, Any] = {}
    if only in (None, "latency"):
        out["latency_postgres_bus"] = latency("auto", samples)
        out["latency_redis_bus"] = latency(REDIS_URL, samples)
    if only in (None, "scaling"):
        out["scaling"] = scaling(quick)
    if only in (None, "break_glass"):
        out["break_glass"] = break_glass(20_000 if quick else 1_000_000, 50 if quick else 300)
    return out
