"""OAuth clients, authorization codes, passwords and sign-in attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.engine import Row

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import _insert_unique
from tokenwarden.domain.oauth import AuthorizationCode, GrantType, OAuthClient


def _client_values(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "org_id": client.org_id,
        "name": client.name,
        "public": client.public,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": [g.value for g in client.grant_types],
        "scopes": list(client.scopes),
        "secret_hash": client.secret_hash,
        "pepper_id": client.pepper_id,
        "service_user_id": client.service_user_id,
        "created_by": client.created_by,
        "created_at": client.created_at,
        "disabled_at": client.disabled_at,
    }


def _client(row: Row[Any]) -> OAuthClient:
    return OAuthClient(
        client_id=row.client_id,
        org_id=row.org_id,
        name=row.name,
        public=bool(row.public),
        redirect_uris=tuple(row.redirect_uris),
        grant_types=tuple(GrantType(g) for g in row.grant_types),
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        secret_hash=None if row.secret_hash is None else bytes(row.secret_hash),
        pepper_id=row.pepper_id,
        service_user_id=row.service_user_id,
        created_by=row.created_by,
        disabled_at=row.disabled_at,
    )


def _code(row: Row[Any]) -> AuthorizationCode:
    return AuthorizationCode(
        code_hash=bytes(row.code_hash),
        client_id=row.client_id,
        user_id=row.user_id,
        org_id=row.org_id,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        family_id=row.family_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        code_challenge=row.code_challenge,
        code_challenge_method=row.code_challenge_method,
        session_id=row.session_id,
        used_at=row.used_at,
    )


class SqlOAuthRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    # ------------------------------------------------------------------ clients
    def add_client(self, client: OAuthClient) -> None:
        _insert_unique(self._c, t.oauth_clients, _client_values(client), f"client {client.client_id} exists")

    def get_client(self, client_id: str) -> OAuthClient | None:
        row = self._c.execute(select(t.oauth_clients).where(t.oauth_clients.c.client_id == client_id)).first()
        return _client(row) if row else None

    def client_by_secret_hash(self, secret_hash: bytes) -> OAuthClient | None:
        c = t.oauth_clients.c
        row = self._c.execute(select(t.oauth_clients).where(c.secret_hash == secret_hash)).first()
        return _client(row) if row else None

    def clients(self, org_id: str) -> list[OAuthClient]:
        c = t.oauth_clients.c
        stmt = select(t.oauth_clients).where(c.org_id == org_id).order_by(c.created_at, c.client_id)
        return [_client(r) for r in self._c.execute(stmt)]

    def update_client(self, client: OAuthClient) -> None:
        values = _client_values(client)
        del values["client_id"]
        c = t.oauth_clients.c
        self._c.execute(update(t.oauth_clients).where(c.client_id == client.client_id).values(**values))

    def delete_client(self, client_id: str) -> bool:
        c = t.oauth_clients.c
        return bool(self._c.execute(delete(t.oauth_clients).where(c.client_id == client_id)).rowcount)

    # ------------------------------------------------------------------ codes
    def add_code(self, code: AuthorizationCode) -> None:
        _insert_unique(
            self._c,
            t.oauth_codes,
            {
                "code_hash": code.code_hash,
                "client_id": code.client_id,
                "user_id": code.user_id,
                "org_id": code.org_id,
                "redirect_uri": code.redirect_uri,
                "scope": code.scope,
                "family_id": code.family_id,
                "code_challenge": code.code_challenge,
                "code_challenge_method": code.code_challenge_method,
                "session_id": code.session_id,
                "created_at": code.created_at,
                "expires_at": code.expires_at,
                "used_at": code.used_at,
            },
            "duplicate authorization code",
        )

    def get_code(self, code_hash: bytes) -> AuthorizationCode | None:
        row = self._c.execute(select(t.oauth_codes).where(t.oauth_codes.c.code_hash == code_hash)).first()
        return _code(row) if row else None

    def use_code(self, code_hash: bytes, at: datetime) -> bool:
        c = t.oauth_codes.c
        result = self._c.execute(
            update(t.oauth_codes).where(c.code_hash == code_hash, c.used_at.is_(None)).values(used_at=at)
        )
        return bool(result.rowcount)

    def purge_codes(self, before: datetime) -> int:
        c = t.oauth_codes.c
        return int(self._c.execute(delete(t.oauth_codes).where(c.expires_at < before)).rowcount)

    # ------------------------------------------------------------------ passwords
    def password_hash(self, user_id: str) -> str | None:
        c = t.users.c
        row = self._c.execute(select(c.password_hash).where(c.id == user_id)).first()
        return None if row is None else row[0]

    def set_password_hash(self, user_id: str, password_hash: str | None, at: datetime) -> None:
        c = t.users.c
        self._c.execute(
            update(t.users).where(c.id == user_id).values(password_hash=password_hash, password_changed_at=at)
        )

    def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        c = t.users.c
        result = self._c.execute(
            update(t.users).where(c.id == user_id, c.password_hash == old_hash).values(password_hash=new_hash)
        )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ sign-in attempts
    def record_attempt(self, upn_key: str, ip: str | None, at: datetime, success: bool) -> None:
        self._c.execute(
            t.sign_in_attempts.insert().values(upn_key=upn_key[:256], ip=ip, at=at, success=success)
        )

    def failures_since(self, *, since: datetime, upn_key: str | None = None, ip: str | None = None) -> int:
        a = t.sign_in_attempts.c
        stmt = select(func.count()).where(a.success.is_(False), a.at >= since)
        if upn_key is not None:
            last_ok = (
                select(func.max(a.at)).where(a.upn_key == upn_key, a.success.is_(True)).scalar_subquery()
            )
            stmt = stmt.where(a.upn_key == upn_key, (last_ok.is_(None)) | (a.at > last_ok))
        if ip is not None:
            stmt = stmt.where(a.ip == ip)
        return int(self._c.execute(stmt).scalar_one())

    def purge_attempts(self, before: datetime) -> int:
        a = t.sign_in_attempts.c
        return int(self._c.execute(delete(t.sign_in_attempts).where(a.at < before)).rowcount)
