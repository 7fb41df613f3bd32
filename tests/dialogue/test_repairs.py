"""Corrections, digressions with resume, cancellation scope and clarification."""

from __future__ import annotations

from tests.dialogue.conftest import Chat
from voicecalm.tracker.events import FlowCancelled, FlowCompleted, FlowInterrupted, FlowResumed, FlowStarted


async def test_correction_rewinds_to_the_corrected_question(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane", "set slot amount 50")
    utters = await chat.say("set slot amount 80")
    assert utters == ["utter_corrected_previous_input", "utter_ask_confirmed"]
    assert chat.texts[0] == "Got it, I've changed amount to 80."
    assert chat.texts[1] == "Send 80.0 to Jane?"
    assert (await chat.slots())["amount"] == 80.0
    assert await chat.say("set slot confirmed True") == ["Transferring 80.0.", "utter_transfer_done", "utter_ask_continue_conversation"]


async def test_correction_of_an_earlier_slot_while_a_later_one_is_asked(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    utters = await chat.say("set slot recipient Joe")
    assert utters == ["utter_corrected_previous_input", "utter_ask_amount"]
    assert chat.texts[-1] == "How much should I send to Joe?"


async def test_answer_to_the_asked_slot_is_not_a_correction(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane", "set slot amount 50")
    assert await chat.say("set slot confirmed False") == ["utter_transfer_stopped", "utter_ask_continue_conversation"]


async def test_same_value_again_is_dropped(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert await chat.say("set slot recipient Jane") == ["utter_ask_amount"]


async def test_digression_then_resume_the_interrupted_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    utters = await chat.say("start flow check_balance")
    assert utters == ["utter_balance", "utter_ask_continue_interrupted_flow_confirmation"]
    assert chat.texts[-1] == "Shall we carry on with transfer money?"
    started = [e for e in chat.events(FlowStarted) if e.flow_id == "check_balance"]
    assert started[0].metadata["frame_type"] == "interrupt"
    assert await chat.say("set slot continue_interrupted_flow_confirmation True") == ["utter_ask_amount"]
    assert (await chat.slots())["recipient"] == "Jane"


async def test_digression_then_decline_cancels_the_interrupted_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    await chat.say("start flow check_balance")
    utters = await chat.say("set slot continue_interrupted_flow_confirmation False")
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["transfer_money"]
    assert (await chat.slots())["recipient"] is None
    assert utters == ["utter_ask_continue_conversation"], "declining ends like a completed flow"


async def test_starting_a_flow_that_is_already_running_resumes_it(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    await chat.say("start flow set_nickname")
    assert await chat.say("start flow transfer_money") == ["utter_ask_amount"]
    assert [e.flow_id for e in chat.events(FlowResumed)] == ["transfer_money"]
    assert [e.flow_id for e in chat.events(FlowInterrupted)] == ["set_nickname"]


async def test_cancel_stops_the_flow_and_resets_its_slots(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert await chat.say("cancel flow") == ["utter_flow_cancelled_rasa"]
    assert chat.texts == ["Okay, I've stopped transfer money."]
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["transfer_money"]
    assert (await chat.slots())["recipient"] is None
    assert await chat.stack() == []


async def test_cancel_inside_a_called_flow_cancels_its_caller(chat: Chat) -> None:
    await chat.say("start flow pay_bill")
    assert await chat.say("cancel flow") == ["utter_flow_cancelled_rasa"]
    assert chat.texts == ["Okay, I've stopped pay bill."]
    assert sorted(e.flow_id for e in chat.events(FlowCancelled)) == ["login", "pay_bill"]
    assert await chat.stack() == []


async def test_cancel_only_the_interrupting_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    await chat.say("start flow set_nickname")
    utters = await chat.say("cancel flow")
    assert utters == ["utter_flow_cancelled_rasa", "utter_ask_amount"]
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["set_nickname"]


async def test_cancel_without_a_flow_cannot_be_handled(chat: Chat) -> None:
    assert await chat.say("cancel flow") == ["utter_ask_rephrase"]


async def test_clarification_lists_the_options(chat: Chat) -> None:
    assert await chat.say("disambiguate flows transfer_money pay_bill") == ["utter_clarification_options_rasa"]
    assert chat.texts == ["Happy to help; which one do you mean: pay bill or transfer money?"]
    assert await chat.say("start flow pay_bill") == ["utter_ask_pin"]


async def test_clarification_with_one_option_starts_it(chat: Chat) -> None:
    assert await chat.say("disambiguate flows transfer_money") == ["utter_ask_recipient"]


async def test_resume_leaves_one_frame_per_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    await chat.say("start flow check_balance")
    await chat.say("set slot continue_interrupted_flow_confirmation True")
    assert [name for name, _ in await chat.stack()] == ["transfer_money", "pattern_collect_information"]
    completed = [e.flow_id for e in chat.events(FlowCompleted)]
    assert completed.count("pattern_continue_interrupted") == 1


async def test_clarification_never_offers_flows_that_cannot_be_started(chat: Chat) -> None:
    assert await chat.say("disambiguate flows login transfer_money") == ["utter_ask_recipient"]
    assert await chat.say("cancel flow") == ["utter_flow_cancelled_rasa"]
    await chat.say("disambiguate flows login vip_offer transfer_money pay_bill")
    assert chat.texts == ["Happy to help; which one do you mean: pay bill or transfer money?"]


async def test_nothing_is_said_after_the_bot_hangs_up(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    for _ in range(2):
        await chat.type("/silence_timeout")
    assert await chat.type("/silence_timeout") == ["utter_inform_hangup"]
    assert chat.last.session_ended


async def test_cancel_and_a_new_request_in_one_message(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    utters = await chat.say("cancel flow", "start flow check_balance")
    assert utters == ["utter_flow_cancelled_rasa", "utter_balance", "utter_ask_continue_conversation"]
    assert chat.texts[0] == "Okay, I've stopped transfer money."
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["transfer_money"]
