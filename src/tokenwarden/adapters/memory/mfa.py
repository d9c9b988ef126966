"""Second factors, recovery codes and step-ups in memory (issue 16)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.ports.mfa import MfaFactor


class MemoryMfaRepository(_Repo):
    def factor(self, user_id: str, *, lock: bool = False) -> MfaFactor | None:  # store lock serializes
        return self.s.mfa_factors.get(user_id)

    def save_factor(self, factor: MfaFactor) -> None:
        _set(self.s.mfa_factors, factor.user_id, factor, self.j)

    def advance_step(self, user_id: str, step: int) -> bool:
        factor = self.s.mfa_factors.get(user_id)
        if factor is None or factor.last_step >= step:
            return False
        _set(self.s.mfa_factors, user_id, factor.with_changes(last_step=step), self.j)
        return True

    def delete(self, user_id: str) -> bool:
        had = user_id in self.s.mfa_factors
        if had:
            _set(self.s.mfa_factors, user_id, self.s.mfa_factors[user_id], self.j)  # journal the old value
            del self.s.mfa_factors[user_id]
        self._drop_codes(user_id)
        step_ups = self.s.mfa_step_ups
        for credential in [k for k, (uid, _) in step_ups.items() if uid == user_id]:
            _set(step_ups, credential, step_ups[credential], self.j)
            del step_ups[credential]
        return had

    def _drop_codes(self, user_id: str) -> None:
        codes = self.s.mfa_codes
        for key in [k for k in codes if k[0] == user_id]:
            _set(codes, key, codes[key], self.j)
            del codes[key]

    def replace_codes(self, user_id: str, code_hashes: Sequence[bytes], at: datetime) -> None:
        self._drop_codes(user_id)
        for h in code_hashes:
            _set(self.s.mfa_codes, (user_id, h), None, self.j)

    def use_code(self, user_id: str, code_hash: bytes, at: datetime) -> bool:
        key = (user_id, code_hash)
        if key not in self.s.mfa_codes or self.s.mfa_codes[key] is not None:
            return False
        _set(self.s.mfa_codes, key, at, self.j)
        return True

    def unused_codes(self, user_id: str) -> int:
        return sum(1 for (uid, _), used in self.s.mfa_codes.items() if uid == user_id and used is None)

    def record_step_up(self, credential_hash: bytes, user_id: str, at: datetime) -> None:
        _set(self.s.mfa_step_ups, credential_hash, (user_id, at), self.j)

    def stepped_up_at(self, credential_hash: bytes) -> datetime | None:
        found = self.s.mfa_step_ups.get(credential_hash)
        return found[1] if found else None

    def confirmed_users(self, user_ids: Sequence[str]) -> set[str]:
        factors = self.s.mfa_factors
        return {u for u in user_ids if (f := factors.get(u)) is not None and f.confirmed_at is not None}
