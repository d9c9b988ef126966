"""Organization policies in memory."""

from __future__ import annotations

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.domain.policies import OrgPolicy


class MemoryPolicyRepository(_Repo):
    def get(self, org_id: str) -> OrgPolicy | None:
        return self.s.policies.get(org_id)

    def save(self, policy: OrgPolicy) -> None:
        _set(self.s.policies, policy.org_id, policy, self.j)
