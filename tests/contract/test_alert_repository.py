"""The alerts table's contract on every backend: one alert not closed per token and rule."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_repositories import T0
from tokenwarden.ports.alerts import CLOSED, Alert, AlertQuery, StoredPolicy
from tokenwarden.ports.repositories import Database


def alert(id: str, rule: str = "unknownNetwork", minutes: int = 0) -> Alert:
    at = T0 + timedelta(minutes=minutes)
    return Alert(id, "org-1", "tok-1", "user-1", rule, "high", "m", {"networks": ["203.0.113.0/24"]}, at, at)


def test_one_alert_not_closed_per_token_and_rule(db: Database) -> None:
    with db() as uow:
        assert uow.alerts.raise_alert(alert("a1")) is not None
        assert uow.alerts.raise_alert(alert("a2", minutes=1)) is None  # the same token and rule
        assert uow.alerts.raise_alert(alert("b1", rule="forbiddenBurst")) is not None
        uow.commit()
    with db() as uow:
        first = uow.alerts.get("a1")
        assert first is not None and first.occurrences == 2 and first.updated_at == T0 + timedelta(minutes=1)
        assert first.evidence == {"networks": ["203.0.113.0/24"]}
        uow.alerts.update(first.with_changes(status=CLOSED, closed_by="admin"))
        assert uow.alerts.raise_alert(alert("a3", minutes=2)) is not None  # closed frees the slot
        uow.commit()
    with db.reader() as uow:
        found = uow.alerts.find(AlertQuery("org-1"))
        assert [a.id for a in found] == ["a3", "a1", "b1"]  # newest first, then by id
        assert [
            a.id for a in uow.alerts.find(AlertQuery("org-1", statuses=("open",), rule="unknownNetwork"))
        ] == ["a3"]
        assert uow.alerts.find(AlertQuery("org-2")) == []
        counts = {(c.rule, c.status): c.count for c in uow.alerts.counts()}
        assert counts == {
            ("unknownNetwork", "open"): 1,
            ("unknownNetwork", "closed"): 1,
            ("forbiddenBurst", "open"): 1,
        }


def test_detection_policies_are_stored_per_organization(db: Database) -> None:
    with db() as uow:
        assert uow.alerts.policy("org-1") is None
        uow.alerts.set_policy(StoredPolicy("org-1", {"dormantDays": 30}, T0))
        uow.alerts.set_policy(StoredPolicy("org-1", {"dormantDays": 45}, T0))
        uow.commit()
    with db.reader() as uow:
        stored = uow.alerts.policy("org-1")
        assert stored is not None and stored.data == {"dormantDays": 45}
        assert uow.alerts.policy("org-2") is None
