"""Issue 11 benchmarks: what the hot path remembers changes no decision.

* The Validator remembers a verified, stored JWT's cache key by the JWT's text (hashing ~620
  bytes was most of a JWT validation): a JWT differing in any byte never rides on it, and a
  remembered one is refused as soon as it is revoked.
* ``validate_in_memory`` hashes the secret once (it used to hash it again in ``validate``).
* The introspection endpoint remembers the JSON of an active answer per token, keyed on the
  very cache entry and owner state the Validator answered with.
* The introspection door's form parser equals ``parse_qs``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_oauth_server import ISSUER, _tamper, post, register
from tokenwarden.bootstrap import Container, memory_container
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.oauth import GrantType, OAuthClient
from tokenwarden.http.introspect_door import MAX_FIELDS, parse_form
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.validation import UserState
from tokenwarden.settings import Settings

from .conftest import FakeClock


@pytest.fixture
def c() -> Container:
    clock = FakeClock(datetime.now(UTC) - timedelta(minutes=5))
    container = memory_container(Settings(staleness_seconds=3600.0), clock=clock)
    container.directory.initialize("acme", "admin@acme.test")
    return container


def access_token(c: Container) -> tuple[OAuthClient, str, str]:
    client, secret = register(c, grants=(GrantType.CLIENT_CREDENTIALS,))
    _, body, _ = c.oauth.token(post({"grant_type": "client_credentials"}, (client.client_id, secret)), ISSUER)
    return client, secret, str(body["access_token"])


class Counting:
    """Wraps the Validator's hash function and counts its calls."""

    def __init__(self, c: Container) -> None:
        self.calls = 0
        inner = c.validator._hash

        def counted(secret: str) -> bytes:
            self.calls += 1
            return inner(secret)

        c.validator._hash = counted  # type: ignore[method-assign]


def fresh(text: str) -> str:
    """A new string object equal to ``text`` (as a request parser would make)."""
    return text.encode().decode()


def test_a_remembered_jwt_is_looked_up_by_its_text_without_hashing(c: Container) -> None:
    _, _, jwt = access_token(c)
    c.validator.validate(jwt)  # the miss: signature verified, record found and cached
    c.validator.validate(jwt)  # found in the cache: now remembered by text
    assert c.validator._jwt_keys == {jwt: c.hasher.hash(jwt)}
    counter = Counting(c)
    for _ in range(3):
        assert c.validator.validate(fresh(jwt), "vso.code").token.kind.value == "access"
        assert c.validator.validate_in_memory(fresh(jwt), "vso.code") is not None
    assert counter.calls == 0


@pytest.mark.parametrize(
    "forge",
    [
        lambda jwt: _tamper(jwt, claims={"scope": "app_token"}),  # claims changed, signature kept
        lambda jwt: _tamper(jwt, claims={"sub": "someone-else"}),
        lambda jwt: _tamper(jwt, header={"kid": "another"}),  # header changed
        lambda jwt: _tamper(jwt, header={"alg": "none"}),
        lambda jwt: jwt[:-2] + ("AA" if not jwt.endswith("AA") else "BB"),  # signature changed
        lambda jwt: jwt + "A",  # one byte longer
        lambda jwt: jwt[:-1],  # one byte shorter
    ],
)
def test_a_jwt_differing_in_any_byte_never_rides_on_a_remembered_one(c: Container, forge: Any) -> None:
    _, _, jwt = access_token(c)
    for _ in range(3):
        c.validator.validate(jwt)
    forged = forge(jwt)
    assert forged != jwt
    for _ in range(2):  # refused on the miss and again from the negative cache
        with pytest.raises(InvalidToken):
            c.validator.validate(forged)
        with pytest.raises(InvalidToken):
            c.validator.validate_in_memory(forged)
    assert forged not in c.validator._jwt_keys
    assert c.validator.validate(jwt).token.kind.value == "access"  # the real one still works


def test_a_remembered_jwt_is_refused_once_revoked(c: Container) -> None:
    client, secret, jwt = access_token(c)
    for _ in range(3):
        c.validator.validate(jwt)
    assert jwt in c.validator._jwt_keys
    status, _, _ = c.oauth.revoke(post({"token": jwt}, (client.client_id, secret)), ISSUER)
    assert status == 200
    with pytest.raises(InvalidToken, match="revoked"):
        c.validator.validate(fresh(jwt))
    with pytest.raises(InvalidToken, match="revoked"):
        c.validator.validate_in_memory(fresh(jwt))


def test_a_remembered_jwt_is_refused_after_break_glass(c: Container) -> None:
    _, _, jwt = access_token(c)
    for _ in range(3):
        c.validator.validate(jwt)
    c.clock.advance(seconds=1)  # type: ignore[attr-defined]
    c.break_glass.start(OPERATOR, "acme", confirm="acme", reason="drill", operator_override=True)
    with pytest.raises(InvalidToken, match="revoked"):
        c.validator.validate(fresh(jwt))


