"""Issue 12: scan 1,000,000 tokens for due warnings, enqueue 10,000 notifications, deliver
10,000 emails to a loopback SMTP server — each beside a ceiling measured in the same run.

* scan: a steady-state run of ``expiry-notifications`` (everything due already warned) over a
  SQLite file of N PATs with validTo spread over a year; ceiling: the bare indexed count of the
  same window (``SELECT count(*) … WHERE valid_to BETWEEN``), and a full-table count for scale.
* enqueue: NoticeWriter over 10,000 tokens (claim notices, resolve owners, write outbox rows);
  ceiling: ``executemany`` of 10,000 rows of the same width into a scratch table.
* deliver: OutboxDelivery over a real aiosmtpd server (one connection per batch, each answer
  recorded before the next message); ceiling: aiosmtplib sending the same rendered messages over
  one connection with nothing recorded.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text


def _seed(url: str, tokens: int, users: int = 1000) -> None:
    from tokenwarden.adapters.sql import tables as t

    engine = create_engine(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    rnd = random.Random(12)
    with engine.begin() as conn:
        org_id = conn.execute(select(t.orgs.c.id)).scalar_one()
        uids = [str(uuid.uuid4()) for _ in range(users)]
        conn.execute(
            insert(t.users),
            [
                {
                    "id": uid,
                    "upn": f"u{i}@example.com",
                    "upn_key": f"u{i}@example.com",
                    "display_name": f"u{i}",
                    "status": "active",
                    "risk_level": "none",
                    "identity_source": "local",
                    "created_at": now,
                    "risk_state": "none",
                }
                for i, uid in enumerate(uids)
            ],
        )
        conn.execute(
            insert(t.memberships), [{"org_id": org_id, "user_id": u, "role": "member"} for u in uids]
        )
        batch = 50_000
        for start in range(0, tokens, batch):
            conn.execute(
                insert(t.tokens),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "kind": "pat",
                        "user_id": uids[i % users],
                        "org_id": org_id,
                        "display_name": f"t{i}",
                        "scopes": "vso.code",
                        "secret_hash": secrets.token_bytes(16),
                        "pepper_id": "p1",
                        "valid_from": now - timedelta(days=1),
                        "valid_to": now + timedelta(days=rnd.uniform(-30, 365)),
                        "created_at": now - timedelta(days=1),
                    }
                    for i in range(start, min(tokens, start + batch))
                ],
            )
    engine.dispose()


def _container(data: Path, **settings: Any) -> Any:
    from tokenwarden.bootstrap import build
    from tokenwarden.settings import Settings

    c = build(Settings(data_dir=data, **settings), create_pepper=True)
    c.database.upgrade()
    return c


def scan(tokens: int, repeats: int = 3) -> dict[str, Any]:
    from tokenwarden.adapters.sql import tables as t

    with tempfile.TemporaryDirectory(prefix="tw-scan-") as tmp:
        data = Path(tmp) / "data"
        c = _container(data)
        c.directory.initialize("Acme", "admin@example.com")
        url = c.settings.resolved_database_url
        c.close()
        t0 = time.perf_counter()
        _seed(url, tokens)
        seeded = time.perf_counter() - t0
        c = _container(data)
        t0 = time.perf_counter()
        first = c.jobs.run("expiry-notifications")
        first_s = time.perf_counter() - t0
        steady = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            c.jobs.run("expiry-notifications")
            steady.append(time.perf_counter() - t0)
        engine = create_engine(url)
        now = datetime.now(UTC).replace(tzinfo=None)
        window, full = [], []
        with engine.connect() as conn:
            for _ in range(repeats):
                t0 = time.perf_counter()
                conn.execute(
                    select(func.count()).where(
                        t.tokens.c.valid_to >= now, t.tokens.c.valid_to < now + timedelta(days=30)
                    )
                ).scalar_one()
                window.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                conn.execute(text("SELECT count(*) FROM tokens WHERE revoked_at IS NULL")).scalar_one()
                full.append(time.perf_counter() - t0)
        engine.dispose()
        c.close()
    counts = first.counts if first else {}
    return {
        "tokens": tokens,
        "seconds_to_seed": round(seeded, 1),
        "first_run": {
            "seconds": round(first_s, 2),
            "warned": counts.get("warned"),
            "expired": counts.get("expired"),
        },
        "steady_run_seconds_median": round(statistics.median(steady), 3),
        "ceiling_window_count_seconds": round(statistics.median(window), 4),
        "full_table_count_seconds": round(statistics.median(full), 4),
        "goal": "steady run < 1 s",
    }


def enqueue(n: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    from tokenwarden.adapters.sql import tables as t
    from tokenwarden.domain.notices import EXPIRY_WARNING
    from tokenwarden.services.notices import Notice, NoticeWriter, token_entry

    rates, ceilings = [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory(prefix="tw-enq-") as tmp:
            data = Path(tmp) / "data"
            c = _container(data)
            c.directory.initialize("Acme", "admin@example.com")
            url = c.settings.resolved_database_url
            c.close()
            _seed(url, n, users=500)
            c = _container(data)
            now = c.clock.now()
            with c.uow() as uow:
                records = uow.lifecycle.expiring(
                    [__import__("tokenwarden.domain.tokens", fromlist=["TokenKind"]).TokenKind.PAT],
                    start=now - timedelta(days=400),
                    end=now + timedelta(days=400),
                    limit=n,
                )
            t0 = time.perf_counter()
            with c.uow() as uow:
                writer = NoticeWriter(uow, now, run_id=f"bench-{r}", base_url=None)
                writer.preload([rec.user_id for rec in records])
                notices = [
                    Notice(
                        rec,
                        f"expiry:7:{rec.valid_to.isoformat()}",
                        token_entry(rec, writer.user(rec.user_id), now),
                    )
                    for rec in records
                ]
                result = writer.write(EXPIRY_WARNING, notices)
                uow.commit()
            elapsed = time.perf_counter() - t0
            rates.append(result.messages / elapsed)
            engine = create_engine(url)
            rows = [
                {
                    "dedupe_key": f"k{i}",
                    "channel": "email",
                    "destination": "a@example.com",
                    "template": "expiry-warning",
                    "payload": {"tokens": [{"id": str(i)}]},
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for i in range(n)
            ]
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE scratch AS SELECT * FROM notification_outbox WHERE 0"))
                scratch = t.notification_outbox.to_metadata(
                    __import__("sqlalchemy").MetaData(), name="scratch"
                )
                t0 = time.perf_counter()
                conn.execute(insert(scratch), rows)
                ceilings.append(n / (time.perf_counter() - t0))
            engine.dispose()
            c.close()
    return {
        "notifications": n,
        "enqueued_per_second_median": round(statistics.median(rates)),
        "ceiling_executemany_rows_per_second": round(statistics.median(ceilings)),
        "goal": ">= 10,000/s",
    }


def deliver(n: int = 10_000) -> dict[str, Any]:
    import socket
    import subprocess
    import sys

    import aiosmtplib

    from tokenwarden.adapters.notify.smtp import SmtpEmailSender
    from tokenwarden.ports.lifecycle import OutboxMessage
    from tokenwarden.services.messages import email_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    # the SMTP server in a process of its own: in this one it would share our GIL
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        with tempfile.TemporaryDirectory(prefix="tw-dlv-") as tmp:
            c = _container(
                Path(tmp) / "data", smtp_host="127.0.0.1", smtp_port=port, smtp_from="tw@example.com"
            )
            init = c.directory.initialize("Acme", "admin@example.com")
            now = c.clock.now()
            payload = {
                "org": {"id": init.org.id, "name": "Acme"},
                "recipient": {"address": "a@example.com", "role": "owner"},
                "owner": {"upn": "a@example.com", "displayName": "A"},
                "digest": False,
                "baseUrl": None,
                "tokens": [
                    {
                        "id": str(uuid.uuid4()),
                        "displayName": "ci",
                        "kind": "pat",
                        "scopes": ["vso.code"],
                        "validTo": "2026-12-31T08:00:00Z",
                        "daysLeft": 7,
                        "threshold": 7,
                        "managedByRotation": False,
                        "renewalBlocked": None,
                        "owner": "a@example.com",
                        "lastUsedAt": None,
                        "revokeAt": None,
                        "reason": None,
                        "violations": [],
                        "graceUntil": None,
                        "action": None,
                    }
                ],
            }
            with c.uow() as uow:
                uow.outbox.enqueue(
                    [
                        OutboxMessage(
                            f"k{i}", "email", f"u{i}@example.com", "expiry-warning", payload, now, now
                        )
                        for i in range(n)
                    ]
                )
                uow.commit()
            t0 = time.perf_counter()
            report = c.delivery.deliver_due()
            ours = time.perf_counter() - t0
            c.close()
        rendered = [email_for(f"u{i}@example.com", "expiry-warning", payload, f"m{i}") for i in range(n)]
        sender = SmtpEmailSender("127.0.0.1", port, sender="tw@example.com")
        mimes = [sender.mime(m) for m in rendered]

        async def raw() -> float:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
            await smtp.connect()
            t0 = time.perf_counter()
            for i, m in enumerate(mimes):
                await smtp.send_message(m, sender="tw@example.com", recipients=[f"u{i}@example.com"])
            elapsed = time.perf_counter() - t0
            await smtp.quit()
            return elapsed

        ceiling = asyncio.run(raw())
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "emails": n,
        "sent": report.sent,
        "delivered_per_second": round(report.sent / ours),
        "ceiling_raw_aiosmtplib_per_second": round(n / ceiling),
        "ratio": round((report.sent / ours) / (n / ceiling), 2),
        "server": "aiosmtpd Sink handler in its own process, one connection per batch of 200",
    }


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "scan": scan(100_000 if quick else 1_000_000, repeats=2 if quick else 3),
        "enqueue": enqueue(2_000 if quick else 10_000, repeats=1 if quick else 3),
        "deliver": deliver(1_000 if quick else 10_000),
    }


if __name__ == "__main__":
    import json
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    quick = "--quick" in sys.argv
    fn = {"scan": lambda: scan(100_000 if quick else 1_000_000), "enqueue": enqueue, "deliver": deliver}
    print(json.dumps(run(quick) if which == "all" else fn[which](), indent=2))
