"""Security Event Tokens as SSF 1.0 / CAEP profile them: header, claims, one event per SET,
subjects, and a signature that verifies with the published JWKS."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from tokenwarden.bootstrap import Container
from tokenwarden.domain import secevent
from tokenwarden.domain.principals import User
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.services.signals import emit_session_revoked
from tokenwarden.services.signing import KEYS_INFO, SecretBox
from tokenwarden.services.ssf import Receiver

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"


def receiver(init: InitResult) -> Receiver:
    return Receiver(org_id=init.org.id, user_id=init.admin.id, is_admin=True)


def poll_stream(container: Container, init: InitResult, **body: Any) -> str:
    stream = container.ssf.create(receiver(init), body, "https://tw.example")
    return stream.stream_id


def sets_of(container: Container, init: InitResult, stream_id: str) -> list[str]:
    result = container.ssf.poll(receiver(init), stream_id, max_events=100, return_immediately=True)
    return list(result.sets.values())


def verify(container: Container, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = KeySet.import_key_set(container.ssf.keys.jwks())  # type: ignore[arg-type]
    compact = jws.deserialize_compact(token, keys, algorithms=["RS256"])
    return compact.headers(), json.loads(compact.payload)


def pat(container: Container, user: User, name: str = "ci", scope: str = "vso.code") -> str:
    issued = container.pats.create(
        OPERATOR,
        org="acme",
        user=user.id,
        display_name=name,
        scope=scope,
        valid_to=container.clock.now() + timedelta(days=5),
    )
    return issued.record.authorization_id


def test_a_revoked_pat_becomes_one_signed_credential_change_set(
    container: Container, init: InitResult, bob: User
) -> None:
    auth_id = pat(container, bob, name="deploy key")
    stream_id = poll_stream(container, init, aud="https://rs.example")
    container.pats.revoke(Actor(bob.id, bob.upn), auth_id, reason="rotated")
    [token] = sets_of(container, init, stream_id)
    header, claims = verify(container, token)

    assert header["typ"] == "secevent+jwt" and header["alg"] == "RS256"
    assert header["kid"] in {k["kid"] for k in container.ssf.keys.jwks()["keys"]}
    assert set(claims) == {"iss", "aud", "iat", "jti", "txn", "sub_id", "events"}
    assert "sub" not in claims and "exp" not in claims
    assert claims["iss"] == "https://tw.example" and claims["aud"] == "https://rs.example"
    assert isinstance(claims["iat"], int) and len(claims["jti"]) >= 16
    assert claims["sub_id"] == {"format": "email", "email": "bob@acme.test"}
    assert list(claims["events"]) == [CAEP + "credential-change"]  # exactly one event
    event = claims["events"][CAEP + "credential-change"]
    assert event["credential_type"] == "app" and event["change_type"] == "revoke"
    assert event["friendly_name"] == "deploy key" and event["credential_id"] == auth_id
    assert event["initiating_entity"] == "user" and event["reason_admin"] == {"en": "rotated"}
    assert isinstance(event["event_timestamp"], int)


def test_a_tampered_set_does_not_verify(container: Container, init: InitResult, bob: User) -> None:
    auth_id = pat(container, bob)
    stream_id = poll_stream(container, init)
    container.pats.revoke(OPERATOR, auth_id)
    [token] = sets_of(container, init, stream_id)
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(BadSignatureError):
        verify(container, f"{head}.{forged}.{sig}")


def test_jwks_is_public_rsa_2048_and_the_private_key_is_stored_encrypted(container: Container) -> None:
    jwks = container.ssf.keys.jwks()
    [key] = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
    assert len(modulus) * 8 >= 2048
    with container.uow() as uow:
        [stored] = uow.signals.signing_keys("RS256")
    assert b"PRIVATE KEY" not in stored.private_key
    pem = SecretBox(container.hasher, KEYS_INFO).open(
        stored.pepper_id, stored.private_key, stored.kid.encode()
    )
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert container.ssf.keys.jwks() == jwks  # created once, then reused


def test_bulk_revocation_makes_one_set_per_token_sharing_one_txn(
    container: Container, init: InitResult, bob: User
) -> None:
    ids = [pat(container, bob, name=f"t{i}") for i in range(3)]
    stream_id = poll_stream(container, init)
    assert container.pats.revoke_many(Actor(init.admin.id, init.admin.upn), "acme", ids) == 3
    claims = [verify(container, t)[1] for t in sets_of(container, init, stream_id)]
    assert len(claims) == 3 and len({c["jti"] for c in claims}) == 3
    assert len({c["txn"] for c in claims}) == 1
    assert {c["events"][CAEP + "credential-change"]["credential_id"] for c in claims} == set(ids)
    assert all(c["events"][CAEP + "credential-change"]["initiating_entity"] == "admin" for c in claims)


def test_scope_change_is_token_claims_change_and_create_is_credential_change(
    container: Container, init: InitResult, bob: User
) -> None:
    stream_id = poll_stream(container, init)
    auth_id = pat(container, bob, scope="vso.code")
    container.pats.update(Actor(bob.id, bob.upn), auth_id, scope="vso.code vso.build")
    container.pats.update(Actor(bob.id, bob.upn), auth_id, display_name="renamed")  # no scope change
    events = [verify(container, t)[1]["events"] for t in sets_of(container, init, stream_id)]
    assert [next(iter(e)) for e in events] == [CAEP + "credential-change", CAEP + "token-claims-change"]
    assert events[0][CAEP + "credential-change"]["change_type"] == "create"
    assert events[1][CAEP + "token-claims-change"]["claims"] == {"scope": "vso.code vso.build"}


def test_user_and_organization_revocations_are_session_revoked(
    container: Container, init: InitResult, bob: User
) -> None:
    stream_id = poll_stream(container, init, events_requested=[secevent.SESSION_REVOKED])
    admin = Actor(init.admin.id, init.admin.upn)
    container.revocation.revoke_user(admin, "acme", bob.upn, reason="left the company")
    container.break_glass.start(admin, "acme", "acme", reason="incident 42")
    subjects = []
    for token in sets_of(container, init, stream_id):
        claims = verify(container, token)[1]
        event = claims["events"][secevent.SESSION_REVOKED]
        assert event["initiating_entity"] == "admin"
        subjects.append((claims["sub_id"], event["reason_admin"]["en"]))
    assert subjects[0] == ({"format": "email", "email": "bob@acme.test"}, "left the company")
    assert subjects[1][0] == {"format": "opaque", "id": f"org:{init.org.id}"}  # ONE SET for the org
    assert "incident 42" in subjects[1][1]
    assert len(subjects) == 2  # the recovery PAT's credential-change was not requested


def test_removed_subjects_are_not_delivered_and_verification_always_is(
    container: Container, init: InitResult, bob: User, carol: User
) -> None:
    stream_id = poll_stream(container, init)
    who = receiver(init)
    container.ssf.remove_subject(who, stream_id, {"format": "email", "email": "BOB@acme.test"})
    container.ssf.verify(who, stream_id, "hello")
    pat(container, bob)
    pat(container, carol)
    claims = [verify(container, t)[1] for t in sets_of(container, init, stream_id)]
    assert [c["sub_id"] for c in claims] == [
        {"format": "opaque", "id": stream_id},
        {"format": "email", "email": "carol@acme.test"},
    ]
    assert claims[0]["events"] == {secevent.VERIFICATION: {"state": "hello"}}


def test_events_are_written_in_the_revocation_transaction(
    container: Container, init: InitResult, bob: User
) -> None:
    """A failing revocation leaves no event behind (the outbox row rolls back with it)."""
    auth_id = pat(container, bob)
    with container.uow() as uow:
        before = uow.signals.latest_event_id()
    with container.uow() as uow:  # left without commit(): rolled back
        emit_session_revoked(
            uow, container.clock, user=bob, org_id=None, initiating_entity="admin", reason_admin=None
        )
        assert uow.signals.latest_event_id() == before + 1
    with container.uow() as uow:
        assert uow.signals.latest_event_id() == before
    container.pats.revoke(OPERATOR, auth_id)
    with container.uow() as uow:
        assert uow.signals.latest_event_id() == before + 1


def test_iss_sub_subject_for_a_non_email_upn() -> None:
    assert secevent.user_subject("svc-robot", "u1") == {"format": "iss_sub", "iss": None, "sub": "u1"}
    claims = secevent.set_claims(
        iss="https://tw.example",
        aud=("a", "b"),
        jti="j",
        iat=datetime(2026, 1, 1, tzinfo=UTC),
        txn="t",
        sub_id=secevent.user_subject("svc-robot", "u1"),
        event_type=secevent.SESSION_REVOKED,
        event={},
    )
    assert claims["sub_id"] == {"format": "iss_sub", "iss": "https://tw.example", "sub": "u1"}
    assert claims["aud"] == ["a", "b"]


def test_ssf_manage_implies_ssf_read(container: Container) -> None:
    assert container.catalog.satisfies(["ssf.manage"], "ssf.read")
    assert not container.catalog.satisfies(["ssf.read"], "ssf.manage")
