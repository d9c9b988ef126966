"""The invalidation bus: a doorbell that tells every node "new events are committed".

The events table stays the source of truth: a bus message only carries the newest sequence
number, and a node that hears it reads the events table from its last applied sequence. A lost
message therefore costs latency (the 250 ms poll catches up), never correctness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Listener = Callable[[int], None]


class InvalidationBus(Protocol):
    name: str

    def publish(self, seq: int) -> None:
        """Announce that events up to ``seq`` are committed (best effort; never raises)."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(seq)`` for every announcement, from any process on the bus.

        Listeners run on the bus's own thread and must be quick and thread-safe.
        """
        ...

    def start(self) -> None:
        """Connect and start delivering (idempotent)."""
        ...

    def close(self) -> None:
        """Stop delivering and release connections (idempotent)."""
        ...

    def healthy(self) -> bool:
        """True while the bus connection is believed to be up."""
        ...
