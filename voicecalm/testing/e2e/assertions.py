"""Assertion-style checks on one turn's events (testing.md §2).

Each check returns the index of the event that satisfied it, so that with
`assertion_order_enabled` the next assertion only looks at later events.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from voicecalm.testing.e2e import model
from voicecalm.testing.e2e.cases import Assertion, UserStep
from voicecalm.testing.e2e.judge import Judge, JudgeUnavailable
from voicecalm.testing.e2e.turn_events import values_equal
from voicecalm.tracker.events import (
    ActionExecuted,
    BotUttered,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    SlotSet,
)

CLARIFICATION_PATTERN = "pattern_clarification"


@dataclass(frozen=True, slots=True)
class AssertionOutcome:
    assertion: Assertion
    message: str | None = None  # why it failed; None when it passed

    @property
    def passed(self) -> bool:
        return self.message is None


@dataclass(frozen=True, slots=True)
class _Result:
    message: str | None = None
    position: int | None = None  # the matching event, for positive assertions


class _Turn:
    """The events an assertion may look at: the whole turn, or those after `start`."""

    def __init__(self, events: Sequence[Event], start: int, user_text: str, judge: Judge) -> None:
        self.events = events
        self.start = start
        self.user_text = user_text
        self.judge = judge

    def first(self, matches: Callable[[Event], bool]) -> int | None:
        return next((i for i in range(self.start, len(self.events)) if matches(self.events[i])), None)

    @property
    def remaining(self) -> Sequence[Event]:
        return self.events[self.start :]


async def check_assertions(step: UserStep, events: Sequence[Event], judge: Judge) -> list[AssertionOutcome]:
    """Outcomes in order up to and including the first failure, which ends the test case."""
    outcomes: list[AssertionOutcome] = []
    start = 0
    for assertion in step.assertions:
        result = await _check(assertion.check, _Turn(events, start, step.text, judge))
        if result.message is not None and step.assertion_order_enabled and start > 0:
            result = _Result(f"{result.message} (after the event matched by the previous assertion)")
        outcomes.append(AssertionOutcome(assertion, result.message))
        if result.message is not None:
            break
        if step.assertion_order_enabled and result.position is not None:
            start = result.position + 1
    return outcomes


def _found(position: int | None, message: str) -> _Result:
    return _Result(position=position) if position is not None else _Result(message)


async def _check(check: model.AssertionModel, turn: _Turn) -> _Result:
    match check:
        case model.FlowStarted(flow_started=str(flow_id)):
            return _found(
                turn.first(lambda e: isinstance(e, FlowStarted) and e.flow_id == flow_id),
                f"flow '{flow_id}' was not started",
            )
        case model.FlowStarted(flow_started=model.FlowIds(flow_ids=ids)):
            return _found(
                turn.first(lambda e: isinstance(e, FlowStarted) and e.flow_id in ids),
                f"none of the flows {ids} was started",
            )
        case model.FlowCompleted(flow_completed=end):
            return _flow_end(turn, FlowCompleted, end, "completed")
        case model.FlowCancelled(flow_cancelled=end):
            return _flow_end(turn, FlowCancelled, end, "cancelled")
        case model.PatternClarificationContains(pattern_clarification_contains=expected):
            return _clarification(turn, expected)
        case model.ActionExecuted(action_executed=name):
            return _found(
                turn.first(lambda e: isinstance(e, ActionExecuted) and e.action_name == name),
                f"action '{name}' was not executed",
            )
        case model.SlotWasSet(slot_was_set=checks):
            return _slots_set(turn, checks)
        case model.SlotWasNotSet(slot_was_not_set=checks):
            return _slots_not_set(turn, checks)
        case model.BotUttered(bot_uttered=expected):
            return _found(
                turn.first(lambda e: isinstance(e, BotUttered) and _bot_matches(expected, e)),
                f"no bot message matches {_describe_bot(expected)}",
            )
        case model.BotDidNotUtter(bot_did_not_utter=expected):
            sent = [e for e in turn.remaining if isinstance(e, BotUttered) and _bot_matches(expected, e)]
            return _Result(f"the bot uttered {_describe_bot(expected)}: {sent[0].text!r}" if sent else None)
        case model.GenerativeResponseIsRelevant(generative_response_is_relevant=expected):
            return await _judged(turn, expected, lambda answer: turn.judge.relevance(turn.user_text, answer))
        case model.GenerativeResponseIsGrounded(generative_response_is_grounded=expected):
            truth = expected.ground_truth
            if truth is None:
                return _Result(f"{turn.judge.label}: `ground_truth` is needed to judge groundedness")
            return await _judged(turn, expected, lambda answer: turn.judge.groundedness(answer, truth))
    raise AssertionError(f"unhandled assertion {check!r}")


def _flow_end(turn: _Turn, kind: type[FlowCompleted | FlowCancelled], end: model.FlowEnd, verb: str) -> _Result:
    def matches(event: Event) -> bool:
        return (
            isinstance(event, kind)
            and event.flow_id == end.flow_id
            and (end.flow_step_id is None or event.step_id == end.flow_step_id)
        )

    at = f" at step '{end.flow_step_id}'" if end.flow_step_id else ""
    return _found(turn.first(matches), f"flow '{end.flow_id}' was not {verb}{at}")


def _clarification(turn: _Turn, expected: list[str] | model.ClarificationIds) -> _Result:
    def matches(event: Event) -> bool:
        if not isinstance(event, FlowStarted) or event.flow_id != CLARIFICATION_PATTERN:
            return False
        if isinstance(expected, model.ClarificationIds):
            ids = set(event.metadata.get("clarification_ids") or ())
            wanted = set(expected.flow_ids)
            return bool(wanted & ids) if expected.operator == "any" else wanted <= ids
        return sorted(event.metadata.get("names") or ()) == sorted(expected)

    started = [e for e in turn.remaining if isinstance(e, FlowStarted) and e.flow_id == CLARIFICATION_PATTERN]
    if not started:
        return _Result("pattern_clarification was not started")
    offered = started[0].metadata.get("names" if isinstance(expected, list) else "clarification_ids")
    return _found(turn.first(matches), f"pattern_clarification offered {offered}")


def _slots_set(turn: _Turn, checks: list[model.SlotCheck]) -> _Result:
    positions = []
    for check in checks:
        position = next(
            (i for i in range(turn.start, len(turn.events)) if _is_slot(turn.events[i], check)), None
        )
        if position is None:
            values = [e.value for e in turn.remaining if isinstance(e, SlotSet) and e.slot == check.name]
            if values:
                return _Result(f"slot '{check.name}' was set to {values}, not {check.value!r}")
            return _Result(f"slot '{check.name}' was not set")
        positions.append(position)
    return _Result(position=max(positions))


def _slots_not_set(turn: _Turn, checks: list[model.SlotCheck]) -> _Result:
    for check in checks:
        found = [e for e in turn.remaining if isinstance(e, SlotSet) and _slot_matches(check, e)]
        if found:
            return _Result(f"slot '{check.name}' was set to {found[0].value!r}")
    return _Result()


def _is_slot(event: Event, check: model.SlotCheck) -> bool:
    return isinstance(event, SlotSet) and _slot_matches(check, event)


def _slot_matches(check: model.SlotCheck, event: SlotSet) -> bool:
    return event.slot == check.name and (not check.has_value or values_equal(check.value, event.value))


def _bot_matches(expected: model.BotMessageCheck, event: BotUttered) -> bool:
    if expected.utter_name is not None and event.utter_action != expected.utter_name:
        return False
    if expected.text_matches is not None and not re.search(expected.text_matches, event.text or ""):
        return False
    if expected.buttons is not None:
        sent = [(str(b.get("title")), b.get("payload")) for b in event.data.get("buttons") or ()]
        return sent == [(b.title, b.payload) for b in expected.buttons]
    return True


def _describe_bot(expected: model.BotMessageCheck) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in expected.model_dump(exclude_none=True).items())


async def _judged(turn: _Turn, expected: model.RelevanceCheck, score: Callable[[str], Awaitable[float]]) -> _Result:
    candidates = [
        (i, e)
        for i, e in enumerate(turn.events)
        if i >= turn.start
        and isinstance(e, BotUttered)
        and e.text
        and (expected.utter_name is None or e.utter_action == expected.utter_name)
        and (expected.utter_source is None or e.metadata.get("utter_source") == expected.utter_source)
    ]
    if not candidates:
        return _Result(f"{turn.judge.label}: no bot message to judge")
    try:
        scored = [(await score(event.text or ""), i) for i, event in candidates]
    except JudgeUnavailable as error:
        return _Result(f"{turn.judge.label}: {error}")
    best, position = max(scored)
    if best < expected.threshold:
        return _Result(f"{turn.judge.label}: score {best:.2f} is below the threshold {expected.threshold}")
    return _Result(position=position)
