"""What an action returns is applied as actions.md §4 says: responses first, then events."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dialogue.conftest import BANK, Chat
from voicecalm.actions.runner import ActionResult
from voicecalm.assistant import Assistant
from voicecalm.project import load_project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import ActionExecuted, FlowStarted, Restarted, SessionEnded, SlotSet
from voicecalm.tracker.stores import InMemoryTrackerStore


class ScriptedActions:
    """An action runner whose `action_check_balance` returns whatever the test sets."""

    def __init__(self) -> None:
        self.result = ActionResult()
        self.calls: list[str] = []

    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        self.calls.append(action_name)
        return self.result if action_name == "action_check_balance" else ActionResult()


@pytest.fixture
def scripted() -> ScriptedActions:
    return ScriptedActions()


@pytest.fixture
async def chat(scripted: ScriptedActions) -> Chat:
    chat = Chat(Assistant(load_project(BANK), InMemoryTrackerStore(), actions=scripted))
    await chat.say("cancel flow")
    return chat


def result(events: list[dict[str, Any]] | None = None, responses: list[dict[str, Any]] | None = None) -> ActionResult:
    return ActionResult(events=events or [], responses=responses or [])


async def test_responses_come_before_the_events_take_effect(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(
        events=[{"event": "slot", "name": "balance", "value": "42"}],
        responses=[{"response": "utter_balance"}, {"text": "Plain text", "buttons": [{"title": "A", "payload": "/a"}]}],
    )
    await chat.say("start flow check_balance")
    assert chat.texts[:3] == ["Your balance is None.", "Plain text", "Your balance is 42.0."]
    assert chat.last.messages[1].buttons == ({"title": "A", "payload": "/a"},)
    slot = [e for e in chat.events(SlotSet) if e.slot == "balance"][0]
    assert slot.value == 42.0 and slot.filled_by == "CUSTOM", "coerced to the slot type"


async def test_response_with_template_variables_and_extra_buttons(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(responses=[{"response": "utter_ask_recipient", "buttons": [{"title": "Jane", "payload": "/SetSlots(recipient=Jane)"}]}])
    await chat.say("start flow check_balance")
    assert chat.last.messages[0].response == "utter_ask_recipient"
    assert [b["title"] for b in chat.last.messages[0].buttons] == ["Jane"]


async def test_action_slots_survive_the_flow_end(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "slot", "name": "nickname", "value": "Ace"}])
    await chat.say("start flow check_balance")
    assert (await chat.slots())["nickname"] == "Ace"


async def test_unknown_slot_is_ignored(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "slot", "name": "no_such_slot", "value": 1}])
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    assert "no_such_slot" not in await chat.slots()


async def test_reset_slots(chat: Chat, scripted: ScriptedActions) -> None:
    await chat.say("start flow set_nickname", "set slot nickname Ace")
    scripted.result = result(events=[{"event": "reset_slots"}])
    await chat.say("start flow check_balance")
    assert (await chat.slots())["nickname"] is None


async def test_followup_starts_a_flow(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "followup", "name": "flow_set_nickname"}])
    assert "utter_ask_nickname" in await chat.say("start flow check_balance")
    assert "set_nickname" in [e.flow_id for e in chat.events(FlowStarted)]


async def test_followup_runs_an_action(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "followup", "name": "utter_thanks"}])
    assert (await chat.say("start flow check_balance"))[0] == "utter_thanks"


async def test_bot_event_is_sent(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "bot", "text": "From the action", "data": {}, "metadata": {}}])
    await chat.say("start flow check_balance")
    assert chat.texts[0] == "From the action"


async def test_session_ended_hangs_up(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "session_ended", "metadata": {"_reason": "bot disconnected"}}])
    await chat.say("start flow check_balance")
    assert chat.last.session_ended and chat.events(SessionEnded)[0].metadata == {"_reason": "bot disconnected"}


async def test_restart_from_an_action(chat: Chat, scripted: ScriptedActions) -> None:
    await chat.say("start flow set_nickname", "set slot nickname Ace")
    scripted.result = result(events=[{"event": "restart"}])
    await chat.say("start flow check_balance")
    assert chat.events(Restarted)


async def test_pause_ignores_the_user_until_restart(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "pause"}])
    await chat.say("start flow check_balance")
    assert await chat.say("start flow transfer_money") == []
    assert (await chat.conversation()).paused
    await chat.type("/restart")
    assert not (await chat.conversation()).paused
    assert await chat.say("start flow transfer_money") == ["utter_ask_recipient"]


async def test_events_without_dialogue_effect_are_recorded_only(chat: Chat, scripted: ScriptedActions) -> None:
    scripted.result = result(events=[{"event": "reminder", "name": "later"}, {"event": "action", "name": "x"}])
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    assert [e.action_name for e in chat.events(ActionExecuted)].count("action_check_balance") == 1
