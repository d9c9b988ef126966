"""Urgent revocations while a big CSV job runs, on SQLite: how long does one revocation wait?

A CSV of N members (one live PAT each) is revoked as a job — by the CLI in another process
(`tokenwarden revoke users --csv`), or by the service in a background thread of this process (as
the HTTP route does) — while this process revokes one PAT at a time through the PAT service
(`PatService.revoke`, the path `DELETE /api/v1/orgs/{org}/pats/{id}` takes), one every
``interval`` seconds. Each revocation's latency is recorded with the job's phase at that moment:
``submit`` (the CSV parsed and its items stored), ``run`` (the chunks applied) and, as a
reference, ``idle`` (no job at all).
"""

from __future__ import annotations

import os
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

from sqlalchemy import create_engine, insert, select

from bench.bulk_csv import EXE, _seed

VICTIMS = 10_000
RUNNABLE = ("pending", "running", "completed")


def _seed_victims(db_file: Path, count: int) -> list[str]:
    """One member holding ``count`` live PATs: the tokens revoked one by one."""
    from tokenwarden.adapters.sql import tables as t  # bench may reach into the schema

    engine = create_engine(f"sqlite:///{db_file}")
    now = datetime.now(UTC).replace(tzinfo=None)
    uid = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with engine.begin() as conn:
        org_id = conn.execute(select(t.orgs.c.id)).scalar_one()
        conn.execute(
            insert(t.users),
            [
                {
                    "id": uid,
                    "upn": "victim@example.com",
                    "upn_key": "victim@example.com",
                    "display_name": "victim",
                    "status": "active",
                    "risk_level": "none",
                    "identity_source": "local",
                    "created_at": now,
                    "risk_state": "none",
                }
            ],
        )
        conn.execute(insert(t.memberships), [{"org_id": org_id, "user_id": uid, "role": "member"}])
        conn.execute(
            insert(t.tokens),
            [
                {
                    "id": auth_id,
                    "kind": "pat",
                    "user_id": uid,
                    "org_id": org_id,
                    "display_name": "urgent",
                    "scopes": "vso.code",
                    "secret_hash": os.urandom(16),
                    "pepper_id": "p1",
                    "valid_from": now - timedelta(minutes=1),
                    "valid_to": now + timedelta(days=30),
                    "created_at": now - timedelta(minutes=1),
                }
                for auth_id in ids
            ],
        )
    engine.dispose()
    return ids


class _Phase:
    def __init__(self) -> None:
        self.name = "start"
        self.changed: list[tuple[str, float]] = []

    def set(self, name: str) -> None:
        self.name = name
        self.changed.append((name, time.perf_counter()))


def _summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def run(
    users: int = 30_000, mode: str = "cli", interval: float = 0.02, chunk_size: int | None = None
) -> dict[str, Any]:
    """Worst and typical latency of one urgent revocation per phase of a CSV job of ``users``."""
    from tokenwarden.adapters.sql import tables as t  # bench may reach into the schema
    from tokenwarden.bootstrap import build
    from tokenwarden.domain.watermarks import ALL_KINDS
    from tokenwarden.services.common import OPERATOR
    from tokenwarden.settings import Settings

    with tempfile.TemporaryDirectory(prefix="tw-contention-") as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(data)}
        env.pop("TOKENWARDEN_DATABASE_URL", None)
        subprocess.run(
            [EXE, "init", "--org", "bench", "--admin", "admin@example.com", "--json"],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        db_file = data / "tokenwarden.db"
        _seed(db_file, users)
        victims = _seed_victims(db_file, VICTIMS)
        csv_file = Path(tmp) / "users.csv"
        lines = "".join(f"user{i:05d}@example.com\n" for i in range(users))
        csv_bytes = f"UserPrincipalName\n{lines}".encode()
        csv_file.write_bytes(csv_bytes)
        c = build(Settings(data_dir=data, database_url=""))
        samples: dict[str, list[float]] = {"idle": [], "submit": [], "run": []}
        phase = _Phase()
        pending = iter(victims)

        def revoke_one(bucket: str) -> None:
            victim = next(pending, None)
            if victim is None:  # more samples than seeded tokens: enough
                return
            t0 = time.perf_counter()
            c.pats.revoke(OPERATOR, victim, reason="urgent")
            samples[bucket].append(time.perf_counter() - t0)

        for _ in range(100):  # reference: no job running
            revoke_one("idle")
            time.sleep(interval)

        done = threading.Event()
        failure: list[BaseException] = []
        t_start = time.perf_counter()
        if mode == "cli":
            log = (Path(tmp) / "cli.log").open("w")
            proc = subprocess.Popen(
                [EXE, "revoke", "users", "--org", "bench", "--csv", str(csv_file), "--json"]
                + (["--chunk-size", str(chunk_size)] if chunk_size else []),
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )

            def watch() -> None:
                # The job is runnable once its row says so: until then it is being submitted
                # (process start and the CSV parse are counted with the submission).
                phase.set("submit")
                engine = create_engine(f"sqlite:///{db_file}")
                runnable = select(t.bulk_jobs.c.id).where(t.bulk_jobs.c.status.in_(RUNNABLE))
                while proc.poll() is None:
                    if phase.name == "submit":
                        with engine.connect() as conn:
                            if conn.execute(runnable).first() is not None:
                                phase.set("run")
                    time.sleep(0.005)
                engine.dispose()
                log.close()
                if proc.returncode:
                    tail = (Path(tmp) / "cli.log").read_text()[-500:]
                    failure.append(RuntimeError(f"CLI exited {proc.returncode}: {tail}"))
                done.set()
        else:
            org = "bench"

            def watch() -> None:
                try:
                    phase.set("submit")
                    # every kind, as the CLI without --kinds
                    sub = c.bulk_revoke.create_or_resume(OPERATOR, org, csv_bytes, ALL_KINDS, False, "bench")
                    phase.set("run")
                    c.bulk_revoke.run(OPERATOR, sub.job.id, chunk_size=chunk_size)
                except BaseException as exc:
                    failure.append(exc)
                finally:
                    done.set()

        threading.Thread(target=watch, daemon=True).start()
        while not done.is_set():
            bucket = phase.name if phase.name in samples else "submit"
            revoke_one(bucket)
            time.sleep(interval)
        elapsed = time.perf_counter() - t_start
        c.close()
        if failure:
            raise failure[0]
        marks = dict(phase.changed)
        return {
            "users": users,
            "mode": mode,
            "interval_ms": round(interval * 1000),
            "job_s": round(elapsed, 2),
            "submit_s": round(marks.get("run", t_start) - marks.get("submit", t_start), 2),
            **{name: _summary(values) for name, values in samples.items()},
        }


if __name__ == "__main__":
    import json

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    how = sys.argv[2] if len(sys.argv) > 2 else "cli"
    chunk = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(run(size, how, chunk_size=chunk), indent=2))
