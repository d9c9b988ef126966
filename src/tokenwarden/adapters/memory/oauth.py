"""OAuth clients, authorization codes, passwords and sign-in attempts in memory."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tokenwarden.adapters.memory._base import OAuthTables, _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.oauth import AuthorizationCode, OAuthClient


class MemoryOAuthRepository(_Repo):
    @property
    def _t(self) -> OAuthTables:
        return self.s.oauth_tables

    # ------------------------------------------------------------------ clients
    def add_client(self, client: OAuthClient) -> None:
        if client.client_id in self._t.clients:
            raise Conflict(f"client {client.client_id} exists")
        if client.secret_hash is not None and self.client_by_secret_hash(client.secret_hash) is not None:
            raise Conflict("duplicate client secret")
        _set(self._t.clients, client.client_id, client, self.j)

    def get_client(self, client_id: str) -> OAuthClient | None:
        return self._t.clients.get(client_id)

    def client_by_secret_hash(self, secret_hash: bytes) -> OAuthClient | None:
        return next((c for c in self._t.clients.values() if c.secret_hash == secret_hash), None)

    def clients(self, org_id: str) -> list[OAuthClient]:
        found = [c for c in self._t.clients.values() if c.org_id == org_id]
        return sorted(found, key=lambda c: (c.created_at, c.client_id))

    def update_client(self, client: OAuthClient) -> None:
        if client.client_id in self._t.clients:
            _set(self._t.clients, client.client_id, client, self.j)

    def delete_client(self, client_id: str) -> bool:
        old = self._t.clients.pop(client_id, None)
        if old is None:
            return False
        self.j.append(lambda: self._t.clients.__setitem__(client_id, old))
        return True

    # ------------------------------------------------------------------ codes
    def add_code(self, code: AuthorizationCode) -> None:
        if code.code_hash in self._t.codes:
            raise Conflict("duplicate authorization code")
        _set(self._t.codes, code.code_hash, code, self.j)

    def get_code(self, code_hash: bytes) -> AuthorizationCode | None:
        return self._t.codes.get(code_hash)

    def use_code(self, code_hash: bytes, at: datetime) -> bool:
        code = self._t.codes.get(code_hash)
        if code is None or code.used_at is not None:
            return False
        _set(self._t.codes, code_hash, replace(code, used_at=at), self.j)
        return True

    def purge_codes(self, before: datetime) -> int:
        old = [h for h, c in self._t.codes.items() if c.expires_at < before]
        for h in old:
            code = self._t.codes.pop(h)
            self.j.append(lambda h=h, code=code: self._t.codes.__setitem__(h, code))  # type: ignore[misc]
        return len(old)

    # ------------------------------------------------------------------ passwords
    def password_hash(self, user_id: str) -> str | None:
        found = self._t.passwords.get(user_id)
        return None if found is None else found[0]

    def set_password_hash(self, user_id: str, password_hash: str | None, at: datetime) -> None:
        if user_id in self.s.users:
            _set(self._t.passwords, user_id, (password_hash, at), self.j)

    def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        found = self._t.passwords.get(user_id)
        if found is None or found[0] != old_hash:
            return False
        _set(self._t.passwords, user_id, (new_hash, found[1]), self.j)
        return True

    # ------------------------------------------------------------------ sign-in attempts
    def record_attempt(self, upn_key: str, ip: str | None, at: datetime, success: bool) -> None:
        self._t.attempts.append((upn_key, ip, at, success))
        self.j.append(lambda: self._pop(self._t.attempts))

    def failures_since(self, *, since: datetime, upn_key: str | None = None, ip: str | None = None) -> int:
        attempts = self._t.attempts
        if upn_key is not None:
            oks = [a[2] for a in attempts if a[0] == upn_key and a[3]]
            if oks:
                since = max(since, max(oks))
                attempts = [a for a in attempts if a[2] > since or (a[2] == since and not oks)]
        return sum(
            1
            for key, addr, at, ok in attempts
            if not ok and at >= since and (upn_key is None or key == upn_key) and (ip is None or addr == ip)
        )

    def purge_attempts(self, before: datetime) -> int:
        keep = [a for a in self._t.attempts if a[2] >= before]
        removed = len(self._t.attempts) - len(keep)
        if removed:
            old = self._t.attempts
            self.s.oauth_tables.attempts = keep
            self.j.append(lambda: setattr(self.s.oauth_tables, "attempts", old))
        return removed
