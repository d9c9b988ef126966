"""In-process invalidation bus.

``MemoryBus`` delivers synchronously, on the publisher's thread, to every listener of every
started bus on the same hub and channel. Several ``MemoryBus`` instances sharing one
``MemoryBusHub`` simulate several nodes inside one process (tests, benchmarks).
"""

from __future__ import annotations

import logging
import threading

from tokenwarden.domain.events import Announcement
from tokenwarden.ports.bus import Listener

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "tokenwarden_events"


class MemoryBusHub:
    """The shared "network" of in-process buses: started buses, grouped by channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, tuple[MemoryBus, ...]] = {}

    def join(self, channel: str, bus: MemoryBus) -> None:
        with self._lock:
            members = self._members.get(channel, ())
            if bus not in members:
                self._members[channel] = (*members, bus)

    def leave(self, channel: str, bus: MemoryBus) -> None:
        with self._lock:
            members = tuple(member for member in self._members.get(channel, ()) if member is not bus)
            if members:
                self._members[channel] = members
            else:
                self._members.pop(channel, None)

    def broadcast(self, channel: str, message: str) -> None:
        with self._lock:
            members = self._members.get(channel, ())
        for member in members:
            member._deliver(message)


class MemoryBus:
    """``InvalidationBus`` within one process (one hub = one bus "network")."""

    name = "memory"

    def __init__(self, hub: MemoryBusHub | None = None, *, channel: str = DEFAULT_CHANNEL) -> None:
        self.hub = hub if hub is not None else MemoryBusHub()
        self.channel = channel
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self._started = False
        self._closed = False

    def publish(self, announcement: Announcement) -> None:
        seq = announcement.seq
        if self._closed:
            log.debug("memory bus: publish(%d) after close ignored", seq)
            return
        text = announcement.encode()
        if text is None:
            return
        try:  # encoded like the networked buses, so in-process tests exercise the same wire text
            self.hub.broadcast(self.channel, text)
        except Exception:  # never raises, by contract
            log.exception("memory bus: publish(%d) failed", seq)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        self.hub.join(self.channel, self)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.hub.leave(self.channel, self)

    def healthy(self) -> bool:
        return self._started and not self._closed

    def _deliver(self, message: str) -> None:
        announcement = Announcement.decode(message)
        if self._closed or announcement is None:
            return
        for listener in self._listeners:
            try:
                listener(announcement)
            except Exception:
                log.exception("memory bus: listener %r raised on seq %d", listener, announcement.seq)
