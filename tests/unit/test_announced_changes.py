"""A node applies what another node's announcement says before reading the events table — but
only what narrows access, and the table still decides: a forged announcement refuses a valid
token until the next sync at most, never admits one."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.events import AnnouncementKind, EventType, InvalidationEvent
from tokenwarden.domain.principals import User, UserStatus
from tokenwarden.services.common import Actor
from tokenwarden.services.validation import Validator

from .conftest import FakeClock, actor_of
from .test_validator import CountingReader, create


@pytest.fixture
def remote(container: Container) -> tuple[Validator, CountingReader]:
    """Another node on the same store (its view never goes stale on its own in these tests)."""
    reader = CountingReader(container.database.reader)
    validator = Validator(reader, container.uow, container.hasher, container.catalog, staleness_seconds=3600)
    validator.sync()
    return validator, reader


def test_an_announced_revocation_is_refused_without_reading_the_store(
    container: Container, bob: User, remote: tuple[Validator, CountingReader], clock: FakeClock
) -> None:
    node, reader = remote
    issued = create(container, bob)
    node.validate(issued.secret)  # cached on the remote node
    events: list[InvalidationEvent] = []
    container.database.on_commit(events.extend)  # what the bus would carry
    container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    reader.opened = 0
    assert node.apply_announced(events) == 1
    for _ in range(3):
        with pytest.raises(InvalidToken, match="revoked"):
            node.validate(issued.secret)
        with pytest.raises(InvalidToken, match="revoked"):
            node.validate_in_memory(issued.secret)
    assert reader.opened == 0  # refused from the announcement alone (the view is still fresh)
    node.sync()  # the table confirms it; the mark is no longer needed
    assert node._announced_revoked == {}
    with pytest.raises(InvalidToken, match="revoked"):
        node.validate(issued.secret)


def test_a_forged_revocation_refuses_only_until_the_next_sync(
    container: Container, bob: User, remote: tuple[Validator, CountingReader]
) -> None:
    node, _ = remote
    issued = create(container, bob)
    node.validate(issued.secret)
    key = container.hasher.hash(issued.secret)
    forged = InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": [key.hex()]}, node.seq + 1000)
    node.apply_announced([forged])
    with pytest.raises(InvalidToken):
        node.validate(issued.secret)
    node.sync()  # the events table has no such revocation: the token is valid again
    assert node.validate(issued.secret).user.id == bob.id


def test_an_announced_owner_change_drops_the_cached_owner(
    container: Container, bob: User, admin: Actor, remote: tuple[Validator, CountingReader]
) -> None:
    node, _ = remote
    issued = create(container, bob)
    node.validate(issued.secret)
    events: list[InvalidationEvent] = []
    container.database.on_commit(events.extend)
    container.directory.set_status(admin, "acme", bob.upn, UserStatus.DISABLED)
    assert node.apply_announced(events) >= 1
    with pytest.raises(InvalidToken):  # the owner is re-read: disabled
        node.validate(issued.secret)


def test_events_already_applied_and_malformed_ones_change_nothing(
    container: Container, bob: User, remote: tuple[Validator, CountingReader]
) -> None:
    node, _ = remote
    issued = create(container, bob)
    node.validate(issued.secret)
    key = container.hasher.hash(issued.secret).hex()
    old = InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": [key]}, node.seq)  # already seen
    bad = [
        InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": ["zz"]}, node.seq + 1),
        InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": 5}, node.seq + 2),
        InvalidationEvent(EventType.USER_CHANGED, {"user_ids": 7}, node.seq + 3),
    ]
    assert node.apply_announced([old, *bad]) == 0
    assert node.validate(issued.secret).user.id == bob.id


def test_rules_and_cutoffs_are_left_to_the_events_table(
    container: Container, bob: User, admin: Actor, remote: tuple[Validator, CountingReader], clock: FakeClock
) -> None:
    node, _ = remote
    issued = create(container, bob, "vso.packaging")
    node.validate(issued.secret)
    clock.advance(seconds=1)
    events: list[InvalidationEvent] = []
    container.database.on_commit(events.extend)
    container.rules.create(admin, "acme", "vso.packaging")
    node.apply_announced(events)  # a rule is not applied from the message...
    assert node.validate(issued.secret).user.id == bob.id  # (staleness 1 h: no sync yet)
    node.sync()  # ...but from the table
    with pytest.raises(InvalidToken):
        node.validate(issued.secret)


def test_an_intent_is_refused_through_syncs_until_withdrawn(
    container: Container, bob: User, remote: tuple[Validator, CountingReader]
) -> None:
    node, _ = remote
    issued = create(container, bob)
    node.validate(issued.secret)
    key = container.hasher.hash(issued.secret).hex()
    intent = InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": [key]})
    assert node.apply_announced([intent], AnnouncementKind.INTENT) == 1
    for _ in range(2):  # the commit has not landed yet: syncs do not bring the token back
        node.sync()
        with pytest.raises(InvalidToken, match="revoked"):
            node.validate(issued.secret)
    node.apply_announced([intent], AnnouncementKind.WITHDRAWN)  # its transaction failed
    assert node.validate(issued.secret).user.id == bob.id


def test_only_revocations_are_taken_as_intents(
    container: Container, bob: User, remote: tuple[Validator, CountingReader]
) -> None:
    node, _ = remote
    issued = create(container, bob)
    node.validate(issued.secret)
    changed = InvalidationEvent(EventType.USER_CHANGED, {"user_id": bob.id})
    assert node.apply_announced([changed], AnnouncementKind.INTENT) == 0


def test_a_revocation_is_announced_before_its_commit_and_withdrawn_when_it_fails(
    container: Container, bob: User
) -> None:
    issued = create(container, bob)
    container.validator.validate(issued.secret)
    seen: list[tuple[list[str], bool, bool]] = []

    def on_intent(events: Sequence[InvalidationEvent], withdrawn: bool) -> None:
        with container.database.reader() as uow:  # is the revocation committed yet?
            committed = uow.tokens.get(issued.record.authorization_id).revoked_at is not None  # type: ignore[union-attr]
        seen.append(([h for e in events for h in e.payload["hashes"]], withdrawn, committed))

    container.database.on_intent(on_intent)
    key = container.hasher.hash(issued.secret).hex()

    class Boom(Exception):
        pass

    def failing_audit(*args: object, **kwargs: object) -> None:
        raise Boom

    with pytest.MonkeyPatch.context() as mp:  # the transaction fails after the intent
        mp.setattr("tokenwarden.services.pats.audit", failing_audit)
        with pytest.raises(Boom):
            container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    assert seen == [([key], False, False), ([key], True, False)]
    assert container.validator.validate(issued.secret).user.id == bob.id  # withdrawn here too
    seen.clear()
    container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    assert seen == [([key], False, False)]  # announced before the commit, never withdrawn
    with pytest.raises(InvalidToken):
        container.validator.validate(issued.secret)
