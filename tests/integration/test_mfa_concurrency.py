"""Issue 16 review: the wrong-code limit held under parallel guesses. The count of wrong codes
was read, then written, in separate statements: guesses arriving together on PostgreSQL each
read "4 so far" and all got checked. The factor's row is now locked first, so the guesses are
counted one after another and the sixth is refused whatever the timing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenwarden.bootstrap import Container, build
from tokenwarden.domain import mfa
from tokenwarden.domain.errors import InvalidInput, TooManyRequests
from tokenwarden.domain.principals import Role
from tokenwarden.services.common import OPERATOR, Actor, TokenReach
from tokenwarden.services.mfa import MAX_FAILURES
from tokenwarden.settings import Settings

GUESSES = 16


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def c(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'tw.db'}"
    else:
        factory: Callable[[], str] = request.getfixturevalue("postgres_database_factory")
        url = factory()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        peppers="p1:" + "ab" * 32,
        argon2_memory_kib=256,
        argon2_time_cost=1,
        argon2_parallelism=1,
    )
    container = build(settings)
    container.database.upgrade()
    container.directory.initialize("acme", "admin@acme.test")
    yield container
    container.close()


def test_parallel_wrong_codes_stop_at_the_limit(c: Container) -> None:
    user = c.directory.add_user(OPERATOR, "acme", "alice@acme.test", role=Role.ADMIN).user
    actor = Actor(user.id, user.upn, ip="198.51.100.7", token=TokenReach(frozenset(), None, b"k" * 16))
    secret = c.mfa.begin(actor).secret
    c.mfa.confirm(actor, mfa.code_at(secret, mfa.step_of(c.clock.now())))
    current = {mfa.code_at(secret, mfa.step_of(c.clock.now()) + d) for d in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in current)

    start = threading.Barrier(GUESSES)
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess() -> None:
        start.wait()
        try:
            c.mfa.check(actor, user.id, wrong, None)
            result = "accepted"
        except InvalidInput:
            result = "checked"
        except TooManyRequests:
            result = "throttled"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=guess) for _ in range(GUESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == GUESSES
    assert outcomes.count("accepted") == 0
    assert outcomes.count("checked") == MAX_FAILURES
    assert outcomes.count("throttled") == GUESSES - MAX_FAILURES
