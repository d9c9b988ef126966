"""The validator's memo of its last accepted answer per token: reused only for the same question
while no change has been applied, and never past the token's expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Forbidden, InsufficientScope, InvalidToken
from tokenwarden.domain.principals import User
from tokenwarden.services.directory import InitResult
from tokenwarden.services.pats import IssuedPat
from tokenwarden.services.validation import Validator

from .conftest import FakeClock, actor_of


def create(c: Container, owner: User, scope: str = "vso.code", **kw: Any) -> IssuedPat:
    return c.pats.create(actor_of(owner), org="acme", user=owner.id, display_name="t", scope=scope, **kw)


class CountingDecide:
    """Counts full decisions (a memo hit makes none)."""

    def __init__(self, validator: Validator, during: Any = None) -> None:
        self.calls = 0
        self.during = during
        self._decide = validator.decide
        validator.decide = self  # type: ignore[method-assign]

    def __call__(self, *args: Any) -> str:
        self.calls += 1
        result = self._decide(*args)
        if self.during is not None:
            self.during()
        return result


def test_the_same_question_is_answered_from_the_memo(container: Container, bob: User) -> None:
    issued = create(container, bob)
    counter = CountingDecide(container.validator)
    first = container.validator.validate(issued.secret, "vso.code")
    assert container.validator.validate(issued.secret, "vso.code") is first
    assert counter.calls == 1
    assert container.validator.validate_in_memory(issued.secret, "vso.code") is first
    assert counter.calls == 1


def test_another_question_is_decided_afresh(container: Container, bob: User, init: InitResult) -> None:
    issued = create(container, bob)
    container.validator.validate(issued.secret, "vso.code")
    with pytest.raises(InsufficientScope):
        container.validator.validate(issued.secret, "vso.work")
    with pytest.raises(InsufficientScope):
        container.validator.validate_in_memory(issued.secret, "vso.work")
    other = container.directory.add_org("globex", "admin@globex.test").org
    with pytest.raises(Forbidden):
        container.validator.validate(issued.secret, "vso.code", other.id)
    assert container.validator.validate(issued.secret, "vso.code", init.org.id).org_id == init.org.id


def test_a_change_applied_while_deciding_voids_the_answer(container: Container, bob: User) -> None:
    issued = create(container, bob)
    v = container.validator

    def concurrent_change() -> None:  # what a sync applying an event does meanwhile
        v._gen += 1

    counter = CountingDecide(v, during=concurrent_change)
    v.validate(issued.secret)
    v.validate(issued.secret)
    assert counter.calls == 2, "an answer decided across a change must not be reused"


def test_a_revocation_after_the_memo_is_refused(
    container: Container, bob: User, init: InitResult, clock: FakeClock
) -> None:
    issued = create(container, bob)
    container.validator.validate(issued.secret)
    clock.advance(seconds=1)
    container.revocation.revoke_user(actor_of(init.admin), "acme", bob.id)
    with pytest.raises(InvalidToken, match="revoked"):
        container.validator.validate(issued.secret)
    with pytest.raises(InvalidToken, match="revoked"):
        container.validator.validate_in_memory(issued.secret)


def test_the_memo_never_outlives_the_token(
    container: Container, bob: User, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.current = datetime.now(UTC) - timedelta(days=2)
    issued = create(container, bob, valid_to=datetime.now(UTC) + timedelta(minutes=5))
    container.validator.validate(issued.secret)
    later = time.time() + 600
    monkeypatch.setattr(time, "time", lambda: later)
    container.validator._synced_at = later  # the view is fresh: only expiry may refuse
    with pytest.raises(InvalidToken, match="expired"):
        container.validator.validate(issued.secret)
    with pytest.raises(InvalidToken, match="expired"):
        container.validator.validate_in_memory(issued.secret)


def test_usage_lists_each_token_once_per_drain_and_epoch(container: Container, bob: User) -> None:
    a = create(container, bob)
    v = container.validator
    v.drain_usage()
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        v.validate(a.secret, ip=ip)
    assert [(key, ip) for key, _, ip in v.drain_usage()] == [(a.record.secret_hash, "192.0.2.3")]
    v.validate_in_memory(a.secret, ip="192.0.2.4")
    assert v.drain_usage() == []  # listed once this epoch (usage_last_used_resolution_seconds)
    v._epoch_ends = 0.0  # the epoch is over
    assert v.drain_usage() == []
    v.validate_in_memory(a.secret, ip="192.0.2.5")
    assert [ip for _, _, ip in v.drain_usage()] == ["192.0.2.5"]
    assert v.drain_usage() == []
