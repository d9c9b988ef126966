"""Issue 11 part 1: the storage operations browser sessions and local passwords depend on, on
every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_repositories import T0, make_token, seed
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import Database


def test_extend_session_is_a_compare_and_set_on_live_sessions_only(db: Database) -> None:
    org, user = seed(db)
    session = make_token(user, org, kind=TokenKind.SESSION)
    pat = make_token(user, org, kind=TokenKind.PAT)
    with db() as uow:
        uow.tokens.add(session)
        uow.tokens.add(pat)
        uow.commit()
    later = session.valid_to + timedelta(days=1)
    with db() as uow:
        assert uow.tokens.extend_session(pat.secret_hash, later, before=later) is False  # sessions only
        assert uow.tokens.extend_session(b"\0" * 16, later, before=later) is False
        assert uow.tokens.extend_session(session.secret_hash, later, before=session.valid_to) is False
        assert uow.tokens.extend_session(session.secret_hash, later, before=later) is True
        assert uow.tokens.extend_session(session.secret_hash, later, before=later) is False  # done once
        uow.commit()
    with db() as uow:
        stored = uow.tokens.get(session.authorization_id)
        assert stored is not None and stored.valid_to == later
        assert stored.with_changes(valid_to=session.valid_to) == session  # nothing else changed
        assert uow.tokens.get(pat.authorization_id) == pat
        uow.tokens.update(stored.with_changes(revoked_at=T0 + timedelta(hours=1), revoked_by="x"))
        uow.commit()
    much_later = later + timedelta(days=1)
    with db() as uow:  # a revoked session is never extended
        assert uow.tokens.extend_session(session.secret_hash, much_later, before=much_later) is False
    with db() as uow:
        stored = uow.tokens.get(session.authorization_id)
        assert stored is not None and stored.valid_to == later


def test_replace_password_hash_only_replaces_the_hash_it_read(db: Database) -> None:
    _, user = seed(db)
    with db() as uow:
        assert uow.oauth.password_hash(user.id) is None
        assert uow.oauth.replace_password_hash(user.id, "old", "new") is False
        uow.oauth.set_password_hash(user.id, "$argon2id$v=19$m=8,t=1,p=1$aa$bb", T0)
        uow.commit()
    with db() as uow:
        assert uow.oauth.replace_password_hash(user.id, "something else", "new") is False
        assert uow.oauth.replace_password_hash(user.id, "$argon2id$v=19$m=8,t=1,p=1$aa$bb", "$argon2id$new")
        uow.commit()
    with db() as uow:
        assert uow.oauth.password_hash(user.id) == "$argon2id$new"
