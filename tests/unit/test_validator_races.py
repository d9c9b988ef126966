"""A change that lands while a cache entry is being read from the store is never lost: the
stale read is used for the one validation already in flight at most, never cached."""

from __future__ import annotations

from typing import Any

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.principals import User, UserStatus
from tokenwarden.services.common import Actor

from .conftest import FakeClock, actor_of


class ChangeDuringRead:
    """A reader factory whose units of work run ``change`` once, right after ``method`` of the
    watermark repository has read a member's watermarks — the last read of an owner's state —
    so everything read for that owner is already stale when the read returns."""

    def __init__(self, real: Any, method: str, change: Any) -> None:
        self.real, self.method, self.change, self.fired = real, method, change, False

    def __call__(self) -> Any:
        return _Patched(self, self.real())


class _Patched:
    def __init__(self, outer: ChangeDuringRead, uow: Any) -> None:
        self.outer, self.uow = outer, uow

    def __enter__(self) -> Any:
        inner = self.uow.__enter__()
        original = getattr(inner.watermarks, self.outer.method)
        outer = self.outer

        def stale(*args: Any, **kwargs: Any) -> Any:
            answer = original(*args, **kwargs)
            if not outer.fired and args[0] == "member":
                outer.fired = True
                outer.change()
            return answer

        setattr(inner.watermarks, outer.method, stale)
        return inner

    def __exit__(self, *exc: Any) -> None:
        self.uow.__exit__(*exc)


def test_a_disable_landing_while_the_owner_loads_is_not_lost(
    container: Container, bob: User, admin: Actor, clock: FakeClock
) -> None:
    issued = container.pats.create(actor_of(bob), org="acme", user=bob.id, display_name="t", scope="vso.code")
    clock.advance(seconds=1)
    v = container.validator
    v.sync()
    v._users.clear()  # the next validation loads bob's state from the store
    v._reader = ChangeDuringRead(  # type: ignore[method-assign]
        v._reader,
        "for_subject",
        lambda: container.directory.set_status(admin, "acme", bob.upn, UserStatus.DISABLED),
    )
    v.validate(issued.secret)  # in flight while the change landed: answered from the stale read
    assert v._reader.fired  # type: ignore[attr-defined]
    for _ in range(3):  # and from now on, always refused: the stale state was not cached
        with pytest.raises(InvalidToken):
            v.validate(issued.secret)


class SlowReader:
    """A reader factory whose units of work take a while and are counted."""

    def __init__(self, real: Any, delay: float) -> None:
        self.real, self.delay, self.opened = real, delay, 0

    def __call__(self) -> Any:
        import time

        self.opened += 1
        time.sleep(self.delay)
        return self.real()


def test_syncs_queued_behind_one_coalesce_and_each_sees_the_commits_before_it(container: Container) -> None:
    """Every commit with events syncs (read-your-writes). Callers queued behind a running sync
    return after the next one completes, with everything committed before their call applied
    — a burst of commits costs a couple of reads, not one each (issue 11 benchmarks)."""
    import threading

    from tokenwarden.domain.events import EventType, InvalidationEvent

    v = container.validator
    v.sync()
    slow = SlowReader(v._reader, 0.02)
    v._reader = slow  # type: ignore[method-assign]
    failures: list[str] = []
    start = threading.Barrier(30)

    def commit_then_sync(i: int) -> None:
        start.wait(10)  # all at once: syncs queue behind the running one (a loaded CI runs threads late)
        with container.uow() as uow:
            uow.events.append(InvalidationEvent(EventType.USER_CHANGED, {"user_id": f"u{i}"}))
            uow.commit()  # the commit hook syncs too; what matters is the call below
        with container.database.reader() as uow:
            mine = uow.events.latest_seq()
        v.sync()
        if v.seq < mine:
            failures.append(f"{i}: applied {v.seq} < committed {mine}")

    threads = [threading.Thread(target=commit_then_sync, args=(i,)) for i in range(30)]
    opened_before = slow.opened
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    # 30 commit hooks + 30 calls: 60 reads without coalescing; queued syncs share reads
    assert slow.opened - opened_before < 45
