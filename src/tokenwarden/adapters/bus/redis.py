"""Redis pub/sub invalidation bus (redis-py, sync API).

One daemon thread holds a pub/sub connection ``SUBSCRIBE``d to the channel and hands every
message (an :class:`Announcement`) to the listeners. When that connection is lost the bus reports
unhealthy, reconnects with capped exponential backoff (0.1 s doubling to 2 s) and subscribes
again; announcements sent while it was down are lost, which the events-table poll covers.
``publish`` uses an ordinary client (its own connection pool) and never raises.

redis-py's own silent retries are disabled on the subscriber so a lost connection is seen (and
reported by ``healthy()``) instead of being papered over.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from tokenwarden.domain.events import Announcement
from tokenwarden.ports.bus import Listener

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "tokenwarden:events"

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 2.0
POLL_INTERVAL = 0.2  # how often the subscriber thread looks at the stop flag
JOIN_TIMEOUT = 5.0
START_TIMEOUT = 10.0  # start() waits at most this long for the first SUBSCRIBE attempt
CONNECT_TIMEOUT = 5.0
PUBLISH_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 5  # seconds of idleness before the subscriber PINGs the server


def subscriber_client_name(channel: str) -> str:
    """The ``CLIENT SETNAME`` of a bus's subscriber connection (visible in ``CLIENT LIST``)."""
    return "tokenwarden-bus:" + re.sub(r"[^A-Za-z0-9_.:\-]", "_", channel)[:200]


class RedisBus:
    """``InvalidationBus`` over Redis pub/sub."""

    name = "redis"

    def __init__(self, url: str, channel: str = DEFAULT_CHANNEL) -> None:
        if not channel:
            raise ValueError("channel must not be empty")
        self.channel = channel
        self._url = url
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._subscribed = False
        self._publish_ok = True
        # A stale pooled connection gets one immediate retry on a fresh one; no long backoff.
        self._publisher = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=PUBLISH_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )

    # -- InvalidationBus -------------------------------------------------------------------

    def publish(self, announcement: Announcement) -> None:
        seq = announcement.seq
        payload = announcement.encode()
        if payload is None:
            return
        if self._closed:
            log.debug("redis bus: publish(%s) after close ignored", seq)
            return
        try:
            self._publisher.publish(self.channel, payload)
        except Exception as exc:
            self._publish_ok = False
            log.warning("redis bus: publish(%s) failed: %s", seq, _describe(exc))
        else:
            self._publish_ok = True

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def start(self) -> None:
        """Start the subscriber thread and wait (bounded) for its first ``SUBSCRIBE`` attempt.

        Once ``start`` returns with ``healthy()`` true, announcements from other nodes are heard.
        If the server is unreachable it returns anyway (never raises) and keeps retrying.
        """
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"tokenwarden-bus-redis:{self.channel}", daemon=True
            )
            self._thread.start()
        self._first_attempt.wait(START_TIMEOUT)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning("redis bus: subscriber thread did not stop within %.0f s", JOIN_TIMEOUT)
        try:
            self._publisher.close()
        except Exception:
            log.debug("redis bus: closing publisher failed", exc_info=True)
        self._subscribed = False

    def healthy(self) -> bool:
        return self._subscribed and self._publish_ok and not self._closed

    # -- internals -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_INITIAL
        while not self._stop.is_set():
            client: redis.Redis | None = None
            pubsub: PubSub | None = None
            try:
                client = redis.Redis.from_url(
                    self._url,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                    socket_keepalive=True,
                    health_check_interval=HEALTH_CHECK_INTERVAL,
                    client_name=subscriber_client_name(self.channel),
                    retry=Retry(NoBackoff(), 0),
                )
                pubsub = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis-py 8.2
                pubsub.subscribe(self.channel)
                self._listen(pubsub)
            except Exception as exc:
                if self._subscribed:
                    backoff = BACKOFF_INITIAL
                if not self._stop.is_set():
                    state = "connection lost" if self._subscribed else "cannot subscribe"
                    log.log(
                        _level(backoff), "redis bus: %s (retry in %.1f s): %s", state, backoff, _describe(exc)
                    )
            finally:
                self._subscribed = False
                self._first_attempt.set()
                for resource in (pubsub, client):
                    if resource is not None:
                        try:
                            resource.close()
                        except Exception:
                            log.debug("redis bus: closing subscriber failed", exc_info=True)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _listen(self, pubsub: PubSub) -> None:
        while not self._stop.is_set():
            message: dict[str, Any] | None = pubsub.get_message(timeout=POLL_INTERVAL)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "subscribe":
                self._subscribed = True
                self._first_attempt.set()
                log.info("redis bus: subscribed to %r", self.channel)
            elif kind == "message":
                self._deliver(message.get("data"))

    def _deliver(self, data: object) -> None:
        announcement = Announcement.decode(data if isinstance(data, bytes) else str(data))
        if announcement is None:
            log.warning("redis bus: ignoring malformed payload %r on %r", str(data)[:100], self.channel)
            return
        for listener in self._listeners:
            try:
                listener(announcement)
            except Exception:
                log.exception("redis bus: listener %r raised on seq %d", listener, announcement.seq)


def _level(backoff: float) -> int:
    """Warn once per outage (the first retry); later retries of the same outage log at DEBUG."""
    return logging.WARNING if backoff <= BACKOFF_INITIAL else logging.DEBUG


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
