"""Conversation-style steps: `utter`, `bot`, `slot_was_set`, `slot_was_not_set` (testing.md §2).

Each is checked against the events of its turn; order inside a turn is not checked and extra
bot messages do not fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voicecalm.testing.e2e.cases import (
    BotStep,
    ExpectBotText,
    ExpectSlots,
    ExpectUtter,
    SlotExpectation,
    show_value,
    step_kind,
)
from voicecalm.testing.e2e.turn_events import values_equal
from voicecalm.tracker.events import BotUttered, Event, SlotSet


@dataclass(frozen=True, slots=True)
class StepOutcome:
    step: BotStep
    turn: int  # index into the case's turns
    matched: tuple[Event, ...]  # the events that satisfied the step
    message: str | None = None  # why it failed; None when it passed

    @property
    def passed(self) -> bool:
        return self.message is None

    @property
    def step_kind(self) -> str:
        return step_kind(self.step)


def check_step(step: BotStep, turn: int, events: Sequence[Event]) -> StepOutcome:
    if isinstance(step, ExpectUtter):
        found = [e for e in events if isinstance(e, BotUttered) and e.utter_action == step.name]
        message = None if found else f"'{step.name}' was not uttered in this turn"
        return StepOutcome(step, turn, tuple(found[:1]), message)
    if isinstance(step, ExpectBotText):
        found = [e for e in events if isinstance(e, BotUttered) and e.text == step.text]
        return StepOutcome(step, turn, tuple(found[:1]), None if found else "no bot message with exactly this text")
    return _check_slots(step, turn, events)


def _check_slots(step: ExpectSlots, turn: int, events: Sequence[Event]) -> StepOutcome:
    matched: list[Event] = []
    problems: list[str] = []
    for entry in step.entries:
        found = [e for e in events if isinstance(e, SlotSet) and _matches(entry, e)]
        if step.present and found:
            matched.append(found[0])
        elif step.present:
            problems.append(_not_set(entry, events))
        elif found:
            problems.append(f"slot '{entry.name}' was set to {show_value(found[0].value)}")
    return StepOutcome(step, turn, tuple(matched), "; ".join(problems) or None)


def _matches(entry: SlotExpectation, event: SlotSet) -> bool:
    return event.slot == entry.name and (not entry.check_value or values_equal(entry.value, event.value))


def _not_set(entry: SlotExpectation, events: Sequence[Event]) -> str:
    values = [show_value(e.value) for e in events if isinstance(e, SlotSet) and e.slot == entry.name]
    if values:
        return f"slot '{entry.name}' was set to {', '.join(values)}, not {show_value(entry.value)}"
    return f"slot '{entry.name}' was not set in this turn"
