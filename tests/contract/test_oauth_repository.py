"""The OAuth storage port and the token-family operations, on every backend (memory, SQLite,
PostgreSQL); and the migrated schema equals the tables' metadata."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.contract.test_repositories import T0, make_token, new_id, seed
from tokenwarden.adapters.sql.tables import metadata
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.oauth import AuthorizationCode, GrantType, OAuthClient
from tokenwarden.domain.tokens import ROTATED, TokenKind
from tokenwarden.ports.repositories import Database
from tokenwarden.ports.signals import SigningKey


def test_the_migrations_build_exactly_the_schema_of_the_metadata(sql_db: SqlDatabase) -> None:
    with sql_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == []


def make_client(org_id: str, **changes: object) -> OAuthClient:
    client = OAuthClient(
        client_id="app-" + new_id()[:8],
        org_id=org_id,
        name="CI dashboard",
        public=False,
        redirect_uris=("https://app.example/cb",),
        grant_types=(GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN),
        scopes=("vso.code",),
        created_at=T0,
        secret_hash=new_id().encode(),
        pepper_id="p1",
    )
    return replace(client, **changes)  # type: ignore[arg-type]


def test_clients_round_trip_and_stay_in_their_org(db: Database) -> None:
    org, _ = seed(db)
    client = make_client(org.id)
    with db() as uow:
        uow.oauth.add_client(client)
        uow.commit()
    with db() as uow:
        assert uow.oauth.get_client(client.client_id) == client
        assert uow.oauth.client_by_secret_hash(client.secret_hash or b"") == client
        assert uow.oauth.clients(org.id) == [client]
        assert uow.oauth.clients(new_id()) == []
        with pytest.raises(Conflict):
            uow.oauth.add_client(client)
    disabled = client.with_changes(disabled_at=T0 + timedelta(hours=1), scopes=("vso.code", "vso.build"))
    with db() as uow:
        uow.oauth.update_client(disabled)
        uow.commit()
    with db() as uow:
        assert uow.oauth.get_client(client.client_id) == disabled
        assert uow.oauth.delete_client(client.client_id)
        assert not uow.oauth.delete_client(client.client_id)
        uow.commit()
    with db() as uow:
        assert uow.oauth.get_client(client.client_id) is None


def test_a_code_is_used_once_and_purged_after_expiry(db: Database) -> None:
    org, user = seed(db)
    code = AuthorizationCode(
        code_hash=b"h" * 32,
        client_id="app",
        user_id=user.id,
        org_id=org.id,
        redirect_uri="https://app.example/cb",
        scope="vso.code",
        family_id=new_id(),
        created_at=T0,
        expires_at=T0 + timedelta(minutes=1),
        code_challenge="x" * 43,
        code_challenge_method="S256",
    )
    with db() as uow:
        uow.oauth.add_code(code)
        uow.commit()
    with db() as uow:
        assert uow.oauth.get_code(code.code_hash) == code
        assert uow.oauth.use_code(code.code_hash, T0 + timedelta(seconds=5))
        assert not uow.oauth.use_code(code.code_hash, T0 + timedelta(seconds=6))
        assert not uow.oauth.use_code(b"other", T0)
        uow.commit()
    with db() as uow:
        stored = uow.oauth.get_code(code.code_hash)
        assert stored is not None and stored.used_at == T0 + timedelta(seconds=5)
        assert uow.oauth.purge_codes(T0) == 0
        assert uow.oauth.purge_codes(T0 + timedelta(minutes=2)) == 1
        uow.commit()
    with db() as uow:
        assert uow.oauth.get_code(code.code_hash) is None


def test_passwords_and_failed_attempts_since_the_last_success(db: Database) -> None:
    _, user = seed(db)
    with db() as uow:
        assert uow.oauth.password_hash(user.id) is None
        uow.oauth.set_password_hash(user.id, "$argon2id$v=19$x", T0)
        for minute in (1, 2, 3):
            uow.oauth.record_attempt("alice@acme.test", "10.0.0.1", T0 + timedelta(minutes=minute), False)
        uow.oauth.record_attempt("bob@acme.test", "10.0.0.1", T0 + timedelta(minutes=4), False)
        uow.commit()
    with db() as uow:
        assert uow.oauth.password_hash(user.id) == "$argon2id$v=19$x"
        assert uow.oauth.failures_since(since=T0, upn_key="alice@acme.test") == 3
        assert uow.oauth.failures_since(since=T0 + timedelta(minutes=2), upn_key="alice@acme.test") == 2
        assert uow.oauth.failures_since(since=T0, ip="10.0.0.1") == 4
        assert uow.oauth.failures_since(since=T0, ip="10.9.9.9") == 0
        uow.oauth.record_attempt("alice@acme.test", "10.0.0.1", T0 + timedelta(minutes=5), True)
        uow.oauth.record_attempt("alice@acme.test", "10.0.0.2", T0 + timedelta(minutes=6), False)
        uow.commit()
    with db() as uow:
        # a success resets the account's count, not the address's
        assert uow.oauth.failures_since(since=T0, upn_key="alice@acme.test") == 1
        assert uow.oauth.failures_since(since=T0, ip="10.0.0.1") == 4
        assert uow.oauth.purge_attempts(T0 + timedelta(minutes=3)) == 2
        uow.commit()
    with db() as uow:
        assert uow.oauth.failures_since(since=T0, ip="10.0.0.1") == 2


def test_refresh_rotation_is_compare_and_set_and_a_family_is_revoked_whole(db: Database) -> None:
    org, user = seed(db)
    family = new_id()
    first = replace(make_token(user, org, kind=TokenKind.REFRESH), family_id=family)
    second = replace(
        make_token(user, org, kind=TokenKind.REFRESH, created_at=T0 + timedelta(minutes=1)),
        family_id=family,
        parent_id=first.authorization_id,
    )
    access = replace(make_token(user, org, kind=TokenKind.ACCESS), family_id=family)
    other = replace(make_token(user, org, kind=TokenKind.REFRESH), family_id=new_id())
    with db() as uow:
        for token in (first, second, access, other):
            uow.tokens.add(token)
        uow.commit()
    with db() as uow:
        assert uow.tokens.mark_rotated(first.authorization_id, T0 + timedelta(minutes=1))
        assert not uow.tokens.mark_rotated(first.authorization_id, T0 + timedelta(minutes=2))
        assert [t.authorization_id for t in uow.tokens.children(first.authorization_id)] == [
            second.authorization_id
        ]
        assert {t.authorization_id for t in uow.tokens.family(family)} == {
            first.authorization_id,
            second.authorization_id,
            access.authorization_id,
        }
        revoked = uow.tokens.revoke_family(family, T0 + timedelta(minutes=3), None, "refresh token reused")
        uow.commit()
    # the rotated one was already dead (revoked as rotated): its first revocation stands
    assert {t.authorization_id for t in revoked} == {second.authorization_id, access.authorization_id}
    with db() as uow:
        assert all(t.revoked_at is not None for t in uow.tokens.family(family))
        rotated = uow.tokens.get(first.authorization_id)
        assert rotated is not None and rotated.revoke_reason == ROTATED
        assert rotated.revoked_at == rotated.rotated_at == T0 + timedelta(minutes=1)
        assert uow.tokens.revoke_family(family, T0 + timedelta(minutes=4), None, "again") == []
        stored_other = uow.tokens.get(other.authorization_id)
        assert stored_other is not None and stored_other.revoked_at is None
        assert not uow.tokens.mark_rotated(second.authorization_id, T0 + timedelta(minutes=5))  # revoked


def test_a_retired_key_is_published_until_its_tokens_have_expired(db: Database) -> None:
    key = SigningKey(
        kid="k1",
        alg="Ed25519",
        public_jwk={"kty": "OKP"},
        private_key=b"sealed",
        pepper_id="p",
        created_at=T0,
    )
    newer = replace(key, kid="k2", created_at=T0 + timedelta(hours=1))
    with db() as uow:
        uow.signals.add_key(key)
        uow.signals.add_key(newer)
        assert uow.signals.retire_key("k1", T0 + timedelta(hours=2))
        assert not uow.signals.retire_key("k1", T0 + timedelta(hours=3))
        uow.commit()
    with db() as uow:
        assert [k.kid for k in uow.signals.signing_keys("Ed25519")] == ["k2"]
        assert [k.kid for k in uow.signals.published_keys(T0 + timedelta(hours=1))] == ["k1", "k2"]
        assert [k.kid for k in uow.signals.published_keys(T0 + timedelta(hours=2))] == ["k2"]
