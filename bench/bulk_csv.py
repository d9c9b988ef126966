"""CSV revocation of 10,000 users, end to end: `tokenwarden revoke users --csv` on SQLite."""

from __future__ import annotations

import json
import os
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

from sqlalchemy import create_engine, insert, select

EXE = str(Path(sys.executable).parent / "tokenwarden")


def _seed(db_file: Path, users: int) -> None:
    """Members with one live PAT each, written set-based (the benchmark is the revocation)."""
    from tokenwarden.adapters.sql import tables as t  # bench may reach into the schema

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
                    "display_name": upn,
                    "status": "active",
                    "risk_level": "none",
                    "identity_source": "local",
                    "created_at": now,
                    "risk_state": "none",
                }
                for uid, upn in rows
            ],
        )
        conn.execute(
            insert(t.memberships), [{"org_id": org_id, "user_id": uid, "role": "member"} for uid, _ in rows]
        )
        conn.execute(
            insert(t.tokens),
            [
                {
                    "id": str(uuid.uuid4()),
                    "kind": "pat",
                    "user_id": uid,
                    "org_id": org_id,
                    "display_name": "p",
                    "scopes": "vso.code",
                    "secret_hash": secrets.token_bytes(16),
                    "pepper_id": "p1",
                    "valid_from": now - timedelta(minutes=1),
                    "valid_to": now + timedelta(days=30),
                    "created_at": now - timedelta(minutes=1),
                }
                for uid, _ in rows
            ],
        )
    engine.dispose()


def run(users: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="tw-csv-") as tmp:
            env = {**os.environ, "TOKENWARDEN_DATA_DIR": f"{tmp}/data"}
            env.pop("TOKENWARDEN_DATABASE_URL", None)
            subprocess.run(
                [EXE, "init", "--org", "bench", "--admin", "admin@example.com", "--json"],
                env=env,
                cwd=tmp,
                check=True,
                capture_output=True,
            )
            _seed(Path(tmp) / "data" / "tokenwarden.db", users)
            csv_file = Path(tmp) / "users.csv"
            csv_file.write_text(
                "UserPrincipalName\n" + "".join(f"user{i:05d}@example.com\n" for i in range(users))
            )
            t0 = time.perf_counter()
            out = subprocess.run(
                [
                    EXE,
                    "revoke",
                    "users",
                    "--org",
                    "bench",
                    "--csv",
                    str(csv_file),
                    "--out",
                    f"{tmp}/results.csv",
                    "--json",
                ],
                env=env,
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - t0)
            summary = json.loads(out.stdout)
    return {
        "users": users,
        "median_s": round(statistics.median(times), 2),
        "runs_s": [round(x, 2) for x in times],
        "summary": {k: summary.get(k) for k in ("success", "failed", "skipped", "revoked") if k in summary},
    }
