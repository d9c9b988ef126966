"""Token records in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from tokenwarden.adapters.memory._base import _cut_by_watermark, _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.tokens import ROTATED, TokenKind, TokenRecord


class MemoryTokenRepository(_Repo):
    def add(self, token: TokenRecord) -> None:
        if token.authorization_id in self.s.tokens or token.secret_hash in self.s.token_by_hash:
            raise Conflict("duplicate token")
        _set(self.s.tokens, token.authorization_id, token, self.j)
        _set(self.s.token_by_hash, token.secret_hash, token.authorization_id, self.j)

    def get(self, authorization_id: str) -> TokenRecord | None:
        return self.s.tokens.get(authorization_id)

    def by_hash(self, secret_hash: bytes) -> TokenRecord | None:
        auth_id = self.s.token_by_hash.get(secret_hash)
        return self.s.tokens.get(auth_id) if auth_id else None

    def update(self, token: TokenRecord) -> None:
        old = self.s.tokens.get(token.authorization_id)
        if old is None:
            return
        if old.secret_hash != token.secret_hash:
            del self.s.token_by_hash[old.secret_hash]
            self.j.append(lambda: self.s.token_by_hash.__setitem__(old.secret_hash, old.authorization_id))
            _set(self.s.token_by_hash, token.secret_hash, token.authorization_id, self.j)
        _set(self.s.tokens, token.authorization_id, token, self.j)

    def list_for_user(self, user_id: str, kind: TokenKind | None = None) -> list[TokenRecord]:
        found = [
            t for t in self.s.tokens.values() if t.user_id == user_id and (kind is None or t.kind is kind)
        ]
        return sorted(found, key=lambda t: (t.created_at, t.authorization_id))

    def count_live(
        self,
        *,
        user_ids: Sequence[str] | None = None,
        org_id: str | None = None,
        kinds: Sequence[str] | None = None,
        issued_before: datetime,
        now: datetime,
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            if (
                t.revoked_at is None
                and t.valid_to > now
                and t.valid_from < issued_before
                and (user_ids is None or t.user_id in user_ids)
                and (org_id is None or t.org_id == org_id)
                and (kinds is None or t.kind.value in kinds)
                and not _cut_by_watermark(self.s, t)
            ):
                counts[t.kind.value] = counts.get(t.kind.value, 0) + 1
        return counts

    def rehash(self, authorization_id: str, old_hash: bytes, new_hash: bytes, pepper_id: str) -> bool:
        current = self.s.tokens.get(authorization_id)
        if current is None or current.secret_hash != old_hash:
            return False
        self.update(replace(current, secret_hash=new_hash, pepper_id=pepper_id))
        return True

    def record_usage(self, uses: Sequence[tuple[bytes, datetime, str | None]]) -> None:
        for secret_hash, at, ip in uses:
            auth_id = self.s.token_by_hash.get(secret_hash)
            old = self.s.tokens.get(auth_id) if auth_id else None
            if old is not None and (old.last_used_at is None or old.last_used_at < at):
                _set(
                    self.s.tokens,
                    old.authorization_id,
                    replace(old, last_used_at=at, last_used_ip=ip),
                    self.j,
                )

    def family(self, family_id: str) -> list[TokenRecord]:
        found = [t for t in self.s.tokens.values() if t.family_id == family_id]
        return sorted(found, key=lambda t: (t.created_at, t.authorization_id))

    def children(self, parent_id: str) -> list[TokenRecord]:
        found = [t for t in self.s.tokens.values() if t.parent_id == parent_id]
        return sorted(found, key=lambda t: (t.created_at, t.authorization_id))

    def mark_rotated(self, authorization_id: str, at: datetime) -> bool:
        token = self.s.tokens.get(authorization_id)
        if token is None or token.rotated_at is not None or token.revoked_at is not None:
            return False
        rotated = replace(token, rotated_at=at, revoked_at=at, revoked_by=None, revoke_reason=ROTATED)
        _set(self.s.tokens, authorization_id, rotated, self.j)
        return True

    def revoke_family(self, family_id: str, at: datetime, by: str | None, reason: str) -> list[TokenRecord]:
        live = [t for t in self.family(family_id) if t.revoked_at is None]
        for token in live:
            changed = replace(token, revoked_at=at, revoked_by=by, revoke_reason=reason[:512])
            _set(self.s.tokens, token.authorization_id, changed, self.j)
        return live

    def extend_session(self, secret_hash: bytes, valid_to: datetime, *, before: datetime) -> bool:
        auth_id = self.s.token_by_hash.get(secret_hash)
        token = self.s.tokens.get(auth_id) if auth_id else None
        if (
            token is None
            or token.kind is not TokenKind.SESSION
            or token.revoked_at is not None
            or token.valid_to >= before
        ):
            return False
        _set(self.s.tokens, token.authorization_id, replace(token, valid_to=valid_to), self.j)
        return True
