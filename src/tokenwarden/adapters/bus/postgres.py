"""PostgreSQL LISTEN/NOTIFY invalidation bus (psycopg 3, sync API).

One daemon thread holds an autocommit connection that ``LISTEN``s on the channel and hands every
notification's payload (an :class:`Announcement`) to the listeners. When that connection is lost the
bus reports unhealthy, reconnects with capped exponential backoff (0.1 s doubling to 2 s) and
``LISTEN``s again; announcements sent while it was down are lost, which the events-table poll
covers. ``publish`` uses a second autocommit connection (``SELECT pg_notify(...)``), reconnects
when it is broken and never raises.

NOTIFY is scoped to one database: every node must point at the same database.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tokenwarden.domain.events import Announcement
from tokenwarden.ports.bus import Listener

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "tokenwarden_events"
_SQLALCHEMY_PREFIX = re.compile(r"^postgres(?:ql)?\+[A-Za-z0-9_]+://")

# Defaults added to the caller's conninfo unless it sets them itself: a name that shows up in
# pg_stat_activity, a bounded connect, and TCP keepalives so a silently dead peer is noticed.
_CONNECTION_DEFAULTS: dict[str, Any] = {
    "application_name": "tokenwarden-bus",
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 2.0
POLL_INTERVAL = 0.2  # how often the listener thread looks at the stop flag
JOIN_TIMEOUT = 5.0
START_TIMEOUT = 10.0  # start() waits at most this long for the first LISTEN attempt


def libpq_conninfo(conninfo: str) -> str:
    """Turn a SQLAlchemy URL (``postgresql+psycopg://...``) into a libpq one; pass others through."""
    return _SQLALCHEMY_PREFIX.sub("postgresql://", conninfo, count=1)


def _with_defaults(conninfo: str) -> str:
    given = conninfo_to_dict(conninfo)
    extra = {key: value for key, value in _CONNECTION_DEFAULTS.items() if key not in given}
    return make_conninfo(conninfo, **extra)


class PostgresBus:
    """``InvalidationBus`` over PostgreSQL ``LISTEN``/``NOTIFY``."""

    name = "postgres"

    def __init__(self, conninfo: str, channel: str = DEFAULT_CHANNEL) -> None:
        if not channel:
            raise ValueError("channel must not be empty")
        self.channel = channel
        self._conninfo = _with_defaults(libpq_conninfo(conninfo))
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._listening = False
        self._publish_ok = True
        self._publish_conn: psycopg.Connection[Any] | None = None

    # -- InvalidationBus -------------------------------------------------------------------

    def publish(self, announcement: Announcement) -> None:
        seq = announcement.seq
        payload = announcement.encode()
        if payload is None:
            return
        with self._publish_lock:
            if self._closed:
                log.debug("postgres bus: publish(%s) after close ignored", seq)
                return
            # A pooled connection may have died since its last use: one retry on a fresh one.
            for attempt in (1, 2):
                try:
                    if self._publish_conn is None or self._publish_conn.closed:
                        self._publish_conn = psycopg.connect(self._conninfo, autocommit=True)
                    self._publish_conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
                except Exception as exc:
                    self._drop_publish_connection()
                    if attempt == 2:
                        self._publish_ok = False
                        log.warning("postgres bus: publish(%s) failed: %s", seq, _describe(exc))
                else:
                    self._publish_ok = True
                    return

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def start(self) -> None:
        """Start the listener thread and wait (bounded) for its first ``LISTEN`` attempt.

        Once ``start`` returns with ``healthy()`` true, announcements from other nodes are heard.
        If the server is unreachable it returns anyway (never raises) and keeps retrying.
        """
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"tokenwarden-bus-postgres:{self.channel}", daemon=True
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
                log.warning("postgres bus: listener thread did not stop within %.0f s", JOIN_TIMEOUT)
        with self._publish_lock:
            self._drop_publish_connection()
        self._listening = False

    def healthy(self) -> bool:
        return self._listening and self._publish_ok and not self._closed

    # -- internals -------------------------------------------------------------------------

    def _drop_publish_connection(self) -> None:
        conn, self._publish_conn = self._publish_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("postgres bus: closing publish connection failed", exc_info=True)

    def _run(self) -> None:
        backoff = BACKOFF_INITIAL
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            except Exception as exc:
                log.log(
                    _level(backoff),
                    "postgres bus: cannot connect listener (retry in %.1f s): %s",
                    backoff,
                    _describe(exc),
                )
                self._first_attempt.set()
            else:
                try:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._listening = True
                    self._first_attempt.set()
                    backoff = BACKOFF_INITIAL
                    log.info("postgres bus: listening on %r", self.channel)
                    self._listen(conn)
                except Exception as exc:
                    if not self._stop.is_set():
                        log.log(
                            _level(backoff),
                            "postgres bus: listener connection lost (retry in %.1f s): %s",
                            backoff,
                            _describe(exc),
                        )
                finally:
                    self._listening = False
                    self._first_attempt.set()
                    try:
                        conn.close()
                    except Exception:
                        log.debug("postgres bus: closing listener connection failed", exc_info=True)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=POLL_INTERVAL):
                if self._stop.is_set():
                    return
                self._deliver(notify.payload)

    def _deliver(self, payload: str) -> None:
        announcement = Announcement.decode(payload)
        if announcement is None:
            log.warning("postgres bus: ignoring malformed payload %r on %r", payload[:100], self.channel)
            return
        for listener in self._listeners:
            try:
                listener(announcement)
            except Exception:
                log.exception("postgres bus: listener %r raised on seq %d", listener, announcement.seq)


def _level(backoff: float) -> int:
    """Warn once per outage (the first retry); later retries of the same outage log at DEBUG."""
    return logging.WARNING if backoff <= BACKOFF_INITIAL else logging.DEBUG


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
