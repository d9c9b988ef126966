"""The registry behind the authorization server (issue 11): clients registered through the
service get tokens from the server, and disabling, rotating or removing a client cuts the
tokens it already got — JWT access tokens included — at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.conftest import FakeClock
from tests.unit.test_oauth_server import ISSUER, REDIRECT, authorize, exchange, post, refresh
from tokenwarden.bootstrap import Container, memory_container
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.principals import User
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.oauth_clients import RegisteredClient
from tokenwarden.settings import Settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC) - timedelta(minutes=5))


@pytest.fixture
def c(clock: FakeClock) -> Container:
    container = memory_container(Settings(staleness_seconds=3600.0), clock=clock)
    container.directory.initialize("acme", "admin@acme.test")
    return container


@pytest.fixture
def bob(c: Container) -> User:
    return c.directory.add_user(OPERATOR, "acme", "bob@acme.test").user


def registered(c: Container, grants: list[str]) -> RegisteredClient:
    return c.clients.register(
        OPERATOR,
        "acme",
        name="Dashboard",
        redirect_uris=[REDIRECT],
        grants=grants,
        scope="vso.code vso.build",
    )


def client_credentials(c: Container, client_id: str, secret: str) -> tuple[int, dict[str, str]]:
    status, body, _ = c.oauth.token(post({"grant_type": "client_credentials"}, (client_id, secret)), ISSUER)
    return status, body


def dead(c: Container, token: str) -> bool:
    try:
        c.validator.validate(token)
    except InvalidToken:
        return True
    return False


def test_client_credentials_of_a_registered_client_die_with_its_disabling(
    c: Container, clock: FakeClock
) -> None:
    reg = registered(c, ["client_credentials"])
    cid, secret = reg.client.client_id, reg.secret or ""
    status, body = client_credentials(c, cid, secret)
    assert status == 200, body
    jwt = body["access_token"]
    caller = c.validator.validate(jwt, "vso.build")
    assert caller.user.id == reg.client.service_user_id  # the client acts as its own principal
    clock.advance(seconds=1)
    c.clients.disable(OPERATOR, "acme", cid)
    assert dead(c, jwt)
    assert client_credentials(c, cid, secret)[0] == 401  # a disabled client is no client
    clock.advance(seconds=1)
    c.clients.enable(OPERATOR, "acme", cid)
    assert dead(c, jwt)  # nothing comes back
    status, body = client_credentials(c, cid, secret)
    assert status == 200 and not dead(c, body["access_token"])


def test_rotation_refuses_the_old_secret_and_ends_what_it_obtained(c: Container, clock: FakeClock) -> None:
    reg = registered(c, ["client_credentials"])
    cid, old = reg.client.client_id, reg.secret or ""
    _, body = client_credentials(c, cid, old)
    clock.advance(seconds=1)
    new = c.clients.rotate_secret(OPERATOR, "acme", cid).secret or ""
    assert dead(c, body["access_token"])
    assert client_credentials(c, cid, old)[0] == 401
    status, fresh = client_credentials(c, cid, new)
    assert status == 200 and not dead(c, fresh["access_token"])


def test_removing_a_client_ends_its_users_sessions_with_it(c: Container, bob: User, clock: FakeClock) -> None:
    reg = registered(c, ["authorization_code", "refresh_token"])
    other = registered(c, ["authorization_code", "refresh_token"])
    status, tokens = exchange(
        c, reg.client, reg.secret or "", authorize(c, reg.client, bob, scope="vso.code")
    )
    assert status == 200, tokens
    _, others = exchange(
        c, other.client, other.secret or "", authorize(c, other.client, bob, scope="vso.code")
    )
    clock.advance(seconds=1)
    c.clients.remove(OPERATOR, "acme", reg.client.client_id)
    assert dead(c, tokens["access_token"]) and dead(c, tokens["refresh_token"])
    assert refresh(c, reg.client, reg.secret or "", tokens["refresh_token"])[0] in (400, 401)
    assert not dead(c, others["access_token"])  # another client's tokens live on
    status, _ = refresh(c, other.client, other.secret or "", others["refresh_token"])
    assert status == 200
