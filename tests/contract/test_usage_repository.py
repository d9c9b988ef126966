"""The usage table's contract on every backend: counts add up, aggregates, pruning."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_repositories import T0, make_token, seed
from tokenwarden.domain.usage import UsageCount, minute_of
from tokenwarden.ports.repositories import Database

M0 = minute_of(T0.timestamp())


def count(
    token_id: str,
    org_id: str,
    minutes: int = 0,
    ip: str = "203.0.113.7",
    status: str = "2xx",
    n: int = 1,
    agent: str = "curl/8",
) -> UsageCount:
    net = ".".join(ip.split(".")[:3]) + ".0/24"
    return UsageCount(token_id, org_id, M0 + timedelta(minutes=minutes), ip, net, agent, "pats", status, n)


def test_counts_for_the_same_minute_and_client_add_up_across_flushes(db: Database) -> None:
    org, user = seed(db)
    token = make_token(user, org)
    with db() as uow:
        uow.tokens.add(token)
        uow.commit()
    tid = token.authorization_id
    for _ in range(2):  # two nodes flushing the same minute
        with db() as uow:
            uow.usage.add_counts([count(tid, org.id, n=3), count(tid, org.id, status="403", n=2)])
            uow.commit()
    with db() as uow:
        uow.usage.add_counts(
            [
                count(tid, org.id, minutes=60 * 24, ip="198.51.100.9", agent="python-httpx/0.28"),
                count(tid, org.id, minutes=60 * 24 + 1, status="401"),
            ]
        )
        uow.commit()
    with db.reader() as uow:
        totals = uow.usage.totals(tid, since=M0 - timedelta(days=1), recent_since=M0 + timedelta(hours=1))
        assert uow.usage.resolve([token.secret_hash, b"\0" * 16]) == {token.secret_hash: (tid, org.id)}
        assert uow.usage.requests_since([tid, "nobody"], M0) == {tid: 12}
        assert uow.usage.requests_since([tid], M0 + timedelta(hours=1)) == {tid: 2}
    assert totals.requests == 12
    assert totals.first_used == M0 and totals.last_used == M0 + timedelta(minutes=60 * 24 + 1)
    assert totals.per_day == [
        (M0.strftime("%Y-%m-%d"), 10),
        ((M0 + timedelta(days=1)).strftime("%Y-%m-%d"), 2),
    ]
    assert [(n, k) for n, k, _, _ in totals.networks] == [("203.0.113.0/24", 11), ("198.51.100.0/24", 1)]
    assert totals.user_agents == [("curl/8", 11), ("python-httpx/0.28", 1)]
    assert totals.statuses == {"2xx": 1, "401": 1}  # only the day after (recent_since)


def test_prune_removes_only_minutes_before_the_cut(db: Database) -> None:
    org, user = seed(db)
    token = make_token(user, org)
    with db() as uow:
        uow.tokens.add(token)
        uow.usage.add_counts([count(token.authorization_id, org.id, minutes=m) for m in (0, 1, 2)])
        uow.commit()
    with db() as uow:
        assert uow.usage.prune(M0 + timedelta(minutes=2)) == 2
        uow.commit()
    with db.reader() as uow:
        assert uow.usage.requests_since([token.authorization_id], M0 - timedelta(days=1)) == {
            token.authorization_id: 1
        }


def test_a_rolled_back_flush_leaves_nothing(db: Database) -> None:
    org, user = seed(db)
    token = make_token(user, org)
    with db() as uow:
        uow.tokens.add(token)
        uow.commit()
    with db() as uow:
        uow.usage.add_counts([count(token.authorization_id, org.id, n=5)])
    with db.reader() as uow:
        assert uow.usage.requests_since([token.authorization_id], M0) == {}
