"""A large CSV job stores its rows a chunk per transaction while it is ``creating`` (never
runnable on part of its input), and a crash while its rows are stored leaves a job that says so
and that the same input resumes (issue 10)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.e2e.conftest import Server, run_cli
from tests.e2e.test_bulk_revoke import (
    chunk_entries,
    post_csv,
    read_results,
    seed_members,
    sql,
    wait_completed,
)
from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories.bulk_jobs import SqlBulkJobRepository
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.bootstrap import build
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.watermarks import ALL_KINDS, parse_kinds
from tokenwarden.services.bulk_revoke import BulkRevokeService
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings


def _crash_on_store_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th chunk of stored rows fail inside its transaction (a crash)."""
    real = SqlBulkJobRepository.add_items
    calls = {"n": 0}

    def add_items(self: SqlBulkJobRepository, items: Any) -> None:
        calls["n"] += bool(items)
        if items and calls["n"] == call:
            raise RuntimeError("crash while the rows are stored")
        real(self, items)

    monkeypatch.setattr(SqlBulkJobRepository, "add_items", add_items)


def test_a_crash_while_the_rows_are_stored_leaves_a_job_that_says_so_never_runs_and_resumes(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = server.container
    upns = [f"user{i:02d}@acme.test" for i in range(30)]
    ids = seed_members(sql(c), server.org_id, upns)
    body = ("UserPrincipalName\n" + "\n".join([*upns, "ghost@acme.test"]) + "\n").encode()
    kinds = parse_kinds("pat,session")
    small = BulkRevokeService(c.uow, c.clock, store_chunk_size=10)
    _crash_on_store_call(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="crash while the rows are stored"):
        small.create_or_resume(OPERATOR, server.org, body, kinds)
    monkeypatch.undo()

    [job_id] = _job_ids(sql(c))
    status = c.bulk_revoke.status(OPERATOR, job_id)
    job = status.job
    # the truth: 20 of 31 rows stored, none done, and the job is not runnable
    assert (status.state, status.total, status.stored, status.done) == ("creating", 31, 20, 0)
    with pytest.raises(Conflict) as refused:
        c.bulk_revoke.run(OPERATOR, job.id)
    assert refused.value.code == "jobNotReady" and "20 of 31 rows stored" in refused.value.message
    r = server.client.get(f"/api/v1/orgs/{server.org}/jobs/{job.id}", headers=server.auth())
    assert r.status_code == 200
    shown = r.json()
    assert (shown["state"], shown["total"], shown["stored"], shown["done"]) == ("creating", 31, 20, 0)
    with sql(c).engine.connect() as conn:  # nothing was revoked
        assert conn.execute(select(func.count()).select_from(t.watermarks)).scalar_one() == 0
    assert chunk_entries(c) == []

    # the same input again finishes creating that job, then runs it: every user exactly once
    r = post_csv(server, body, kinds="session,pat")
    assert r.status_code == 202, r.text
    assert r.json()["jobId"] == job.id and r.json()["job"] == "resumed" and r.json()["resumed"] is True
    final = wait_completed(server, job.id)
    assert final["counts"] == {"Pending": 0, "Success": 30, "Failed": 1, "Skipped": 0}
    assert final["stored"] == final["done"] == final["total"] == 31
    r = server.client.get(f"/api/v1/orgs/{server.org}/jobs/{job.id}/results", headers=server.auth())
    assert [row[0] for row in read_results(r.text)] == [*upns, "ghost@acme.test"]
    seen = [uid for e in chunk_entries(c) for uid in e["userIds"]]
    assert sorted(seen) == sorted(ids.values())


def test_two_creators_of_one_job_take_turns(server: Server) -> None:
    c = server.container
    upns = [f"user{i:03d}@acme.test" for i in range(300)]
    seed_members(sql(c), server.org_id, upns)
    body = ("UserPrincipalName\n" + "\n".join(upns) + "\n").encode()
    small = BulkRevokeService(c.uow, c.clock, store_chunk_size=7)
    submission = small.submit(OPERATOR, server.org, body, ALL_KINDS)
    errors: list[BaseException] = []

    def creator() -> None:
        try:
            small.store_rows(OPERATOR, submission)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=creator) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    status = c.bulk_revoke.status(OPERATOR, submission.job.id)
    assert (status.state, status.stored, status.counts["Pending"]) == ("pending", 300, 300)
    assert [i.upn for i in c.bulk_revoke.results(OPERATOR, submission.job.id)] == upns


def test_cli_resumes_a_job_whose_creation_was_interrupted(
    cli_env: tuple[dict[str, str], SqlDatabase, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, database, org_id = cli_env
    upns = [f"user{i:03d}@acme.test" for i in range(120)]
    seed_members(database, org_id, upns)
    src = tmp_path / "users.csv"
    src.write_text("UserPrincipalName\n" + "\n".join(upns) + "\n", "utf-8")
    # what a CLI killed while storing the rows leaves behind (every kind: the CLI's default)
    c = build(Settings(data_dir=tmp_path / "data", database_url=""))
    try:
        small = BulkRevokeService(c.uow, c.clock, store_chunk_size=50)
        _crash_on_store_call(monkeypatch, 2)
        with pytest.raises(RuntimeError):
            small.create_or_resume(OPERATOR, "Acme", src.read_bytes(), parse_kinds(None), False, src.name)
        monkeypatch.undo()
    finally:
        c.close()

    r = run_cli(["revoke", "users", "--org", "Acme", "--csv", str(src), "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "interrupted while its rows were stored (50 of 120); nothing was revoked yet" in r.stderr
    summary = json.loads(r.stdout)
    assert summary["job"] == "resumed" and summary["state"] == "completed"
    assert (summary["total"], summary["success"], summary["revokedCount"]) == (120, 120, 120)


def _job_ids(database: SqlDatabase) -> list[str]:
    with database.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(select(t.bulk_jobs.c.id))]
