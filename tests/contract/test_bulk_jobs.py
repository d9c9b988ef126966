"""The bulk-job repository's contract: every backend (memory, SQLite, PostgreSQL) passes it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.contract.test_repositories import T0, make_org, make_token, make_user, new_id
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import Membership, Organization, Role, User
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import BulkJob, BulkJobItem, Database, UpnMatch


def make_job(org: Organization, job_id: str | None = None, total: int = 3) -> BulkJob:
    return BulkJob(
        id=job_id or new_id().replace("-", ""),
        org_id=org.id,
        type="revoke_users",
        status="pending",
        kinds=("pat", "session"),
        dry_run=False,
        created_by=None,
        created_at=T0,
        updated_at=T0,
        total=total,
        source_name="users.csv",
    )


def make_items(job: BulkJob, upns: list[str]) -> list[BulkJobItem]:
    return [BulkJobItem(job.id, line, upn, "Pending") for line, upn in enumerate(upns, start=2)]


def seed_job(db: Database, upns: list[str]) -> tuple[Organization, BulkJob]:
    org = make_org()
    job = make_job(org, total=len(upns))
    with db() as uow:
        uow.orgs.add(org)
        uow.bulk_jobs.add(job, make_items(job, upns))
        uow.commit()
    return org, job


def test_add_and_get_round_trip_every_field(db: Database) -> None:
    _, job = seed_job(db, ["a@acme.test", "b@acme.test"])
    with db() as uow:
        assert uow.bulk_jobs.get(job.id) == job
        assert uow.bulk_jobs.get("0" * 32) is None
        items = uow.bulk_jobs.items(job.id)
    assert [(i.line_no, i.upn, i.status, i.error, i.revoked_count, i.processed_at) for i in items] == [
        (2, "a@acme.test", "Pending", None, 0, None),
        (3, "b@acme.test", "Pending", None, 0, None),
    ]


def test_same_id_twice_is_a_conflict_and_nothing_is_added(db: Database) -> None:
    _org, job = seed_job(db, ["a@acme.test"])
    with db() as uow:
        with pytest.raises(Conflict):
            uow.bulk_jobs.add(replace(job, total=9), [BulkJobItem(job.id, 99, "x@acme.test", "Pending")])
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.get(job.id) == job
        assert [i.line_no for i in uow.bulk_jobs.items(job.id)] == [2]


def test_uncommitted_job_leaves_no_trace(db: Database) -> None:
    org = make_org()
    with db() as uow:
        uow.orgs.add(org)
        uow.commit()
    job = make_job(org)
    with db() as uow:
        uow.bulk_jobs.add(job, make_items(job, ["a@acme.test"]))
    with db() as uow:
        assert uow.bulk_jobs.get(job.id) is None
        assert uow.bulk_jobs.items(job.id) == []


def test_pending_in_line_order_finish_only_pending_and_counts(db: Database) -> None:
    upns = [f"u{i}@acme.test" for i in range(7)]
    _, job = seed_job(db, upns)
    at = T0 + timedelta(minutes=1)
    with db() as uow:
        first = uow.bulk_jobs.pending(job.id, 3)
        assert [i.line_no for i in first] == [2, 3, 4]
        done = [replace(i, status="Success", revoked_count=2, processed_at=at) for i in first]
        done[1] = replace(done[1], status="Failed", error="unknown user", revoked_count=0)
        assert uow.bulk_jobs.finish_items(done) == 3
        uow.commit()
    with db() as uow:
        assert [i.line_no for i in uow.bulk_jobs.pending(job.id, 100)] == [5, 6, 7, 8]
        # finishing again does nothing: results are written once
        again = [replace(i, status="Skipped", error="x") for i in first]
        assert uow.bulk_jobs.finish_items(again) == 0
        assert uow.bulk_jobs.finish_items([]) == 0
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.counts(job.id) == {"Success": 2, "Failed": 1, "Pending": 4}
        items = {i.line_no: i for i in uow.bulk_jobs.items(job.id)}
    assert items[3].status == "Failed" and items[3].error == "unknown user"
    assert items[2].revoked_count == 2 and items[2].processed_at == at
    assert items[2].processed_at is not None and items[2].processed_at.utcoffset() == timedelta(0)


def test_claim_marks_running_until_completed(db: Database) -> None:
    _, job = seed_job(db, ["a@acme.test"])
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (1, 2, 3))
    with db() as uow:
        claimed = uow.bulk_jobs.claim(job.id, t1)
        assert claimed is not None and claimed.status == "running" and claimed.updated_at == t1
        assert uow.bulk_jobs.claim("f" * 32, t1) is None
        uow.commit()
    with db() as uow:
        uow.bulk_jobs.set_status(job.id, "completed", t2)
        uow.commit()
    with db() as uow:
        claimed = uow.bulk_jobs.claim(job.id, t3)
        assert claimed is not None and claimed.status == "completed" and claimed.updated_at == t3
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.get(job.id) == replace(job, status="completed", updated_at=t3)


def test_items_of_other_jobs_are_separate(db: Database) -> None:
    org, job = seed_job(db, ["a@acme.test", "b@acme.test"])
    other = make_job(org)
    with db() as uow:
        uow.bulk_jobs.add(other, make_items(other, ["c@acme.test"]))
        uow.commit()
    with db() as uow:
        assert [i.upn for i in uow.bulk_jobs.items(other.id)] == ["c@acme.test"]
        assert uow.bulk_jobs.counts(job.id) == {"Pending": 2}
        assert [i.upn for i in uow.bulk_jobs.pending(other.id, 10)] == ["c@acme.test"]


def test_a_job_without_items(db: Database) -> None:
    org = make_org()
    job = make_job(org, total=0)
    with db() as uow:
        uow.orgs.add(org)
        uow.bulk_jobs.add(job, [])
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.items(job.id) == [] and uow.bulk_jobs.counts(job.id) == {}


def _members(db: Database) -> tuple[Organization, Organization, list[User]]:
    acme, other = make_org("acme"), make_org("other")
    users = [make_user(f"User{i}@Acme.Test") for i in range(3)]
    with db() as uow:
        uow.orgs.add(acme)
        uow.orgs.add(other)
        for u in users:
            uow.users.add(u)
        uow.users.set_membership(Membership(acme.id, users[0].id, Role.MEMBER))
        uow.users.set_membership(Membership(acme.id, users[1].id, Role.ADMIN))
        uow.users.set_membership(Membership(other.id, users[2].id, Role.MEMBER))
        uow.commit()
    return acme, other, users


def test_match_upns_finds_users_and_membership_in_one_call(db: Database) -> None:
    acme, other, users = _members(db)
    keys = ["user0@acme.test", "user1@acme.test", "user2@acme.test", "nobody@acme.test", "user0@acme.test"]
    with db() as uow:
        found = uow.bulk_jobs.match_upns(acme.id, keys)
        assert found == {
            "user0@acme.test": UpnMatch(users[0].id, True, "User0@Acme.Test"),
            "user1@acme.test": UpnMatch(users[1].id, True, "User1@Acme.Test"),
            "user2@acme.test": UpnMatch(users[2].id, False, "User2@Acme.Test"),
        }
        assert uow.bulk_jobs.match_upns(other.id, ["user2@acme.test"]) == {
            "user2@acme.test": UpnMatch(users[2].id, True, "User2@Acme.Test")
        }
        assert uow.bulk_jobs.match_upns(acme.id, []) == {}


def test_match_upns_beyond_one_statement_of_parameters(db: Database) -> None:
    org = make_org()
    users = [make_user(f"u{i}@acme.test") for i in range(1200)]
    with db() as uow:
        uow.orgs.add(org)
        for u in users:
            uow.users.add(u)
            uow.users.set_membership(Membership(org.id, u.id, Role.MEMBER))
        uow.commit()
    with db() as uow:
        found = uow.bulk_jobs.match_upns(org.id, [f"u{i}@acme.test" for i in range(1300)])
    assert len(found) == 1200 and all(m.is_member for m in found.values())


def test_live_tokens_per_user_counts_only_live_tokens_of_the_kinds(db: Database) -> None:
    acme, beta, users = _members(db)
    now = T0 + timedelta(days=1)
    tokens = [
        make_token(users[0], beta),  # another organization's token: not this org's count
        make_token(users[0], acme),
        make_token(users[0], acme, kind=TokenKind.SESSION),
        make_token(users[0], acme, kind=TokenKind.REFRESH),  # kind not asked
        replace(make_token(users[0], acme), revoked_at=T0),  # revoked
        replace(make_token(users[0], acme), valid_to=now - timedelta(seconds=1)),  # expired
        make_token(users[0], acme, created_at=now + timedelta(seconds=1)),  # issued after the cut
        make_token(users[1], acme),
    ]
    with db() as uow:
        for token in tokens:
            uow.tokens.add(token)
        uow.commit()
    with db() as uow:
        counts = uow.bulk_jobs.live_tokens_per_user(
            [users[0].id, users[1].id, users[2].id, new_id()], ["pat", "session"], now, now, org_id=acme.id
        )
    assert counts == {users[0].id: 2, users[1].id: 1}


def test_a_job_being_created_takes_its_items_chunk_by_chunk(db: Database) -> None:
    """claim_creation says where the stored rows end; claim never makes such a job run."""
    org = make_org()
    job = replace(make_job(org, total=5), status="creating")
    items = make_items(job, [f"u{i}@acme.test" for i in range(5)])  # lines 2..6
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (1, 2, 3))
    with db() as uow:
        uow.orgs.add(org)
        uow.bulk_jobs.add(job, [])
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.claim_creation(job.id, t1) == 0  # nothing stored yet
        uow.bulk_jobs.add_items(items[:2])
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.claim_creation(job.id, t2) == 3
        uow.bulk_jobs.add_items(items[2:4])
        # rolled back: the next creator finds the same place
    with db() as uow:
        assert uow.bulk_jobs.claim_creation(job.id, t2) == 3
        claimed = uow.bulk_jobs.claim(job.id, t2)
        assert claimed is not None and claimed.status == "creating"  # not runnable yet
        uow.bulk_jobs.add_items(items[2:])
        uow.bulk_jobs.set_status(job.id, "pending", t3)
        uow.commit()
    with db() as uow:
        assert uow.bulk_jobs.claim_creation(job.id, t3) is None  # created: nothing more to store
        assert uow.bulk_jobs.claim_creation("f" * 32, t3) is None
        assert [i.line_no for i in uow.bulk_jobs.items(job.id)] == [2, 3, 4, 5, 6]
        assert uow.bulk_jobs.get(job.id) == replace(job, status="pending", updated_at=t3)
        claimed = uow.bulk_jobs.claim(job.id, t3)
        assert claimed is not None and claimed.status == "running"


def test_storing_a_line_twice_is_a_conflict(db: Database) -> None:
    _, job = seed_job(db, ["a@acme.test"])

    def store_line_2_again() -> None:
        with db() as uow:
            uow.bulk_jobs.add_items([BulkJobItem(job.id, 2, "again@acme.test", "Pending")])
            uow.commit()

    with pytest.raises(Conflict):
        store_line_2_again()
    with db() as uow:
        assert [i.upn for i in uow.bulk_jobs.items(job.id)] == ["a@acme.test"]
