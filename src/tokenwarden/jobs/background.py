"""The node's background loop: apply invalidation events and flush usage records."""

from __future__ import annotations

import logging
import threading
import time

from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.usage import UsageService
from tokenwarden.services.validation import Validator, flush_usage

log = logging.getLogger(__name__)


class BackgroundSync:
    """A daemon thread: sync the validator every ``poll_interval``, flush usage every ``flush_interval``.

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
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tokenwarden-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._flush_usage()

    def _run(self) -> None:
        next_flush = time.monotonic() + self._flush
        while not self._stop.wait(self._poll):
            try:
                self._validator.sync()
            except Exception as exc:  # logged; staleness makes requests fail closed
                log.warning("event sync failed: %s", exc)
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + self._flush
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
