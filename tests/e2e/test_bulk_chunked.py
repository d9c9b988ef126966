"""A large CSV job never holds SQLite's one write lock for long (issue 10): its rows are stored a
chunk per transaction while the job is ``creating`` (never runnable on part of its input), it
leaves the lock free between chunks, and a crash while its rows are stored leaves a job that
says so and that the same input resumes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
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
from tokenwarden.bootstrap import build, memory_container
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.watermarks import ALL_KINDS, parse_kinds
from tokenwarden.services.bulk_revoke import MAX_PAUSE, MIN_PAUSE, BulkRevokeService
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings

BUSY_TIMEOUT = 1.0  # seconds a concurrent writer waits for the lock (the server waits 30)


class _Enough(Exception):
    """Stops the run once the concurrent writer has been seen getting in."""


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


def test_the_wired_service_leaves_the_lock_free_between_chunks_on_sqlite_only(server: Server) -> None:
    assert server.container.bulk_revoke.yield_ratio > 0
    assert memory_container().bulk_revoke.yield_ratio == 0


@pytest.mark.postgres
def test_on_postgresql_the_job_never_pauses(pg_server: Server) -> None:
    assert pg_server.container.bulk_revoke.yield_ratio == 0  # row locks: nobody waits on the job


def test_a_writer_with_a_short_busy_timeout_commits_while_a_big_job_is_created_and_run(
    server: Server, tmp_path: Path
) -> None:
    """Another connection (a CLI, another node's revocation) commits *between* the chunks of a
    job's stored rows — it sees the job ``creating`` with part of its rows — and between the
    chunks of its run, never waiting long enough to time out."""
    c = server.container
    members = [f"member{i:05d}@acme.test" for i in range(2_000)]
    seed_members(sql(c), server.org_id, members)
    rows = members + [f"ghost{i:05d}@acme.test" for i in range(28_000)]
    body = ("UserPrincipalName\n" + "\n".join(rows) + "\n").encode()
    # The wired pacing, with smaller chunks so that each transaction stays short even on a loaded
    # machine: what is tested is that other writers get in between chunks at all.
    service = BulkRevokeService(
        c.uow, c.clock, chunk_size=100, store_chunk_size=500, yield_ratio=c.bulk_revoke.yield_ratio
    )
    seen: list[tuple[str, int, int]] = []  # (job state, rows stored, rows done) at each commit
    failures: list[str] = []
    errors: list[BaseException] = []
    finished = threading.Event()

    def stop_when_seen(done: int, total: int) -> None:
        if sum(1 for state, _, done in seen if state == "running" and done > 0) >= 3:
            raise _Enough

    def job() -> None:
        try:
            submission = service.create_or_resume(OPERATOR, server.org, body, ALL_KINDS)
            service.run(OPERATOR, submission.job.id, stop_when_seen)
        except _Enough:
            pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.set()

    writer = sqlite3.connect(tmp_path / "data" / "tw.db", timeout=BUSY_TIMEOUT, isolation_level=None)
    thread = threading.Thread(target=job)
    thread.start()
    try:
        while not finished.is_set():
            try:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("UPDATE orgs SET name = name")
                job_row = writer.execute("SELECT id, status FROM bulk_jobs").fetchone()
                if job_row is not None:
                    stored, done = writer.execute(
                        "SELECT count(*), count(*) FILTER (WHERE status != 'Pending') "
                        "FROM bulk_job_items WHERE job_id = ?",
                        (job_row[0],),
                    ).fetchone()
                    seen.append((job_row[1], stored, done))
                writer.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # database is locked
                failures.append(str(exc))
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                continue
            time.sleep(0.002)
    finally:
        thread.join(timeout=120)
        writer.close()
    assert not errors, errors
    assert failures == [], f"{len(failures)} writes timed out after {BUSY_TIMEOUT}s: {failures[:3]}"
    between_stored_chunks = [s for s in seen if s[0] == "creating" and 0 < s[1] < len(rows)]
    assert between_stored_chunks, sorted(set(seen))[:10]
    assert all(done == 0 for state, _, done in seen if state == "creating")  # nothing runs early
    assert any(state == "running" and 0 < done < len(rows) for state, _, done in seen)


def test_the_job_leaves_the_lock_free_after_each_chunk_for_about_as_long_as_it_held_it(
    server: Server,
) -> None:
    c = server.container
    upns = [f"user{i:02d}@acme.test" for i in range(50)]
    seed_members(sql(c), server.org_id, upns)
    body = ("UserPrincipalName\n" + "\n".join(upns) + "\n").encode()
    pauses: list[float] = []
    service = BulkRevokeService(
        c.uow, c.clock, chunk_size=10, store_chunk_size=20, yield_ratio=1.0, sleep=pauses.append
    )
    job = service.create_or_resume(OPERATOR, server.org, body, ALL_KINDS).job
    assert len(pauses) == 2  # between the three chunks of stored rows (not after the last)
    service.run(OPERATOR, job.id)
    assert len(pauses) == 2 + 5  # after each of the five chunks of the run
    assert all(MIN_PAUSE <= p <= MAX_PAUSE for p in pauses)
    never: list[float] = []
    unpaced = BulkRevokeService(c.uow, c.clock, chunk_size=10, store_chunk_size=20, sleep=never.append)
    again = unpaced.create_or_resume(OPERATOR, server.org, body + b"extra@acme.test\n", ALL_KINDS)
    unpaced.run(OPERATOR, again.job.id)
    assert never == []


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


@pytest.mark.parametrize("backend", ["server", pytest.param("pg_server", marks=pytest.mark.postgres)])
def test_two_creators_of_one_job_take_turns(backend: str, request: pytest.FixtureRequest) -> None:
    """Two nodes storing the rows of the same job never store a row twice nor skip one."""
    server: Server = request.getfixturevalue(backend)
    c = server.container
    upns = [f"user{i:03d}@acme.test" for i in range(300)]
    seed_members(sql(c), server.org_id, upns)
    body = ("UserPrincipalName\n" + "\n".join(upns) + "\n").encode()
    small = BulkRevokeService(c.uow, c.clock, store_chunk_size=7, yield_ratio=c.bulk_revoke.yield_ratio)
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


def test_status_and_results_are_reads_that_never_wait_for_the_write_lock(
    server: Server, tmp_path: Path
) -> None:
    c = server.container
    body = b"UserPrincipalName\nnobody@acme.test\n"
    job = c.bulk_revoke.create_or_resume(OPERATOR, server.org, body, ALL_KINDS).job
    holder = sqlite3.connect(tmp_path / "data" / "tw.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock (a long chunk, a CLI ...)
    answers: list[object] = []
    try:
        reader = threading.Thread(
            target=lambda: answers.extend(
                [c.bulk_revoke.status(OPERATOR, job.id).state, len(c.bulk_revoke.results(OPERATOR, job.id))]
            )
        )
        reader.start()
        reader.join(timeout=5)
        assert answers == ["pending", 1]  # answered while the lock was held
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        reader.join(timeout=60)
