"""Reading a turn's events: value comparison as test files mean it, and one-line renderings."""

from __future__ import annotations

import json
from typing import Any

from voicecalm.project import Project
from voicecalm.testing.e2e.cases import show_value
from voicecalm.tracker.events import (
    ActionExecuted,
    BotUttered,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    SlotSet,
    StackUpdated,
    UserUttered,
)


def values_equal(expected: Any, actual: Any) -> bool:
    """YAML types matter: `true` is not `1`, `"50"` is not `50`, but `50` equals `50.0`."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if isinstance(expected, str) or isinstance(actual, str):
        return isinstance(expected, str) and isinstance(actual, str) and expected == actual
    return bool(expected == actual)


def bot_line(event: BotUttered) -> str:
    parts = [part for part in (event.utter_action, json.dumps(event.text) if event.text is not None else None) if part]
    return "bot: " + " ".join(parts)


def transcript_line(event: Event, project: Project) -> str | None:
    """The conversation-style transcript line of an event; `None` for events it leaves out
    (engine bookkeeping and built-in slots)."""
    if isinstance(event, UserUttered):
        return f"user: {event.text}"
    if isinstance(event, BotUttered):
        return bot_line(event)
    if isinstance(event, SlotSet):
        slot = project.domain.slots.get(event.slot)
        if slot is not None and slot.location is None:
            return None
        return f"slot_was_set: {event.slot}: {show_value(event.value)}"
    return None


def event_line(event: Event) -> str | None:
    """A compact line for the events shown after a failed assertion; stack patches left out."""
    if isinstance(event, StackUpdated):
        return None
    if isinstance(event, UserUttered):
        return f"user: {event.text} {json.dumps(event.commands)}"
    if isinstance(event, BotUttered):
        return bot_line(event)
    if isinstance(event, SlotSet):
        return f"slot: {event.slot}: {show_value(event.value)}"
    if isinstance(event, ActionExecuted):
        return f"action: {event.action_name}"
    if isinstance(event, FlowStarted):
        return f"flow_started: {event.flow_id}"
    if isinstance(event, FlowCompleted | FlowCancelled):
        return f"{event.name}: {event.flow_id} at {event.step_id}"
    return event.name
