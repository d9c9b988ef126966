"""OAuth client watermarks (issue 11): a disabled or removed client's tokens are not live, on
every backend — the counts agree with what the validator refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.contract.test_repositories import T0, make_token, seed
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.domain.watermarks import CLIENT_REMOVED, END_OF_TIME, SubjectType
from tokenwarden.ports.repositories import Database


def test_client_watermarks_cut_only_that_clients_tokens(db: Database) -> None:
    org, alice = seed(db)
    now = T0 + timedelta(hours=10)
    early, late = T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    with db() as uow:
        for client, issued in (
            ("c_disabled", early),
            ("c_disabled", late),
            ("c_removed", late),
            ("c_ok", early),
        ):
            token = replace(
                make_token(alice, org, kind=TokenKind.REFRESH, created_at=issued), client_id=client
            )
            uow.tokens.add(token)
        uow.tokens.add(make_token(alice, org, created_at=early))  # a PAT: no client
        # disabled at hour 3: its token from hour 1 is dead, the one from hour 5 lives
        uow.watermarks.raise_to(SubjectType.CLIENT, ["c_disabled"], ["refresh"], T0 + timedelta(hours=3))
        # removed at hour 2, and for good: even its token issued at hour 5 is dead
        uow.watermarks.raise_to(SubjectType.CLIENT, ["c_removed"], ["refresh"], T0 + timedelta(hours=2))
        uow.watermarks.raise_to(SubjectType.CLIENT, ["c_removed"], [CLIENT_REMOVED], END_OF_TIME)
        uow.commit()
    with db() as uow:
        assert uow.tokens.count_live(issued_before=now, now=now) == {"refresh": 2, "pat": 1}
        assert uow.watermarks.for_subject(SubjectType.CLIENT, "c_removed")[CLIENT_REMOVED] == END_OF_TIME
        assert set(uow.watermarks.for_type(SubjectType.CLIENT)) == {"c_disabled", "c_removed"}
        live = uow.bulk_jobs.live_tokens_per_user([alice.id], ["refresh", "pat"], now, now, org_id=org.id)
        assert live == {alice.id: 3}
        # the break-glass preview counts what is really live too
        assert uow.break_glass.count_live(org.id, now=now, issued_before=now, org_marks={}) == {
            "refresh": 2,
            "pat": 1,
        }
