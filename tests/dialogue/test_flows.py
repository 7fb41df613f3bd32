"""Flows driven by commands: collect, branching, actions, completion, call and link."""

from __future__ import annotations

from tests.dialogue.conftest import BankActions, Chat
from voicecalm.tracker.events import FlowCompleted, FlowStarted, SlotSet


async def test_first_turn_starts_the_session(assistant) -> None:
    chat = Chat(assistant)
    utters = await chat.say("start flow transfer_money")
    assert utters == ["utter_ask_recipient"]
    conversation = await chat.conversation()
    assert [e.name for e in conversation.events[:1]] == ["session_started"]


async def test_collect_asks_and_listens(chat: Chat) -> None:
    assert await chat.say("start flow transfer_money") == ["utter_ask_recipient"]
    assert await chat.stack() == [
        ("transfer_money", "transfer_money_0_collect_recipient"),
        ("pattern_collect_information", "pattern_collect_information_4_action_listen"),
    ]
    assert await chat.say("set slot recipient Jane") == ["utter_ask_amount"]
    assert chat.texts == ["How much should I send to Jane?"]


async def test_slots_given_with_start_flow_skip_their_questions(chat: Chat) -> None:
    utters = await chat.say("start flow transfer_money", "set slot recipient Jane", "set slot amount 50")
    assert utters == ["utter_ask_confirmed"]
    assert (await chat.slots())["amount"] == 50.0


async def test_happy_path_runs_action_branch_and_completion(chat: Chat, actions: BankActions) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane", "set slot amount 50")
    utters = await chat.say("set slot confirmed True")
    assert utters == [
        "Transferring 50.0.",
        "utter_transfer_done",
        "utter_ask_continue_conversation",
    ]
    assert actions.calls == ["action_send_money"]
    assert [e.flow_id for e in chat.events(FlowCompleted)] == ["pattern_collect_information", "transfer_money"]
    slots = await chat.slots()
    assert slots["recipient"] is None and slots["amount"] is None, "flow slots reset at the end"
    assert [name for name, _ in await chat.stack()] == ["pattern_completed", "pattern_collect_information"]


async def test_answer_no_to_anything_else_closes_and_asks_for_rating(chat: Chat) -> None:
    await chat.say("start flow check_balance")
    assert await chat.say("set slot continue_conversation False") == ["utter_closing_words", "utter_ask_csat_score"]
    assert await chat.type("/SetSlots(csat_score=satisfied)") == ["utter_csat_thank_you_satisfied"]
    assert await chat.stack() == []


async def test_custom_action_slot_and_response_condition(chat: Chat, actions: BankActions) -> None:
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    assert chat.texts[0] == "Your balance is 120.5."
    actions.balance = -3
    await chat.say("start flow check_balance")
    assert chat.texts[0] == "You are overdrawn by -3.0."
    assert any(e.slot == "balance" and e.filled_by == "CUSTOM" for e in chat.events(SlotSet))


async def test_channel_variant_is_chosen(assistant) -> None:
    chat = Chat(assistant, channel="browser_audio")
    await chat.say("start flow check_balance")
    assert chat.texts[0] == "Balance: 120.5"


async def test_call_runs_child_then_continues_and_resets_child_slots(chat: Chat) -> None:
    assert await chat.say("start flow pay_bill") == ["utter_ask_pin"]
    stack = await chat.stack()
    assert [name for name, _ in stack] == ["pay_bill", "login", "pattern_collect_information"]
    assert await chat.say("set slot pin 1234") == ["utter_logged_in", "utter_ask_bill"]
    assert (await chat.slots())["logged_in"] is True
    utters = await chat.say("set slot bill water")
    assert utters == ["utter_bill_paid", "utter_ask_rating"], "link goes straight to the next flow"
    slots = await chat.slots()
    assert slots["pin"] is None and slots["logged_in"] is False and slots["bill"] is None
    started = [e for e in chat.events(FlowStarted) if e.flow_id == "rate_service"]
    assert started[0].metadata["frame_type"] == "link"
    assert "pay_bill" in [e.flow_id for e in chat.events(FlowCompleted)]


async def test_persisted_slots_survive_the_end_of_their_flow(chat: Chat) -> None:
    await chat.say("start flow set_nickname")
    assert await chat.say("set slot nickname Ace") == ["utter_nickname_saved", "utter_ask_continue_conversation"]
    assert (await chat.slots())["nickname"] == "Ace"