def test_only_stored_jwts_are_remembered_and_the_memo_is_bounded(c: Container) -> None:
    garbage = "eyJ" + "A" * 600
    for _ in range(3):
        with pytest.raises(InvalidToken):
            c.validator.validate(garbage)
    assert c.validator._jwt_keys == {}
    c.validator._jwt_keys_max = 2
    jwts = [access_token(c)[2] for _ in range(3)]
    for jwt in jwts:
        c.validator.validate(jwt)
        c.validator.validate(jwt)
    assert len(c.validator._jwt_keys) <= 2
    for jwt in jwts:  # forgetting costs a hash, never a decision
        assert c.validator.validate(fresh(jwt)).token.kind.value == "access"


def test_validate_in_memory_hashes_a_pat_once(c: Container) -> None:
    pat = c.pats.create(OPERATOR, org="acme", user="admin@acme.test", display_name="p", scope="vso.code")
    c.validator.validate(pat.secret)
    counter = Counting(c)
    assert c.validator.validate_in_memory(pat.secret, "vso.code") is not None
    assert counter.calls == 1


# ---------------------------------------------------------------------------- introspection


def introspect(c: Container, client: OAuthClient, secret: str, token: str, issuer: str = ISSUER) -> Any:
    auth = "Basic " + base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
    form = {"token": [token]}
    answer = c.introspector.introspect(auth, form, issuer, None, in_memory=True)  # as the door does
    if answer is None:  # a cache miss: what the door runs in a worker thread
        answer = c.introspector.introspect(auth, form, issuer, None, in_memory=False)
    assert answer is not None
    return json.loads(answer.content())


def test_a_remembered_introspection_answer_follows_the_owner_state_and_the_issuer(c: Container) -> None:
    client, secret, jwt = access_token(c)
    first = introspect(c, client, secret, jwt)
    assert first["active"] is True and first["iss"] == ISSUER
    assert introspect(c, client, secret, fresh(jwt)) == first
    other = introspect(c, client, secret, jwt, issuer="http://127.0.0.1:9999")
    assert other["active"] is True  # the JWT's own iss claim wins, as before
    # A new owner state (the Validator replaces it on any change) is a new answer.
    owner = c.validator.validate(jwt).user
    c.validator._users[owner.id] = UserState(owner.id, "renamed@clients.acme", True, owner.members)
    c.validator._gen += 1  # as applying the change that replaced it does
    assert introspect(c, client, secret, jwt)["username"] == "renamed@clients.acme"
    c.oauth.revoke(post({"token": jwt}, (client.client_id, secret)), ISSUER)
    assert introspect(c, client, secret, jwt) == {"active": False}


def test_introspecting_a_pat_answers_its_owner(c: Container) -> None:
    client, secret = register(c, grants=(GrantType.CLIENT_CREDENTIALS,))
    pat = c.pats.create(OPERATOR, org="acme", user="admin@acme.test", display_name="p", scope="vso.code")
    c.validator.validate(pat.secret)
    for _ in range(2):
        body = introspect(c, client, secret, pat.secret)
        assert body["active"] is True and body["username"] == "admin@acme.test"
        assert body["token_use"] == "pat" and body["scope"] == "vso.code"


# ---------------------------------------------------------------------------- the door's form


_FORMISH = st.text(alphabet="ab=&;%+2F0x é\x00", max_size=40)


@given(_FORMISH)
def test_the_door_form_parser_is_parse_qs(text: str) -> None:
    def outcome(parse: Any) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            return type(exc), str(exc)

    assert outcome(parse_form) == outcome(
        lambda t: parse_qs(t, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    )


@pytest.mark.parametrize("fields", [MAX_FIELDS - 1, MAX_FIELDS, MAX_FIELDS + 1])
def test_the_door_form_parser_keeps_the_field_limit(fields: int) -> None:
    text = "&".join(["a=b"] * fields)
    expected: Any
    try:
        expected = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        with pytest.raises(ValueError, match="Max number of fields"):
            parse_form(text)
        return
    assert parse_form(text) == expected


# ---------------------------------------------------------------------------- the bell


def test_each_commit_announces_its_own_events_before_applying_them_here(
    c: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    rung: list[tuple[int, list[Any], int]] = []
    monkeypatch.setattr(c.bus, "publish", lambda a: rung.append((a.seq, list(a.events), c.validator.seq)))
    from tokenwarden.domain.events import EventType, InvalidationEvent

    def commit_event(user_id: str) -> None:
        with c.uow() as uow:
            uow.events.append(InvalidationEvent(EventType.USER_CHANGED, {"user_id": user_id}))
            uow.commit()

    commit_event("u1")
    commit_event("u2")
    assert [seq for seq, _, _ in rung] == [rung[0][0], rung[0][0] + 1] and rung[-1][0] == c.validator.seq
    assert [[e.payload for e in events] for _, events, _ in rung] == [
        [{"user_id": "u1"}],
        [{"user_id": "u2"}],
    ]
    # the other nodes hear first: this node had not yet applied the event it announced
    assert all(local_seq < seq for seq, _, local_seq in rung)
