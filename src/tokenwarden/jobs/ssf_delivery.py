"""Push delivery of Security Event Tokens (RFC 8935) from a background thread.

Every node runs one worker. Each round it fans new outbox rows out to the streams, claims due
push deliveries (a conditional UPDATE: one node per row, and a lease while the POST is in
flight), POSTs each SET as ``application/secevent+jwt`` and records the outcome: 202 is
delivered; anything else is retried with exponential backoff (1 s doubling to 5 min) and
given up after 24 hours. Targets on loopback, link-local or private addresses are refused
unless ``TOKENWARDEN_SSF_PUSH_ALLOW`` allows them; redirects are not followed.
"""

from __future__ import annotations

import logging
import threading

import httpx

from tokenwarden.domain.secevent import SET_MEDIA_TYPE
from tokenwarden.services.ssf import PushJob, SsfService

log = logging.getLogger(__name__)


class SsfDeliveryWorker:
    def __init__(
        self,
        ssf: SsfService,
        *,
        interval: float = 0.25,
        batch: int = 20,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._ssf = ssf
        self._interval = interval
        self._batch = batch
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)), follow_redirects=False
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tokenwarden-ssf-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_once()
            except Exception as exc:  # logged and retried next round; rows stay queued
                log.warning("SSF delivery round failed: %s", type(exc).__name__)

    def run_once(self) -> int:
        """One round: fan out, then push what is due. Returns the number of POSTs made."""
        self._ssf.fan_out()
        sent = 0
        while not self._stop.is_set():
            jobs = self._ssf.claim_push(self._batch)
            for job in jobs:
                self._ssf.push_result(job, self.post(job))
                sent += 1
            if len(jobs) < self._batch:
                break
        return sent

    def post(self, job: PushJob) -> str | None:
        """POST one SET; None on 202, else what went wrong (never the Authorization header).
        The target is checked again first (a name may resolve elsewhere than at creation), and
        redirects are never followed: a 3xx is a failed attempt, retried like any other."""
        refused = self._ssf.push_refusal(job.endpoint_url)
        if refused is not None:
            return f"refused: {refused}"
        headers = {"Content-Type": SET_MEDIA_TYPE, "Accept": "application/json"}
        if job.authorization:
            headers["Authorization"] = job.authorization
        try:
            response = self._client.post(job.endpoint_url, content=job.delivery.set_jws, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        if response.status_code == 202:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"
