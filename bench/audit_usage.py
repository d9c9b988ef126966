"""Issue 14: the cost of usage recording, detection throughput, the audit chain's append rate
and ``audit verify`` — each beside a ceiling measured in the same run.

* validation in process: ``Validator.validate`` + ``UsageRecorder.record`` (what a request does)
  against ``validate`` alone (the ceiling), 200,000 calls, interleaved A/B, medians of 5;
* HTTP: ``/api/v1/validate`` and a FastAPI route on ``tokenwarden serve --workers 2`` with usage
  recording on against off (servers started alternately, wrk, medians);
* detection: ``UsageService.flush`` of N requests over 1,000 tokens with detection against the
  same flush without it (SQLite), in usage events per second;
* audit append: entries per second through the unit of work (chained, one head lock per commit)
  in commits of 1 and of 100, against ``executemany`` of the same rows into an unchained copy;
* verify: ``AuditChainService.verify`` over N entries of one organization (SQLite), against
  hashing the same canonical forms alone (the chain's own arithmetic).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench.http_load import _free_port, ensure_wrk


def _container(url: str) -> Any:
    from tokenwarden.bootstrap import build
    from tokenwarden.settings import Settings

    data = Path(url.removeprefix("sqlite:///")).parent
    c = build(Settings(data_dir=data, database_url=url, scheduler_enabled=False), create_pepper=True)
    c.database.upgrade()
    return c


def validation_in_process(calls: int = 200_000, repeats: int = 5) -> dict[str, Any]:
    from tokenwarden.bootstrap import memory_container
    from tokenwarden.settings import Settings

    c = memory_container(Settings(staleness_seconds=3600.0))
    init = c.directory.initialize("bench", "bench@example.com")
    secret = init.token.secret
    v, recorder = c.validator, c.usage.recorder
    recorder._max = 10**9  # the bench drains nothing: let it hold every record
    v.validate(secret)
    off, on = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            v.validate(secret, None, None, "127.0.0.1")
        off.append(calls / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(calls):
            caller = v.validate(secret, None, None, "127.0.0.1")
            recorder.record(caller.key, "127.0.0.1", "bench/1", "validate", 200)
        on.append(calls / (time.perf_counter() - t0))
        recorder.drain()
    a, b = statistics.median(off), statistics.median(on)
    return {
        "calls": calls,
        "recording_off_per_s": round(a),
        "recording_on_per_s": round(b),
        "on_over_off": round(b / a, 3),
        "goal": "on >= 0.90 x off",
    }


def _serve(tmp: str, recording: bool, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    exe = str(Path(sys.executable).parent / "tokenwarden")
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": f"{tmp}/data", "TOKENWARDEN_LOG_LEVEL": "warning"}
    env["TOKENWARDEN_USAGE_RECORDING"] = "true" if recording else "false"
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    if not (Path(tmp) / "data" / "tokenwarden.db").exists():
        out = subprocess.run(
            [exe, "init", "--org", "bench", "--admin", "bench@example.com", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        )
        (Path(tmp) / "token").write_text(json.loads(out.stdout)["token"])
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, base, (Path(tmp) / "token").read_text()


def validation_http(duration: int = 5, repeats: int = 3, workers: int = 2) -> dict[str, Any]:
    wrk = ensure_wrk()
    if wrk is None:
        return {"skipped": "wrk is not installed and could not be installed"}
    paths = ("/api/v1/validate?scope=vso.code&org=bench", "/api/v1/orgs/bench/pats?top=1")
    rates: dict[tuple[str, bool], list[float]] = {(p, r): [] for p in paths for r in (False, True)}
    with tempfile.TemporaryDirectory(prefix="tw-bench-usage-") as tmp:
        for _ in range(repeats):
            for recording in (False, True):
                proc, base, token = _serve(tmp, recording, workers)
                script = Path(tmp) / "auth.lua"
                script.write_text(f'wrk.method = "GET"\nwrk.headers["Authorization"] = "Bearer {token}"\n')
                try:
                    for path in paths:
                        out = subprocess.run(
                            [wrk, "-t2", "-c64", f"-d{duration}s", "-s", str(script), base + path],
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout
                        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
                        rates[(path, recording)].append(float(m.group(1)) if m else 0.0)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    result: dict[str, Any] = {"workers": workers, "duration_s": duration, "repeats": repeats}
    for path in paths:
        off, on = statistics.median(rates[(path, False)]), statistics.median(rates[(path, True)])
        result[path] = {"off_per_s": round(off), "on_per_s": round(on), "on_over_off": round(on / off, 3)}
    result["goal"] = "on >= 0.90 x off"
    return result


def detection(events: int = 100_000, tokens: int = 1000) -> dict[str, Any]:
    from tokenwarden.services.common import OPERATOR

    with tempfile.TemporaryDirectory(prefix="tw-bench-detect-") as tmp:
        c = _container(f"sqlite:///{tmp}/tw.db")
        c.directory.initialize("bench", "bench@example.com")
        keys = []
        for i in range(tokens):
            issued = c.pats.create(
                OPERATOR, org="bench", user="bench@example.com", display_name=f"t{i}", scope="vso.code"
            )
            keys.append(c.validator.validate(issued.secret).key)
        usage = c.usage
        usage.recorder._max = 10**9
        out: dict[str, Any] = {"events": events, "tokens": tokens}
        for label, detector in (("flush_only", None), ("flush_and_detect", c.detection.detect)):
            usage.detector = detector
            for i in range(events):
                usage.recorder.record(keys[i % tokens], f"10.{i % 7}.{i % 251}.9", "agent/1", "pats", 200)
            t0 = time.perf_counter()
            usage.flush()
            dt = time.perf_counter() - t0
            out[f"{label}_events_per_s"] = round(events / dt)
        out["detect_over_flush"] = round(
            out["flush_and_detect_events_per_s"] / out["flush_only_events_per_s"], 3
        )
        c.database.dispose()
        return out


def _entries(org_id: str, n: int, start: int = 0) -> list[Any]:
    from tokenwarden.domain.audit import AuditEntry

    now = datetime.now(UTC)
    return [
        AuditEntry(
            at=now,
            event_type="Token.PatCreateEvent",
            org_id=org_id,
            actor_id="a",
            actor_upn="a@x",
            target_type="pat",
            target_id=f"t{start + i}",
            ip="127.0.0.1",
            details={"displayName": "ci", "n": i},
        )
        for i in range(n)
    ]


def audit_append(url: str, n: int = 20_000) -> dict[str, Any]:
    from tokenwarden.adapters.sql import tables as t

    c = _container(url)
    org = c.directory.initialize("bench", "bench@example.com").org
    out: dict[str, Any] = {"entries": n}
    for per_commit in (1, 100):
        count = n // 10 if per_commit == 1 else n
        rows = _entries(org.id, count)
        t0 = time.perf_counter()
        for i in range(0, count, per_commit):
            with c.uow() as uow:
                for e in rows[i : i + per_commit]:
                    uow.audit.append(e)
                uow.commit()
        out[f"chained_per_commit_{per_commit}_per_s"] = round(count / (time.perf_counter() - t0))
    raw = [
        {
            "at": e.at,
            "event_type": e.event_type,
            "org_id": e.org_id,
            "actor_id": e.actor_id,
            "actor_upn": e.actor_upn,
            "target_type": e.target_type,
            "target_id": e.target_id,
            "ip": e.ip,
            "details": e.details,
        }
        for e in _entries(org.id, n)
    ]
    with c.database.engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE scratch AS SELECT * FROM audit_log WHERE 0 = 1"))
        scratch = t.audit_log.to_metadata(t.metadata.__class__(), name="scratch")
        t0 = time.perf_counter()
        for i in range(0, n, 100):
            conn.execute(insert(scratch), raw[i : i + 100])
        out["ceiling_executemany_per_s"] = round(n / (time.perf_counter() - t0))
    out["chained_100_over_ceiling"] = round(
        out["chained_per_commit_100_per_s"] / out["ceiling_executemany_per_s"], 3
    )
    c.database.dispose()
    return out


def verify(n: int = 1_000_000) -> dict[str, Any]:
    from tokenwarden.domain.audit_chain import canonical
    from tokenwarden.services.common import OPERATOR

    with tempfile.TemporaryDirectory(prefix="tw-bench-verify-") as tmp:
        c = _container(f"sqlite:///{tmp}/tw.db")
        org = c.directory.initialize("bench", "bench@example.com").org
        t0 = time.perf_counter()
        for i in range(0, n, 10_000):
            with c.uow() as uow:
                for e in _entries(org.id, min(10_000, n - i), i):
                    uow.audit.append(e)
                uow.commit()
        fill = time.perf_counter() - t0
        c.audit_chain.checkpoint(force=True)
        t0 = time.perf_counter()
        [report] = c.audit_chain.verify(OPERATOR, "bench")
        dt = time.perf_counter() - t0
        assert report.ok, report.findings[:3]
        with c.database.reader() as uow:  # the ceiling: the same rows' canonical forms hashed, nothing else
            rows = []
            after = 0
            while True:
                batch = uow.audit.chain_entries(org.id, after_id=after, limit=5000)
                if not batch:
                    break
                rows += batch
                after = batch[-1].id or 0
        t1 = time.perf_counter()
        for e in rows:
            hashlib.sha256(canonical(e, e.chain_seq or 0, e.prev_hash or "")).hexdigest()
        hashing = time.perf_counter() - t1
        c.database.dispose()
    return {
        "entries": report.entries,
        "fill_per_s": round(n / fill),
        "verify_s": round(dt, 2),
        "verify_entries_per_s": round(report.entries / dt),
        "ceiling_hash_only_s": round(hashing, 2),
        "hash_over_verify": round(hashing / dt, 3),
    }


def run(quick: bool = False, http_too: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"validation_in_process": validation_in_process(50_000 if quick else 200_000)}
    if http_too:
        out["validation_http"] = validation_http(2 if quick else 5, 1 if quick else 3)
    out["detection"] = detection(10_000 if quick else 100_000, 100 if quick else 1000)
    with tempfile.TemporaryDirectory(prefix="tw-bench-audit-") as tmp:
        out["audit_append_sqlite"] = audit_append(f"sqlite:///{tmp}/a.db", 2_000 if quick else 20_000)
    out["verify"] = verify(50_000 if quick else 1_000_000)
    return out
