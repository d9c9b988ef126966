"""Invalidation events in memory."""

from __future__ import annotations

from dataclasses import replace

from tokenwarden.adapters.memory._base import _Repo
from tokenwarden.domain.events import InvalidationEvent


class MemoryEventRepository(_Repo):
    appended = 0  # events appended in this transaction (its unit of work announces them)

    def append(self, event: InvalidationEvent) -> None:
        self.appended += 1
        self.s.events.append(replace(event, seq=len(self.s.events) + 1))
        self.j.append(lambda: self._pop(self.s.events))

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        return self.s.events[seq : seq + limit]

    def latest_seq(self) -> int:
        return len(self.s.events)
