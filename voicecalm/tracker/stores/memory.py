"""Tracker store that keeps events in this process only (tests, throwaway runs)."""

from __future__ import annotations

from collections.abc import Sequence

from voicecalm.tracker.events import Event
from voicecalm.tracker.stores.base import ConcurrentUpdateError, TrackerStore


class InMemoryTrackerStore(TrackerStore):
    def __init__(self) -> None:
        self._events: dict[str, list[Event]] = {}

    async def events(self, sender_id: str, start: int = 0) -> list[Event]:
        return list(self._events.get(sender_id, [])[start:])

    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        # No await between the check and the write, so this is atomic within the event loop.
        stored = self._events.get(sender_id, [])
        if len(stored) != expected_count:
            raise ConcurrentUpdateError(sender_id, expected_count, len(stored))
        if events:
            self._events[sender_id] = [*stored, *events]

    async def sender_ids(self) -> list[str]:
        return sorted(self._events)

    async def close(self) -> None:
        pass
