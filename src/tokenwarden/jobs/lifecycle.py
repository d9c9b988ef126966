"""The server's lifecycle thread: the scheduler (start-up run, then cron slots) and the outbox
delivery loop (messages left by any process: retries, a CLI run, a channel back up)."""

from __future__ import annotations

import logging
import threading

from tokenwarden.domain.clock import Clock
from tokenwarden.services.job_runner import JobRunner, Scheduler
from tokenwarden.services.outbox_delivery import OutboxDelivery

log = logging.getLogger(__name__)


class LifecycleWorker:
    """Two daemon threads: jobs (``tick_seconds``) and delivery (``deliver_seconds``)."""

    def __init__(
        self,
        jobs: JobRunner,
        delivery: OutboxDelivery,
        clock: Clock,
        *,
        scheduler: bool = True,
        tick_seconds: float = 15.0,
        deliver_seconds: float = 5.0,
    ) -> None:
        self._scheduler = Scheduler(jobs, clock, tick_seconds=tick_seconds) if scheduler else None
        self._delivery = delivery
        self._deliver_every = deliver_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        if self._scheduler is not None:
            self._threads.append(
                threading.Thread(target=self._run_jobs, name="tokenwarden-jobs", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._deliver, name="tokenwarden-outbox", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _run_jobs(self) -> None:
        if self._scheduler is None:
            return
        try:
            self._scheduler.loop(self._stop)
        except Exception:  # never take the server down; the next start-up runs again
            log.exception("the job scheduler stopped")

    def _deliver(self) -> None:
        while not self._stop.wait(self._deliver_every):
            try:
                self._delivery.deliver_due(stop=self._stop.is_set)
            except Exception as exc:  # the database is away: retried next round
                log.warning("outbox delivery failed: %s", exc)
