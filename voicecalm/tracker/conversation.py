"""A conversation's state, derived from its events and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from voicecalm.tracker.events import (
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    StackUpdated,
    UserUttered,
)

Frame = Mapping[str, Any]


def _pointer(*parts: object) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def stack_patch(old: list[Frame], new: list[Frame]) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) turning `old` into `new`.

    Stack changes are pushes, pops and new step ids; this frame-aware diff writes exactly those
    and is ~50x faster than a generic JSON diff, which dominated the cost of a turn.
    """
    operations: list[dict[str, Any]] = []
    shared = 0
    while shared < min(len(old), len(new)) and old[shared].get("frame_id") == new[shared].get("frame_id"):
        before, after = old[shared], new[shared]
        if before is not after:
            for key, value in after.items():
                if key not in before:
                    operations.append({"op": "add", "path": _pointer(shared, key), "value": value})
                elif before[key] != value:
                    operations.append({"op": "replace", "path": _pointer(shared, key), "value": value})
            operations += [{"op": "remove", "path": _pointer(shared, key)} for key in before if key not in after]
        shared += 1
    operations += [{"op": "remove", "path": _pointer(index)} for index in range(len(old) - 1, shared - 1, -1)]
    operations += [{"op": "add", "path": _pointer(index), "value": new[index]} for index in range(shared, len(new))]
    return operations


def stack_update(old: list[Frame], new: list[Frame]) -> StackUpdated:
    return StackUpdated(update=json.dumps(stack_patch(old, new)))


@dataclass
class Conversation:
    """Slots, stack and history of one conversation; `apply` is the only way to change them.

    The stack is kept in its serialised form (a list of frame dicts, patterns.md §1); frames are
    never mutated in place, so copies of the list can share them.
    """

    sender_id: str
    initial_slots: Mapping[str, Any]
    events: list[Event] = field(default_factory=list)
    committed: int = 0
    slots: dict[str, Any] = field(default_factory=dict)
    filled_by: dict[str, str] = field(default_factory=dict)
    stack: list[Frame] = field(default_factory=list)
    latest_message: UserUttered | None = None
    paused: bool = False
    _event_dicts: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.slots:
            self.slots = dict(self.initial_slots)

    @classmethod
    def from_events(cls, sender_id: str, initial_slots: Mapping[str, Any], events: Iterable[Event]) -> "Conversation":
        conversation = cls(sender_id, initial_slots)
        conversation.apply_all(events)
        conversation.committed = len(conversation.events)
        return conversation

    def apply(self, event: Event) -> None:
        self.events.append(event)
        match event:
            case SlotSet():
                self.slots[event.slot] = event.value
                if event.filled_by is not None:
                    self.filled_by[event.slot] = event.filled_by
                else:
                    self.filled_by.pop(event.slot, None)
            case StackUpdated():
                self.stack = jsonpatch.apply_patch(self.stack, json.loads(event.update))
            case UserUttered():
                self.latest_message = event
            case ConversationPaused():
                self.paused = True
            case ConversationResumed():
                self.paused = False
            case Restarted() | SessionStarted():
                self.paused = False
                self.slots = dict(self.initial_slots)
                self.filled_by.clear()
                self.stack = []

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def set_stack(self, new_stack: list[Frame]) -> None:
        """Record a stack change as a `stack` event (the only way the stack changes)."""
        update = stack_update(self.stack, new_stack)
        if update.update != "[]":
            # The new stack is known, so the patch is recorded rather than applied again.
            self.events.append(update)
            self.stack = list(new_stack)

    def fork(self) -> "Conversation":
        """A working copy for one turn: changes to it leave this conversation untouched."""
        return Conversation(
            sender_id=self.sender_id,
            initial_slots=self.initial_slots,
            events=list(self.events),
            committed=self.committed,
            slots=dict(self.slots),
            filled_by=dict(self.filled_by),
            stack=list(self.stack),
            latest_message=self.latest_message,
            paused=self.paused,
            _event_dicts=list(self._event_dicts),
        )

    def event_dicts(self) -> list[dict[str, Any]]:
        """Every event in its JSON form; events never change, so each is serialised once."""
        self._event_dicts.extend(event.to_dict() for event in self.events[len(self._event_dicts) :])
        return self._event_dicts

    @property
    def pending(self) -> list[Event]:
        """Events applied since the last commit."""
        return self.events[self.committed :]

    def mark_committed(self) -> None:
        self.committed = len(self.events)

    def events_since_last_restart(self) -> list[Event]:
        for index in range(len(self.events) - 1, -1, -1):
            if isinstance(self.events[index], (Restarted, SessionStarted)):
                return self.events[index:]
        return list(self.events)

    def latest_bot_messages(self, until: int | None = None) -> list[BotUttered]:
        """The latest run of consecutive bot messages before event `until` (user messages after
        the run are skipped over)."""
        run: list[BotUttered] = []
        for event in reversed(self.events[:until]):
            if isinstance(event, BotUttered):
                run.append(event)
            elif isinstance(event, UserUttered) and run:
                break
        return list(reversed(run))
