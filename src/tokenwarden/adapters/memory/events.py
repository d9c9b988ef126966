"""Invalidation events in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tokenwarden.adapters.memory._base import MemoryStore, Undo, _Repo
from tokenwarden.domain.events import INTENT_TYPES, InvalidationEvent
from tokenwarden.ports.repositories import IntentHook, run_intent_hooks


class MemoryEventRepository(_Repo):
    appended = 0  # events appended in this transaction (its unit of work announces them)

    def __init__(
        self, store: MemoryStore, journal: list[Undo], intent_hooks: Sequence[IntentHook] = ()
    ) -> None:
        super().__init__(store, journal)
        self.written: list[InvalidationEvent] = []  # appended, with their sequence numbers
        self.intents: list[InvalidationEvent] = []  # announced before commit (see IntentHook)
        self._intent_hooks = intent_hooks

    def append(self, event: InvalidationEvent) -> None:
        self.appended += 1
        stored = replace(event, seq=len(self.s.events) + 1)
        self.s.events.append(stored)
        self.written.append(stored)
        if event.type in INTENT_TYPES and self._intent_hooks:
            self.intents.append(event)
            run_intent_hooks(self._intent_hooks, [event], withdrawn=False)
        self.j.append(lambda: self._pop(self.s.events))

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        return self.s.events[seq : seq + limit]

    def latest_seq(self) -> int:
        return len(self.s.events)
