"""The lifecycle repositories' contract (issue 12): every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from tests.contract.test_repositories import T0, make_org, make_token, make_user
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.lifecycle import JobRun, OutboxMessage, PolicyEnforcement
from tokenwarden.ports.repositories import Database


def message(key: str, **changes: object) -> OutboxMessage:
    base = OutboxMessage(
        dedupe_key=key,
        channel="email",
        destination="ana@example.com",
        template="expiry-warning",
        payload={"tokens": [{"id": key}]},
        created_at=T0,
        next_attempt_at=T0,
        org_id="org-1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_lease_is_exclusive_until_it_expires_or_is_released(db: Database) -> None:
    with db() as uow:
        assert uow.jobs.try_lease("expiry-notifications", "node-a", "r1", T0, T0 + timedelta(seconds=60))
        assert not uow.jobs.try_lease("expiry-notifications", "node-b", "r2", T0, T0 + timedelta(seconds=60))
        uow.commit()
    with db() as uow:
        # node-a died: once its lease has run out, node-b takes it over
        later = T0 + timedelta(seconds=61)
        assert uow.jobs.try_lease(
            "expiry-notifications", "node-b", "r2", later, later + timedelta(seconds=60)
        )
        assert not uow.jobs.renew("expiry-notifications", "node-a", later + timedelta(seconds=90))
        assert uow.jobs.renew("expiry-notifications", "node-b", later + timedelta(seconds=90))
        uow.jobs.release("expiry-notifications", "node-a", slot=T0)  # not the holder: no effect
        lease = uow.jobs.lease("expiry-notifications")
        assert lease is not None and lease.holder == "node-b" and lease.last_slot is None
        uow.jobs.release("expiry-notifications", "node-b", slot=T0)
        lease = uow.jobs.lease("expiry-notifications")
        assert lease is not None and lease.holder is None and lease.last_slot == T0
        uow.commit()


def test_runs_history_newest_first_and_interrupt(db: Database) -> None:
    with db() as uow:
        uow.jobs.start_run(JobRun("r1", "weekly-report", "schedule", "node-a", T0))
        uow.jobs.start_run(JobRun("r2", "weekly-report", "manual", "node-b", T0 + timedelta(minutes=1)))
        uow.jobs.start_run(JobRun("r3", "expiry-notifications", "startup", "node-b", T0))
        uow.jobs.finish_run(
            "r2", status="completed", at=T0 + timedelta(minutes=2), counts={"sent": 3}, error=None
        )
        assert uow.jobs.interrupt("weekly-report", except_run="r2", at=T0 + timedelta(minutes=3)) == 1
        uow.commit()
    with db.reader() as uow:
        runs = uow.jobs.runs("weekly-report")
        assert [r.id for r in runs] == ["r2", "r1"]
        assert runs[0].status == "completed" and runs[0].counts == {"sent": 3}
        assert runs[1].status == "interrupted" and runs[1].error
        assert {r.id for r in uow.jobs.runs()} == {"r1", "r2", "r3"}


def test_outbox_dedupes_claims_once_and_retries(db: Database) -> None:
    with db() as uow:
        assert uow.outbox.enqueue([message("a"), message("b"), message("a")]) == 2
        assert uow.outbox.enqueue([message("a"), message("c")]) == 1
        uow.commit()
    until = T0 + timedelta(seconds=60)
    with db() as uow:
        first = uow.outbox.claim_due(T0, until, "w1", limit=2)
        second = uow.outbox.claim_due(T0, T0 + timedelta(hours=1), "w2", limit=10)
        uow.commit()
    assert [m.dedupe_key for m in first] == ["a", "b"]
    assert [m.dedupe_key for m in second] == ["c"]  # never a message another worker holds
    a, b = first
    assert a.id is not None and b.id is not None
    with db() as uow:
        assert not uow.outbox.mark_sent(a.id, "w2", T0)  # not its claim
        assert uow.outbox.mark_sent(a.id, "w1", T0)
        assert uow.outbox.mark_failed(b.id, "w1", "421 busy", retry_at=T0 + timedelta(minutes=5), at=T0)
        uow.commit()
    with db() as uow:
        assert uow.outbox.claim_due(T0 + timedelta(minutes=1), until, "w3", limit=10) == []
        again = uow.outbox.claim_due(T0 + timedelta(minutes=5), until + timedelta(minutes=5), "w3", limit=10)
        assert [m.dedupe_key for m in again] == ["b"] and again[0].attempts == 1
        assert uow.outbox.mark_failed(b.id, "w3", "550 no such user", retry_at=None, at=T0)
        uow.commit()
    with db() as uow:
        dead = uow.outbox.find(status="dead")
        assert [m.dedupe_key for m in dead] == ["b"] and dead[0].last_error == "550 no such user"
        assert uow.outbox.counts() == {"sent": 1, "dead": 1, "sending": 1}
        assert uow.outbox.replay(b.id, T0) and not uow.outbox.replay(a.id, T0)
        uow.commit()
    with db.reader() as uow:
        m = uow.outbox.get(b.id)
        assert m is not None and m.status == "pending" and m.attempts == 0


def test_an_expired_claim_is_taken_over(db: Database) -> None:
    with db() as uow:
        uow.outbox.enqueue([message("a")])
        [held] = uow.outbox.claim_due(T0, T0 + timedelta(seconds=30), "dead-worker", limit=5)
        assert uow.outbox.claim_due(T0 + timedelta(seconds=10), T0 + timedelta(seconds=70), "w2", 5) == []
        [taken] = uow.outbox.claim_due(T0 + timedelta(seconds=31), T0 + timedelta(seconds=90), "w2", limit=5)
        assert taken.id == held.id and taken.claimed_by == "w2"
        assert held.id is not None and not uow.outbox.mark_sent(held.id, "dead-worker", T0)
        uow.commit()


def test_notices_are_claimed_once(db: Database) -> None:
    with db() as uow:
        won = uow.lifecycle.claim_notices([("t1", "expiry:30"), ("t2", "expiry:30"), ("t1", "expiry:30")], T0)
        assert won == {("t1", "expiry:30"), ("t2", "expiry:30")}
        assert uow.lifecycle.claim_notices([("t1", "expiry:30"), ("t1", "expiry:14")], T0) == {
            ("t1", "expiry:14")
        }
        uow.commit()
    with db.reader() as uow:
        assert set(uow.lifecycle.notices_of(["t1"])["t1"]) == {"expiry:30", "expiry:14"}


def test_expiring_is_a_window_with_a_cursor(db: Database) -> None:
    org, user = make_org(), make_user("ana@example.com")
    tokens = [
        replace(make_token(user, org), valid_to=T0 + timedelta(days=d), display_name=f"d{d}")
        for d in (1, 5, 9, 40)
    ]
    revoked = replace(make_token(user, org), valid_to=T0 + timedelta(days=2), revoked_at=T0)
    session = replace(make_token(user, org, kind=TokenKind.SESSION), valid_to=T0 + timedelta(days=3))
    with db() as uow:
        uow.orgs.add(org)
        uow.users.add(user)
        for tok in [*tokens, revoked, session]:
            uow.tokens.add(tok)
        uow.commit()
    with db.reader() as uow:
        window = {"start": T0, "end": T0 + timedelta(days=30)}
        page1 = uow.lifecycle.expiring([TokenKind.PAT], **window, limit=2)  # type: ignore[arg-type]
        assert [x.display_name for x in page1] == ["d1", "d5"]
        last = page1[-1]
        page2 = uow.lifecycle.expiring(
            [TokenKind.PAT],
            **window,  # type: ignore[arg-type]
            after=(last.valid_to, last.authorization_id),
        )
        assert [x.display_name for x in page2] == ["d9"]


def test_idle_tokens_by_last_use_or_creation(db: Database) -> None:
    org, user = make_org(), make_user("ana@example.com")
    used = replace(
        make_token(user, org), last_used_at=T0 + timedelta(days=50), valid_to=T0 + timedelta(days=300)
    )
    never = replace(make_token(user, org), valid_to=T0 + timedelta(days=300))
    expired = replace(make_token(user, org), valid_to=T0 + timedelta(days=10))
    with db() as uow:
        uow.orgs.add(org)
        uow.users.add(user)
        for tok in (used, never, expired):
            uow.tokens.add(tok)
        uow.commit()
    with db.reader() as uow:
        found = uow.lifecycle.idle(
            org.id, [TokenKind.PAT], unused_since=T0 + timedelta(days=40), now=T0 + timedelta(days=60)
        )
        assert [x.authorization_id for x in found] == [never.authorization_id]


def test_watchers_case_insensitive(db: Database) -> None:
    org, user = make_org(), make_user("ana@example.com")
    tok = make_token(user, org)
    with db() as uow:
        uow.orgs.add(org)
        uow.users.add(user)
        uow.tokens.add(tok)
        assert uow.lifecycle.add_watcher(tok.authorization_id, "Team@Example.com", None, T0)
        assert not uow.lifecycle.add_watcher(tok.authorization_id, "team@example.com", None, T0)
        assert uow.lifecycle.add_watcher(tok.authorization_id, "oncall@example.com", None, T0)
        uow.commit()
    with db() as uow:
        assert uow.lifecycle.watchers([tok.authorization_id]) == {
            tok.authorization_id: ["oncall@example.com", "Team@Example.com"]
        }
        assert uow.lifecycle.remove_watcher(tok.authorization_id, "TEAM@example.com")
        assert not uow.lifecycle.remove_watcher(tok.authorization_id, "team@example.com")
        uow.commit()


def test_enforcements(db: Database) -> None:
    org = make_org()
    with db() as uow:
        uow.orgs.add(org)
        e = PolicyEnforcement("e1", org.id, T0, T0 + timedelta(days=7), counts={"tokens": 2})
        uow.lifecycle.add_enforcement(e)
        uow.commit()
    with db() as uow:
        [pending] = uow.lifecycle.enforcements(org.id, "pending")
        assert pending.counts == {"tokens": 2}
        uow.lifecycle.update_enforcement(replace(pending, status="applied", applied_at=T0))
        uow.commit()
    with db.reader() as uow:
        assert uow.lifecycle.enforcements(status="pending") == []
        assert uow.lifecycle.enforcements(org.id)[0].status == "applied"


def test_racing_notice_claims_have_one_winner(sql_db: Database) -> None:
    """Two transactions claiming the same notices at once: each pair is won exactly once."""
    keys = [(f"t{i}", "expiry:7") for i in range(200)]
    results: list[set[tuple[str, str]]] = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        barrier.wait()
        with sql_db() as uow:
            results.append(uow.lifecycle.claim_notices(keys, T0))
            uow.commit()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(results) == 2
    assert results[0].isdisjoint(results[1])
    assert results[0] | results[1] == set(keys)


def test_watched_by_finds_an_address_s_watches_on_live_pats_of_one_org(db: Database) -> None:
    org, other_org = make_org(), make_org("globex")
    owner = make_user("owner@example.com")
    live, revoked, expired = make_token(owner, org), make_token(owner, org), make_token(owner, org)
    elsewhere = make_token(owner, other_org)
    revoked = replace(revoked, revoked_at=T0)
    expired = replace(expired, valid_to=T0 - timedelta(days=1))
    with db() as uow:
        uow.orgs.add(org)
        uow.orgs.add(other_org)
        uow.users.add(owner)
        for tok in (live, revoked, expired, elsewhere):
            uow.tokens.add(tok)
            uow.lifecycle.add_watcher(tok.authorization_id, "Leaver@Example.com", None, T0)
        uow.lifecycle.add_watcher(live.authorization_id, "stays@example.com", None, T0)
        uow.commit()
    with db.reader() as uow:
        found = uow.lifecycle.watched_by(org.id, ["leaver@example.COM", "nobody@example.com"], T0)
        assert found == [(live.authorization_id, owner.id, "Leaver@Example.com")]
        assert uow.lifecycle.watched_by(org.id, [], T0) == []
        assert uow.lifecycle.watched_by(other_org.id, ["leaver@example.com"], T0) == [
            (elsewhere.authorization_id, owner.id, "Leaver@Example.com")
        ]
