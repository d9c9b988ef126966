"""Security alerts and detection policies in memory (issue 14)."""

from __future__ import annotations

from collections import Counter

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.ports.alerts import Alert, AlertQuery, OpenCount, StoredPolicy


class MemoryAlertRepository(_Repo):
    def raise_alert(self, alert: Alert) -> Alert | None:
        alerts = self.s.alerts
        existing = next(
            (a for a in alerts.values() if a.open_key is not None and a.open_key == alert.open_key), None
        )
        if existing is not None:
            grown = existing.with_changes(occurrences=existing.occurrences + 1, updated_at=alert.updated_at)
            _set(alerts, existing.id, grown, self.j)
            return None
        _set(alerts, alert.id, alert, self.j)
        return alert

    def get(self, alert_id: str) -> Alert | None:
        return self.s.alerts.get(alert_id)

    def update(self, alert: Alert) -> None:
        _set(self.s.alerts, alert.id, alert, self.j)

    def find(self, query: AlertQuery) -> list[Alert]:
        found = [
            a
            for a in self.s.alerts.values()
            if a.org_id == query.org_id
            and (not query.statuses or a.status in query.statuses)
            and (query.token_id is None or a.token_id == query.token_id)
            and (query.rule is None or a.rule == query.rule)
            and (query.level is None or a.level == query.level)
            and (query.before is None or a.created_at < query.before)
        ]
        found.sort(key=lambda a: (-a.created_at.timestamp(), a.id))
        return found[: query.limit]

    def counts(self) -> list[OpenCount]:
        n = Counter((a.org_id, a.rule, a.level, a.status) for a in self.s.alerts.values())
        return [OpenCount(o, r, lv, s, k) for (o, r, lv, s), k in n.items()]

    def policy(self, org_id: str) -> StoredPolicy | None:
        return self.s.detection_policies.get(org_id)

    def set_policy(self, policy: StoredPolicy) -> None:
        _set(self.s.detection_policies, policy.org_id, policy, self.j)
