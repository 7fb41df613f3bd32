"""The one interface every tracker store implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from voicecalm.tracker.events import Event


class ConcurrentUpdateError(Exception):
    """Someone else appended to this conversation since it was loaded."""

    def __init__(self, sender_id: str, expected_count: int, stored_count: int) -> None:
        super().__init__(
            f"conversation {sender_id!r} has {stored_count} stored events, expected {expected_count}"
        )
        self.sender_id = sender_id
        self.expected_count = expected_count
        self.stored_count = stored_count


class TrackerStore(ABC):
    """An append-only event log per conversation, with optimistic concurrency."""

    @abstractmethod
    async def events(self, sender_id: str, start: int = 0) -> list[Event]:
        """The conversation's events from index `start` on, in order; [] for an unknown sender."""

    @abstractmethod
    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        """Store all of `events` after the first `expected_count` ones, or none of them.

        Raises ConcurrentUpdateError if the conversation does not hold exactly `expected_count`
        events (another writer got there first).
        """

    @abstractmethod
    async def sender_ids(self) -> list[str]:
        """Every conversation with at least one event, sorted."""

    @abstractmethod
    async def close(self) -> None: ...
