"""`tokenwarden serve` (one worker) with timestamps at each step of a revocation, for the breakdown.

Run by ``bench/propagation.py`` in place of ``tokenwarden serve`` when it measures where the time
goes. It wraps — by monkeypatching, so the product carries no tracing code — the steps a
revocation takes on the node that serves the request (request in, unit of work open, token
read, intent announced, commit, commit announced, response out) and on the nodes that hear it
(message delivered, applied), and appends ``step perf_counter`` lines to ``TW_TRACE_FILE``.
``time.perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every process on the machine,
so the bench can line these up with its own timestamps.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_out: Any = None


def mark(step: str) -> None:
    t = time.perf_counter()
    with _lock:
        _out.write(f"{step} {t:.6f}\n")
        _out.flush()


def _around(cls: type, name: str, before: str | None, after: str | None, when: Callable[..., bool]) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        traced = when(*args, **kwargs)
        if traced and before:
            mark(before)
        result = original(*args, **kwargs)
        if traced and after:
            mark(after)
        return result

    setattr(cls, name, wrapper)


def install() -> None:
    from tokenwarden.adapters.bus.postgres import PostgresBus
    from tokenwarden.adapters.bus.redis import RedisBus
    from tokenwarden.adapters.sql.repositories.tokens import SqlTokenRepository
    from tokenwarden.adapters.sql.unit_of_work import SqlUnitOfWork
    from tokenwarden.domain.events import AnnouncementKind, EventType
    from tokenwarden.http import app as app_module
    from tokenwarden.services.pats import PatService
    from tokenwarden.services.validation import Validator

    in_revoke = threading.local()

    def revoking(*_: Any, **__: Any) -> bool:
        return bool(getattr(in_revoke, "on", False))

    def always(*_: Any, **__: Any) -> bool:
        return True

    original_revoke = PatService.revoke

    @functools.wraps(original_revoke)
    def revoke(*args: Any, **kwargs: Any) -> Any:
        mark("A.handler")
        in_revoke.on = True
        try:
            return original_revoke(*args, **kwargs)
        finally:
            in_revoke.on = False
            mark("A.service_done")

    PatService.revoke = revoke  # type: ignore[method-assign]
    _around(SqlUnitOfWork, "__enter__", None, "A.uow_open", revoking)
    _around(SqlTokenRepository, "get", None, "A.token_read", revoking)
    _around(SqlUnitOfWork, "commit", "A.commit_begin", "A.committed", revoking)

    for bus in (PostgresBus, RedisBus):
        original_publish = bus.publish

        def publish(self: Any, announcement: Any, _original: Any = original_publish) -> None:
            kind = announcement.kind
            traced = revoking() and any(e.type is EventType.TOKEN_REVOKED for e in announcement.events)
            _original(self, announcement)
            if traced:
                mark(f"A.published_{kind.value}")

        bus.publish = publish  # type: ignore[method-assign]
        _around(bus, "_deliver", "X.delivered", None, always)
    original_apply = Validator.apply_announced

    @functools.wraps(original_apply)
    def apply_announced(self: Any, events: Any, kind: Any = AnnouncementKind.COMMITTED) -> int:
        applied = original_apply(self, events, kind)
        if applied and not revoking() and any(e.type is EventType.TOKEN_REVOKED for e in events):
            mark(f"X.applied_{kind.value}")
        return applied

    Validator.apply_announced = apply_announced  # type: ignore[method-assign]

    original_factory = app_module.app_from_env

    def app_from_env() -> Any:
        inner = original_factory()

        async def traced(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] != "DELETE":
                await inner(scope, receive, send)
                return
            mark("A.request_in")

            async def timed_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    mark("A.response_out")
                await send(message)

            await inner(scope, receive, timed_send)

        return _Lifespan(inner, traced)

    app_module.app_from_env = app_from_env  # type: ignore[assignment]


class _Lifespan:
    """The traced app: lifespan events go to the real app, HTTP through the tracer."""

    def __init__(self, inner: Any, traced: Any) -> None:
        self.inner, self.traced = inner, traced

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.inner(scope, receive, send)
        else:
            await self.traced(scope, receive, send)


def main() -> None:
    global _out
    import uvicorn

    _out = Path(os.environ["TW_TRACE_FILE"]).open("a", encoding="utf-8")  # noqa: SIM115
    install()
    from tokenwarden.http import app as app_module

    uvicorn.run(
        app_module.app_from_env,
        factory=True,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=1,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
