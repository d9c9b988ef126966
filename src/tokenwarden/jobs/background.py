"""The node's background loops: apply invalidation events, and flush usage records."""

from __future__ import annotations

import logging
import threading

from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.usage import UsageService
from tokenwarden.services.validation import Validator, flush_usage

log = logging.getLogger(__name__)


class BackgroundSync:
    r"""Two daemon threads: one syncs the validator every ``poll_interval`` and at once when
    :meth:`nudge`\ d (a bus announcement), the other flushes usage every ``flush_interval`` — so
    a slow flush (detection runs in it) never delays applying a revocation.

    A failing sync is logged and retried; the validator's staleness bound turns a long failure
    into fail-closed answers, so nothing here can make the node accept a revoked token.
    """

    def __init__(
        self,
        validator: Validator,
        uow_factory: UnitOfWorkFactory,
        *,
        poll_interval: float = 0.25,
        flush_interval: float = 2.0,
        usage: UsageService | None = None,
    ) -> None:
        self._usage = usage
        self._validator = validator
        self._uow = uow_factory
        self._poll = poll_interval
        self._flush = flush_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._sync_loop, name="tokenwarden-sync", daemon=True),
            threading.Thread(target=self._flush_loop, name="tokenwarden-usage-flush", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def nudge(self) -> None:
        """Sync now rather than at the next poll (thread-safe, returns at once)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._flush_usage()

    def _sync_loop(self) -> None:
        while True:
            self._wake.wait(self._poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._validator.sync()
            except Exception as exc:  # logged; staleness makes requests fail closed
                log.warning("event sync failed: %s", exc)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush):
            self._flush_usage()

    def _flush_usage(self) -> None:
        # usage records first: detection reads a token's previous last-used time
        if self._usage is not None:
            try:
                self._usage.flush()
            except Exception as exc:  # its counts are kept for the next flush
                log.warning("usage records flush failed (kept for the next one): %s", exc)
        try:
            flush_usage(self._validator, self._uow)
        except Exception as exc:
            log.warning("last-used flush failed (will retry with newer data): %s", exc)
