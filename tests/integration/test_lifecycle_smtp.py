"""Expiry warnings end to end: `tokenwarden jobs run` as a process, a real SMTP server (aiosmtpd
on loopback), a real SQLite file and PostgreSQL; kill -9 mid-run, SMTP down then back, two
schedulers racing. Each token hears each warning exactly once."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage as Parsed
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from tests.e2e.conftest import free_port, run_cli
from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.bootstrap import build
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings

# token name -> the one message it must get: a warning threshold, or "expired"
EXPECTED = {
    "T30x": 30,
    "T15x": 30,
    "T14x": 14,
    "T8x": 14,
    "T7x": 7,
    "T2x": 7,
    "T1x": 1,
    "T0x": "expired",
    "Tm1x": "expired",
}
DAYS = {
    "T31x": 31,
    "T30x": 30,
    "T15x": 15,
    "T14x": 14,
    "T8x": 8,
    "T7x": 7,
    "T2x": 2,
    "T1x": 1,
    "T0x": 0,
    "Tm1x": -1,
}
OWNER = "admin@acme.test"
PAT_CREATE = ["pat", "create", "--user", OWNER, "--org", "Acme"]


@dataclass
class Inbox:
    """aiosmtpd handler recording every accepted message; ``on_data`` may act before the reply."""

    received: list[Parsed] = field(default_factory=list)
    on_data: Callable[[int], bool] | None = None  # True: do not answer (the client was killed)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            if self.on_data is not None and self.on_data(len(self.received)):
                return "451 client gone"  # never acknowledged: the client is dead by now
            self.received.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def tokens(self, ids: dict[str, str]) -> list[tuple[str, object]]:
        """(token name, threshold or 'expired') of every message, from its headers."""
        names = {v: k for k, v in ids.items()}
        found: list[tuple[str, object]] = []
        for msg in self.received:
            if msg["X-Tokenwarden-Event"] not in ("token.expiring", "token.expired"):
                continue  # e.g. the weekly report a server sends at start-up
            tokens = [x.strip() for x in str(msg["X-Tokenwarden-Tokens"]).split(",")]
            if msg["X-Tokenwarden-Event"] == "token.expired":
                found += [(names[x], "expired") for x in tokens]
            else:
                thresholds = [int(x) for x in str(msg["X-Tokenwarden-Thresholds"]).split(",")]
                found += [(names[x], d) for x, d in zip(tokens, thresholds, strict=True)]
        return sorted(found, key=str)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def env_for(tmp_path: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    env.update(
        {
            "TOKENWARDEN_SMTP_HOST": "127.0.0.1",
            "TOKENWARDEN_SMTP_PORT": str(smtp_port),
            "TOKENWARDEN_SMTP_FROM": "tokenwarden@acme.test",
            "TOKENWARDEN_JOB_LEASE_SECONDS": "5",
            "TOKENWARDEN_NOTIFY_CLAIM_SECONDS": "5",
            "TOKENWARDEN_NOTIFY_RETRY_SECONDS": "0.01",
        }
    )
    env.update(extra)
    return env


def seed(env: dict[str, str], cwd: Path) -> dict[str, str]:
    """init (CLI) + one PAT per DAYS entry, made in-process (fast): validTo = now + N days,
    less a minute (the run is a moment later); 0 and -1 are already past."""
    r = run_cli(["init", "--org", "Acme", "--admin", OWNER, "--json"], env, cwd)
    assert r.returncode == 0, r.stderr
    settings = Settings(
        data_dir=Path(env["TOKENWARDEN_DATA_DIR"]), database_url=env.get("TOKENWARDEN_DATABASE_URL", "")
    )
    c = build(settings)
    ids = {}
    try:
        for name, days in DAYS.items():
            record = c.pats.create(
                OPERATOR, org="Acme", user=OWNER, display_name=name, scope="vso.code"
            ).record
            with c.uow() as uow:
                uow.tokens.update(
                    record.with_changes(valid_to=datetime.now(UTC) + timedelta(days=days, minutes=-1))
                )
                uow.commit()
            ids[name] = record.authorization_id
    finally:
        c.close()
    return ids


def expected_messages() -> list[tuple[str, object]]:
    return sorted(EXPECTED.items(), key=str)


def jobs_run(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["jobs", "run", "expiry-notifications", "--json"], env, cwd)


def test_pat_create_days_is_exact(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    env = env_for(tmp_path, inbox[1])
    assert run_cli(["init", "--org", "Acme", "--admin", OWNER], env, tmp_path).returncode == 0
    r = run_cli([*PAT_CREATE, "--name", "x", "--scope", "vso.code", "--days", "7", "--json"], env, tmp_path)
    pat = json.loads(r.stdout)
    valid_from = datetime.fromisoformat(pat["validFrom"].replace("Z", "+00:00"))
    valid_to = datetime.fromisoformat(pat["validTo"].replace("Z", "+00:00"))
    assert valid_to - valid_from == timedelta(days=7)


def test_each_warning_exactly_once_by_email(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    env = env_for(tmp_path, port)
    ids = seed(env, tmp_path)
    r = jobs_run(env, tmp_path)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["status"] == "completed" and run["counts"]["messages"] == {"sent": 9}
    assert box.tokens(ids) == expected_messages()
    assert {m["To"] for m in box.received} == {OWNER}  # no email set: the UPN
    for m in box.received:  # multipart, a stable Message-ID, never a secret
        assert m.get_body(preferencelist=("html",)) is not None and m["Message-ID"]
        assert "twp_" not in m.as_string()
    # again: nothing new is decided, nothing is sent twice
    again = jobs_run(env, tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["counts"]["warned"] == 0
    assert len(box.received) == 9
    status = run_cli(["jobs", "status", "--json"], env, tmp_path)
    runs = next(j for j in json.loads(status.stdout) if j["name"] == "expiry-notifications")["runs"]
    assert [r["status"] for r in runs] == ["completed", "completed"]


def test_smtp_down_then_back_delivers_once(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    dead_port = free_port()  # nothing listens there
    ids = seed(env_for(tmp_path, dead_port), tmp_path)
    r = jobs_run(env_for(tmp_path, dead_port), tmp_path)
    assert r.returncode == 0, r.stderr  # the run completed; its deliveries wait for a retry
    run = json.loads(r.stdout)
    assert run["counts"]["messages"] == {"pending": 9}
    assert any("SMTP" in e for e in run["counts"]["deliveryErrors"])
    text = run_cli(["jobs", "run", "expiry-notifications"], env_for(tmp_path, dead_port), tmp_path)
    assert text.returncode == 0 and "9 message(s) in the outbox in all wait for a retry" in text.stdout
    # the server is back: the waiting messages go, once
    time.sleep(0.1)
    d = run_cli(["notify", "deliver", "--json"], env_for(tmp_path, port), tmp_path)
    assert d.returncode == 0, d.stderr
    assert json.loads(d.stdout)["sent"] == 9
    assert box.tokens(ids) == expected_messages()
    again = run_cli(["notify", "deliver", "--json"], env_for(tmp_path, port), tmp_path)
    assert json.loads(again.stdout)["sent"] == 0 and len(box.received) == 9


def test_kill_9_mid_delivery_then_resume(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    """The job process dies while the SMTP server holds its 5th message (not yet answered):
    the four acknowledged ones are not sent again; the rest go on the next run."""
    box, port = inbox
    env = env_for(tmp_path, port)
    ids = seed(env, tmp_path)
    exe = Path(sys.executable).parent / "tokenwarden"
    proc = subprocess.Popen(
        [str(exe), "jobs", "run", "expiry-notifications"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill_at_fifth(count: int) -> bool:
        if count == 4:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            box.on_data = None
            return True
        return False

    box.on_data = kill_at_fifth
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert len(box.received) == 4
    # the dead run still holds the lease for a few seconds: a second run is refused honestly
    busy = jobs_run(env, tmp_path)
    assert busy.returncode == 75, busy.stdout + busy.stderr
    assert json.loads(busy.stdout)["error"]["code"] == "jobRunning"
    time.sleep(5.5)  # lease and message claims (5 s in this test) run out
    r = jobs_run(env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert box.tokens(ids) == expected_messages()  # each exactly once
    status = json.loads(run_cli(["jobs", "status", "--json"], env, tmp_path).stdout)
    runs = next(j for j in status if j["name"] == "expiry-notifications")["runs"]
    assert [r["status"] for r in runs] == ["completed", "interrupted"]


@pytest.mark.postgres
def test_two_schedulers_racing_on_postgres(
    tmp_path: Path, inbox: tuple[Inbox, int], postgres_database_factory: Callable[[], str]
) -> None:
    box, port = inbox
    url = postgres_database_factory()
    env = env_for(tmp_path, port, TOKENWARDEN_DATABASE_URL=url)
    database = SqlDatabase(url)
    try:
        ids = seed(env, tmp_path)
        exe = Path(sys.executable).parent / "tokenwarden"
        procs = [
            subprocess.Popen(
                [str(exe), "jobs", "run", "expiry-notifications", "--json"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        codes = sorted(p.wait(timeout=120) for p in procs)
        assert codes in ([0, 0], [0, 75]), [p.stderr.read() for p in procs if p.stderr]
        assert box.tokens(ids) == expected_messages()
        with database.engine.connect() as conn:
            notices = conn.execute(select(t.token_notices.c.token_id)).all()
        assert len(notices) == 9
    finally:
        database.dispose()


def test_bad_settings_and_names_fail_clearly(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    env = env_for(tmp_path, inbox[1])
    assert run_cli(["init", "--org", "Acme", "--admin", OWNER], env, tmp_path).returncode == 0
    bad = {**env, "TOKENWARDEN_JOB_SCHEDULES": "expiry-notifications=61 * * * *"}
    r = run_cli(["jobs", "status"], bad, tmp_path)
    assert r.returncode == 1 and "not a cron expression" in r.stderr and "invalidCron" in r.stderr
    r = run_cli(["jobs", "run", "nope"], env, tmp_path)
    assert r.returncode == 1 and "no job named 'nope'" in r.stderr


def test_smtp_password_never_shown(tmp_path: Path) -> None:
    password = "Hunter2-smtp-Passw0rd"
    env = env_for(tmp_path, free_port(), TOKENWARDEN_SMTP_USERNAME="tw", TOKENWARDEN_SMTP_PASSWORD=password)
    seed(env, tmp_path)
    outputs = [
        jobs_run(env, tmp_path),
        run_cli(["jobs", "run", "expiry-notifications"], env, tmp_path),
        run_cli(["jobs", "status", "--json"], env, tmp_path),
        run_cli(["notify", "outbox", "--json"], env, tmp_path),
        run_cli(["notify", "deliver"], {**env, "TOKENWARDEN_LOG_LEVEL": "debug"}, tmp_path),
    ]
    for r in outputs:
        assert r.returncode == 0, r.stderr
        assert password not in r.stdout and password not in r.stderr
    assert password.encode() not in (tmp_path / "data" / "tokenwarden.db").read_bytes()


def test_server_runs_jobs_at_start_up_and_health_shows_them(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    import httpx

    box, port = inbox
    env = env_for(tmp_path, port)
    ids = seed(env, tmp_path)
    http_port = free_port()
    exe = Path(sys.executable).parent / "tokenwarden"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(http_port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=2).json()
                job = next(j for j in health["jobs"] if j["name"] == "expiry-notifications")
                if job["lastRun"] and job["lastRun"]["status"] == "completed":
                    break
            except (httpx.HTTPError, StopIteration):
                pass
            time.sleep(0.2)
        assert job["lastRun"]["trigger"] == "startup" and job["lastRun"]["counts"]["warned"] == 7, job
        assert box.tokens(ids) == expected_messages()
        events = sorted(str(m["X-Tokenwarden-Event"]) for m in box.received)
        assert events.count("report.weekly") <= 1  # the start-up weekly report, if it went yet
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_weekly_report_email_once_a_week(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    env = env_for(tmp_path, port)
    seed(env, tmp_path)
    r = run_cli(["jobs", "run", "weekly-report", "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["counts"]["orgs"] == 1 and run["counts"]["messages"] == {"sent": 1}
    [mail] = box.received
    assert mail["To"] == OWNER and mail["X-Tokenwarden-Event"] == "report.weekly"
    html = mail.get_body(preferencelist=("html",))
    text = mail.get_body(preferencelist=("plain",))
    assert html is not None and "<table" in html.get_content()  # the inline chart of expiries per week
    assert text is not None and "T1x" in text.get_content()  # expiring soon, by name
    again = run_cli(["jobs", "run", "weekly-report", "--json"], env, tmp_path)
    assert again.returncode == 0 and len(box.received) == 1  # same ISO week: not sent twice
