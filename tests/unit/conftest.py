"""Unit-test fixtures: services wired over the in-memory store, a controllable clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.bootstrap import Container, memory_container
from tokenwarden.domain.principals import User
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.settings import Settings


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def actor_of(user: User, ip: str | None = None) -> Actor:
    return Actor(user_id=user.id, upn=user.upn, ip=ip)


@pytest.fixture
def clock() -> FakeClock:
    """Starts one hour in the past: tokens issued 'now' are already valid for the real-time
    validator, and the clock can be advanced without getting ahead of real time too soon."""
    return FakeClock(datetime.now(UTC) - timedelta(hours=1))


@pytest.fixture
def make_container(clock: FakeClock) -> Callable[..., Container]:
    def make(**settings: object) -> Container:
        # A long staleness bound: the validator re-syncs only after our own writes.
        base: dict[str, object] = {"staleness_seconds": 3600.0, **settings}
        return memory_container(Settings(**base), clock=clock)  # type: ignore[arg-type]

    return make


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container()


@pytest.fixture
def init(container: Container) -> InitResult:
    return container.directory.initialize("acme", "admin@acme.test")


@pytest.fixture
def admin(init: InitResult) -> Actor:
    return actor_of(init.admin)


@pytest.fixture
def bob(container: Container, init: InitResult) -> User:
    """A plain member of acme."""
    user = container.directory.add_user(OPERATOR, "acme", "bob@acme.test").user
    return user


@pytest.fixture
def carol(container: Container, init: InitResult) -> User:
    """Another plain member of acme."""
    user = container.directory.add_user(OPERATOR, "acme", "carol@acme.test").user
    return user
