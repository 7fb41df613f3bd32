"""Every default pattern (patterns.md §2), driven by commands, plus project overrides (§4)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.dialogue.conftest import BANK, Chat, make_assistant
from voicecalm.assistant import Assistant, UserTurn
from voicecalm.dialogue.commands import CannotHandle, Command, SetSlot
from voicecalm.project import Project, load_project
from voicecalm.tracker.events import (
    ActionExecuted,
    FlowCancelled,
    FlowCompleted,
    FlowResumed,
    FlowStarted,
    Restarted,
    SessionEnded,
    SessionStarted,
    SlotSet,
)
from voicecalm.tracker.stores import InMemoryTrackerStore


def bank_project(tmp_path: Path, flows: str = "", domain: str = "", config: str | None = None) -> Project:
    """The test bank copied to tmp_path, with extra flow and domain files (the extras win)."""
    root = tmp_path / "bank"
    shutil.copytree(BANK, root)
    (root / "domain").mkdir()
    shutil.move(root / "domain.yml", root / "domain" / "bank.yml")
    if domain:
        (root / "domain" / "zz_extra.yml").write_text(textwrap.dedent(domain).lstrip("\n"))
    if flows:
        (root / "data" / "extra.yml").write_text(textwrap.dedent(flows).lstrip("\n"))
    if config is not None:
        (root / "config.yml").write_text(textwrap.dedent(config).lstrip("\n"))
    return load_project(root)


async def started_chat(project: Project, **services: Any) -> Chat:
    chat = Chat(make_assistant(project, **services))
    await chat.say("cancel flow")  # the first turn also starts the session
    return chat


async def send(chat: Chat, *commands: Command) -> list[str]:
    """One turn made of the given command objects (for commands the DSL cannot express)."""
    chat.last = await chat.assistant.handle(
        chat.sender_id, UserTurn(text="user text", commands=list(commands), input_channel=chat.channel)
    )
    return chat.utters


def started(chat: Chat, flow_id: str) -> dict[str, Any]:
    """The context of the frame of `flow_id` that started this turn (flow_started metadata)."""
    events = [e for e in chat.events(FlowStarted) if e.flow_id == flow_id]
    assert events, f"{flow_id} did not start this turn; started: {[e.flow_id for e in chat.events(FlowStarted)]}"
    return dict(events[-1].metadata)


# --- pattern_collect_information --------------------------------------------------------------


async def test_collect_asks_with_its_context_and_takes_the_answer(chat: Chat) -> None:
    assert await chat.say("start flow transfer_money") == ["utter_ask_recipient"]
    context = started(chat, "pattern_collect_information")
    assert context["collect"] == "recipient"
    assert context["utter"] == "utter_ask_recipient"
    assert context["collect_action"] == "action_ask_recipient"
    assert context["rejections"] == []
    assert await chat.say("set slot recipient Jane") == ["utter_ask_amount"]
    assert (await chat.slots())["recipient"] == "Jane"
    assert "pattern_collect_information" in [e.flow_id for e in chat.events(FlowCompleted)]


async def test_collect_rejects_a_value_of_the_wrong_type_and_asks_again(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert await chat.say("set slot amount lots") == ["utter_float_slot_rejection", "utter_ask_amount"]
    assert "lots" in chat.texts[0]
    assert (await chat.slots())["amount"] is None
    assert await chat.say("set slot amount 20") == ["utter_ask_confirmed"]


async def test_collect_rejection_condition_says_its_response_and_asks_again(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    context = started(chat, "pattern_collect_information")
    assert context["collect"] == "amount"
    assert context["rejections"] == [{"if": "slots.amount > 5000", "utter": "utter_too_much"}]
    assert await chat.say("set slot amount 6000") == ["utter_too_much", "utter_ask_amount"]
    assert (await chat.slots())["amount"] is None
    assert await chat.stack() == [
        ("transfer_money", "transfer_money_1_collect_amount"),
        ("pattern_collect_information", "pattern_collect_information_4_action_listen"),
    ]


# --- pattern_validate_slot --------------------------------------------------------------------

VALIDATION_DOMAIN = """
slots:
  age:
    type: float
    validation:
      rejections:
        - if: slots.age < 18
          utter: utter_too_young
      refill_utter: utter_ask_age_again
  postcode:
    type: text
    validation:
      rejections:
        - if: slots.postcode = "0000"
          utter: utter_bad_postcode
responses:
  utter_ask_age:
    - text: How old are you?
  utter_ask_age_again:
    - text: Please tell me your age again.
  utter_too_young:
    - text: You must be 18.
  utter_ask_postcode:
    - text: What is your postcode?
  utter_bad_postcode:
    - text: That postcode is not valid.
  utter_registered:
    - text: You are registered.
"""

VALIDATION_FLOWS = """
flows:
  register:
    description: Register a new customer.
    steps:
      - collect: age
      - collect: postcode
      - action: utter_registered
"""


@pytest.fixture
def validating(tmp_path: Path) -> Project:
    return bank_project(tmp_path, flows=VALIDATION_FLOWS, domain=VALIDATION_DOMAIN)


async def test_validate_slot_rejects_and_asks_with_the_refill_response(validating: Project) -> None:
    chat = await started_chat(validating)
    assert await chat.say("start flow register") == ["utter_ask_age"]
    assert await chat.say("set slot age 12") == ["utter_too_young", "utter_ask_age_again"]
    context = started(chat, "pattern_validate_slot")
    assert context["validate"] == "age"
    assert context["refill_utter"] == "utter_ask_age_again"
    assert context["refill_action"] == "action_ask_age"
    assert context["rejections"] == [{"if": "slots.age < 18", "utter": "utter_too_young"}]
    assert (await chat.slots())["age"] is None
    assert await chat.say("set slot age 30") == ["utter_ask_postcode"]
    assert (await chat.slots())["age"] == 30.0


async def test_validate_slot_refill_defaults_to_the_ask_response(validating: Project) -> None:
    chat = await started_chat(validating)
    await chat.say("start flow register", "set slot age 40")
    assert chat.utters == ["utter_ask_postcode"]
    assert await chat.say("set slot postcode 0000") == ["utter_bad_postcode", "utter_ask_postcode"]
    assert started(chat, "pattern_validate_slot")["refill_utter"] == "utter_ask_postcode"
    assert await chat.say("set slot postcode 1234") == ["utter_registered", "utter_ask_continue_conversation"]


# --- pattern_correction -----------------------------------------------------------------------


async def test_correction_context_and_confirmation(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane", "set slot amount 50")
    assert await chat.say("set slot amount 80") == ["utter_corrected_previous_input", "utter_ask_confirmed"]
    context = started(chat, "pattern_correction")
    assert context["is_reset_only"] is False
    assert context["corrected_slots"] == {"amount": {"value": "80", "filled_by": "LLM"}}
    assert context["new_slot_values"] == {"amount": "80"}
    assert context["reset_flow_id"] == "transfer_money"
    assert context["reset_step_id"] == "transfer_money_1_collect_amount"


PIZZA_FLOWS = """
flows:
  order_pizza:
    description: Order a pizza.
    steps:
      - collect: size
        ask_before_filling: true
      - collect: topping
      - action: utter_pizza_ordered
"""

PIZZA_DOMAIN = """
slots:
  size:
    type: text
  topping:
    type: text
responses:
  utter_ask_size:
    - text: Which size?
  utter_ask_topping:
    - text: Which topping?
  utter_pizza_ordered:
    - text: Your {size} pizza is ordered.
"""


async def test_correction_of_an_ask_before_filling_slot_is_reset_only_and_silent(tmp_path: Path) -> None:
    chat = await started_chat(bank_project(tmp_path, flows=PIZZA_FLOWS, domain=PIZZA_DOMAIN))
    assert await chat.say("start flow order_pizza") == ["utter_ask_size"]
    assert await chat.say("set slot size large") == ["utter_ask_topping"]
    utters = await chat.say("set slot size small")
    assert started(chat, "pattern_correction")["is_reset_only"] is True
    assert "utter_corrected_previous_input" not in utters
    assert utters == ["utter_ask_size"], "jumps back to the size question without a confirmation"


# --- pattern_cancel_flow ----------------------------------------------------------------------


async def test_cancel_flow_context(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    frame_id = (await chat.conversation()).stack[0]["frame_id"]
    assert await chat.say("cancel flow") == ["utter_flow_cancelled_rasa"]
    context = started(chat, "pattern_cancel_flow")
    assert context["canceled_name"] == "transfer money"
    assert frame_id in context["canceled_frames"]
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["transfer_money"]
    assert "pattern_completed" not in [e.flow_id for e in chat.events(FlowStarted)]


async def test_project_overrides_pattern_cancel_flow(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        flows="""
        flows:
          pattern_cancel_flow:
            description: Custom cancel.
            steps:
              - action: action_cancel_flow
              - action: utter_custom_cancel
        """,
        domain="""
        responses:
          utter_custom_cancel:
            - text: "Dropped {{ context.canceled_name }}."
              metadata:
                template: jinja
        """,
    )
    chat = await started_chat(project)
    await chat.say("start flow transfer_money")
    assert await chat.say("cancel flow") == ["utter_custom_cancel"]
    assert chat.texts == ["Dropped transfer money."]
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["transfer_money"]


async def test_project_response_overrides_a_default_response(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        domain="""
        responses:
          utter_flow_cancelled_rasa:
            - text: All right, forget it.
        """,
    )
    chat = await started_chat(project)
    await chat.say("start flow transfer_money")
    assert await chat.say("cancel flow") == ["utter_flow_cancelled_rasa"]
    assert chat.texts == ["All right, forget it."]


# --- pattern_clarification --------------------------------------------------------------------


async def test_clarification_trims_to_max_clarification_options(chat: Chat) -> None:
    utters = await chat.say("disambiguate flows transfer_money pay_bill check_balance set_nickname")
    assert utters == ["utter_clarification_options_rasa"]
    assert chat.texts == ["Happy to help; which one do you mean: check balance, pay bill or set nickname?"]
    context = (await chat.conversation()).stack
    assert context == [], "the clarification ends after asking"
    assert started(chat, "pattern_clarification")["names"] == [
        "check balance", "pay bill", "set nickname", "transfer money"
    ]


async def test_clarification_respects_a_project_max_clarification_options(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        domain="""
        slots:
          max_clarification_options:
            type: float
            initial_value: 2
        """,
    )
    chat = await started_chat(project)
    await chat.say("disambiguate flows transfer_money pay_bill check_balance")
    assert chat.utters == ["utter_clarification_options_rasa"]
    assert chat.texts == ["Happy to help; which one do you mean: check balance or pay bill?"]


async def test_clarification_without_options(chat: Chat) -> None:
    assert await chat.say("disambiguate flows") == ["utter_clarification_no_options_rasa"]


# --- pattern_chitchat -------------------------------------------------------------------------


async def test_chitchat_default_cannot_handle(chat: Chat) -> None:
    assert await chat.say("offtopic reply") == ["utter_cannot_handle"]
    assert "pattern_chitchat" in [e.flow_id for e in chat.events(FlowStarted)]


async def test_chitchat_inside_a_flow_keeps_the_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.say("offtopic reply") == ["utter_cannot_handle", "utter_ask_recipient"]


async def test_chitchat_override_with_trigger_and_no_responder_cannot_handle(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        flows="""
        flows:
          pattern_chitchat:
            description: Free-form chitchat.
            steps:
              - action: action_trigger_chitchat
        """,
    )
    chat = await started_chat(project)
    assert await chat.say("offtopic reply") == ["utter_cannot_handle"]
    assert chat.last is not None
    assert chat.last.commands == [CannotHandle(reason="cannot_handle_chitchat")]
    assert started(chat, "pattern_cannot_handle")["reason"] == "cannot_handle_chitchat"


async def test_chitchat_override_with_free_response(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        flows="""
        flows:
          pattern_chitchat:
            description: Free-form chitchat.
            steps:
              - action: utter_free_chitchat_response
        """,
    )
    chat = await started_chat(project)
    assert await chat.say("offtopic reply") == ["utter_free_chitchat_response"]


# --- pattern_search ---------------------------------------------------------------------------


async def test_search_default_has_no_knowledge_base(chat: Chat) -> None:
    utters = await chat.say("provide info")
    assert utters == ["utter_no_knowledge_base", "utter_ask_continue_conversation"], (
        "pattern_search ending on an empty stack is followed by pattern_completed"
    )


async def test_search_inside_a_flow_returns_to_the_question(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.say("provide info") == ["utter_no_knowledge_base", "utter_ask_recipient"]


async def test_search_override_without_knowledge_finds_nothing(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        flows="""
        flows:
          pattern_search:
            description: Search the documents.
            steps:
              - action: action_trigger_search
        """,
    )
    chat = await started_chat(project)
    utters = await chat.say("provide info")
    assert utters[0] == "utter_no_relevant_answer_found"
    assert started(chat, "pattern_cannot_handle")["reason"] == "cannot_handle_no_relevant_answer"


# --- pattern_cannot_handle --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "response"),
    [
        ("cannot_handle_default", "utter_ask_rephrase"),
        ("cannot_handle_chitchat", "utter_cannot_handle"),
        ("cannot_handle_not_supported", "utter_cannot_handle"),
        ("cannot_handle_no_relevant_answer", "utter_no_relevant_answer_found"),
        ("cannot_handle_invalid_intent", "utter_ask_rephrase"),
        ("something_else", "utter_ask_rephrase"),
    ],
)
async def test_cannot_handle_reason_picks_the_response(chat: Chat, reason: str, response: str) -> None:
    assert await send(chat, CannotHandle(reason=reason)) == [response]
    assert started(chat, "pattern_cannot_handle")["reason"] == reason


async def test_cannot_handle_dsl_line(chat: Chat) -> None:
    assert await chat.say("cannot handle") == ["utter_ask_rephrase"]


# --- pattern_internal_error -------------------------------------------------------------------


async def test_empty_message_is_an_input_error(chat: Chat) -> None:
    assert await chat.type("") == ["utter_user_input_empty_error_rasa"]
    assert started(chat, "pattern_internal_error")["error_type"] == "rasa_internal_error_user_input_empty"
    assert await chat.type("   ") == ["utter_user_input_empty_error_rasa"]


async def test_too_long_message_is_an_input_error_with_the_limit(chat: Chat) -> None:
    assert await chat.type("x" * 421) == ["utter_user_input_too_long_error_rasa"]
    assert "420" in chat.texts[0]
    context = started(chat, "pattern_internal_error")
    assert context["error_type"] == "rasa_internal_error_user_input_too_long"
    assert context["info"] == {"max_characters": 420}


async def test_message_at_the_limit_is_not_too_long(chat: Chat) -> None:
    assert await chat.type("x" * 420) == ["utter_ask_rephrase"]


async def test_failing_custom_action_cancels_the_flow_and_the_next_turn_works(chat: Chat) -> None:
    utters = await chat.say("start flow broken_flow")
    assert utters == ["utter_internal_error_rasa", "utter_flow_cancelled_rasa"]
    failed = [e for e in chat.events(ActionExecuted) if e.action_name == "action_broken"]
    assert len(failed) == 1 and failed[0].metadata["error"] == "connection_error"
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["broken_flow"]
    assert "pattern_completed" not in [e.flow_id for e in chat.events(FlowStarted)]
    assert await chat.stack() == []
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]


async def test_failing_action_inside_an_interrupting_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    utters = await chat.say("start flow broken_flow")
    assert utters[:2] == ["utter_internal_error_rasa", "utter_flow_cancelled_rasa"]
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["broken_flow"]
    assert (await chat.slots())["recipient"] == "Jane"


async def test_circuit_breaker_cancels_an_endless_flow(chat: Chat) -> None:
    assert await chat.say("start flow endless") == ["utter_internal_error_rasa"]
    assert [e.flow_id for e in chat.events(FlowCancelled)] == ["endless"]
    assert await chat.stack() == []
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]


# --- pattern_human_handoff --------------------------------------------------------------------


async def test_handoff_command_without_transfer(chat: Chat) -> None:
    assert await chat.say("human handoff") == ["utter_human_handoff_not_available"]
    context = started(chat, "pattern_human_handoff")
    assert context["reason"] == "user_request"
    assert context["transfer_available"] is False
    assert chat.last is not None and not chat.last.session_ended


async def test_handoff_old_spelling(chat: Chat) -> None:
    assert await chat.say("hand over") == ["utter_human_handoff_not_available"]


async def test_handoff_with_transfer_available_ends_the_session(bank: Project) -> None:
    async def transfer() -> bool:
        return True

    chat = await started_chat(bank, transfer_to_human=transfer)
    assert await chat.say("human handoff") == ["utter_human_handoff_transfer"]
    assert started(chat, "pattern_human_handoff")["transfer_available"] is True
    ended = chat.events(SessionEnded)
    assert len(ended) == 1 and ended[0].metadata["_reason"] == "handoff"
    assert chat.last is not None and chat.last.session_ended


async def test_handoff_transfer_that_fails_continues_the_conversation(bank: Project) -> None:
    async def transfer() -> bool:
        return False

    chat = await started_chat(bank, transfer_to_human=transfer)
    assert await chat.say("human handoff") == ["utter_human_handoff_transfer", "utter_human_handoff_failed"]
    assert chat.events(SessionEnded) == []
    assert chat.last is not None and not chat.last.session_ended


async def test_handoff_inside_a_flow_returns_to_the_question(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.say("human handoff") == ["utter_human_handoff_not_available", "utter_ask_recipient"]


async def test_handoff_by_link_has_reason_link(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        flows="""
        flows:
          talk_to_human:
            description: Talk to a person.
            steps:
              - link: pattern_human_handoff
        """,
    )
    chat = await started_chat(project)
    assert await chat.say("start flow talk_to_human") == ["utter_human_handoff_not_available"]
    context = started(chat, "pattern_human_handoff")
    assert context["reason"] == "link"
    assert context["transfer_available"] is False
    assert "talk_to_human" in [e.flow_id for e in chat.events(FlowCompleted)]


async def test_handoff_command_off_cannot_be_handled(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        config="""
        recipe: default.v1
        language: en
        pipeline:
          - name: CompactLLMCommandGenerator
            human_handoff_command: false
        policies:
          - name: FlowPolicy
        """,
    )
    chat = await started_chat(project)
    assert await chat.say("human handoff") == ["utter_ask_rephrase"]


# --- pattern_completed and pattern_customer_satisfaction --------------------------------------


async def test_completed_after_a_user_flow(chat: Chat) -> None:
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    assert started(chat, "pattern_completed")["previous_flow_name"] == "check balance"
    assert await chat.say("set slot continue_conversation True") == ["utter_can_do_something_else"]
    assert await chat.stack() == []


async def test_a_new_flow_replaces_the_pending_completed_question(chat: Chat) -> None:
    await chat.say("start flow check_balance")
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    assert [name for name, _ in await chat.stack()] == ["pattern_completed", "pattern_collect_information"]
    assert await chat.say("set slot continue_conversation True") == ["utter_can_do_something_else"]


async def test_a_new_flow_replaces_the_pending_continue_interrupted_question(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    await chat.say("start flow check_balance")
    assert await chat.say("start flow set_nickname") == ["utter_ask_nickname"]
    assert [name for name, _ in await chat.stack()] == [
        "transfer_money",
        "pattern_collect_information",
        "set_nickname",
        "pattern_collect_information",
    ], "the replaced pattern's own question goes with it"
    assert await chat.say("set slot nickname Ace") == [
        "utter_nickname_saved",
        "utter_ask_continue_interrupted_flow_confirmation",
    ]
    assert await chat.say("set slot continue_interrupted_flow_confirmation True") == ["utter_ask_amount"]


async def test_no_completed_after_cancel(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.say("cancel flow") == ["utter_flow_cancelled_rasa"]
    assert "pattern_completed" not in [e.flow_id for e in chat.events(FlowStarted)]


async def test_no_completed_for_a_flow_without_run_pattern_completed(tmp_path: Path) -> None:
    project = bank_project(
        tmp_path,
        flows="""
        flows:
          say_thanks:
            description: Say thanks.
            run_pattern_completed: false
            steps:
              - action: utter_thanks
        """,
    )
    chat = await started_chat(project)
    assert await chat.say("start flow say_thanks") == ["utter_thanks"]
    assert await chat.stack() == []


async def test_customer_satisfaction_unsatisfied(chat: Chat) -> None:
    await chat.say("start flow check_balance")
    assert await chat.say("set slot continue_conversation False") == ["utter_closing_words", "utter_ask_csat_score"]
    assert "pattern_customer_satisfaction" in [e.flow_id for e in chat.events(FlowStarted)]
    assert await chat.say("set slot csat_score unsatisfied") == ["utter_csat_thank_you_unsatisfied"]
    assert await chat.stack() == [], "customer satisfaction does not run pattern_completed"


async def test_customer_satisfaction_by_button(chat: Chat) -> None:
    await chat.say("start flow check_balance")
    await chat.say("set slot continue_conversation False")
    assert await chat.type("/SetSlots(csat_score=satisfied)") == ["utter_csat_thank_you_satisfied"]


# --- pattern_continue_interrupted -------------------------------------------------------------


async def test_continue_interrupted_single_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert await chat.say("start flow check_balance") == [
        "utter_balance",
        "utter_ask_continue_interrupted_flow_confirmation",
    ]
    context = started(chat, "pattern_continue_interrupted")
    assert context["multiple_flows_interrupted"] is False
    assert context["interrupted_flow_ids"] == ["transfer_money"]
    assert context["interrupted_flow_names"] == ["transfer money"]
    assert context["interrupted_flow_options"] == "transfer money"
    assert await chat.say("set slot continue_interrupted_flow_confirmation True") == ["utter_ask_amount"]
    assert [e.flow_id for e in chat.events(FlowResumed)] == ["transfer_money"]


async def test_continue_interrupted_multiple_flows_pick_one(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert await chat.say("start flow set_nickname") == ["utter_ask_nickname"]
    utters = await chat.say("start flow check_balance")
    assert utters == ["utter_balance", "utter_ask_interrupted_flow_to_continue"]
    context = started(chat, "pattern_continue_interrupted")
    assert context["multiple_flows_interrupted"] is True
    assert context["interrupted_flow_ids"] == ["set_nickname", "transfer_money"]
    assert context["interrupted_flow_options"] == "set nickname and transfer money"
    assert chat.texts[-1] == "Which one should we pick up again: set nickname and transfer money?"
    assert await chat.say("set slot interrupted_flow_to_continue transfer_money") == ["utter_ask_amount"]
    assert [e.flow_id for e in chat.events(FlowResumed)] == ["transfer_money"]
    assert await chat.say("set slot amount 20") == ["utter_ask_confirmed"]


async def test_continue_interrupted_multiple_flows_none(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    await chat.say("start flow set_nickname")
    await chat.say("start flow check_balance")
    assert await chat.say("set slot interrupted_flow_to_continue none") == ["utter_ask_continue_conversation"]
    assert sorted(e.flow_id for e in chat.events(FlowCancelled)) == ["set_nickname", "transfer_money"]
    assert [name for name, _ in await chat.stack()] == ["pattern_completed", "pattern_collect_information"]


# --- pattern_skip_question --------------------------------------------------------------------


async def test_skip_question_in_a_flow(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.say("skip question") == ["utter_skip_question_answer", "utter_ask_recipient"]


async def test_skip_question_without_a_flow_does_nothing(chat: Chat) -> None:
    assert await chat.say("skip question") == []
    assert "pattern_skip_question" not in [e.flow_id for e in chat.events(FlowStarted)]


# --- pattern_repeat_bot_messages --------------------------------------------------------------


async def test_repeat_says_the_previous_bot_turn_again(chat: Chat) -> None:
    await chat.say("offtopic reply")
    assert await chat.say("repeat message") == ["utter_cannot_handle"]


async def test_repeat_while_a_question_is_pending_asks_it_once(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert await chat.say("repeat message") == ["utter_ask_amount"]
    await chat.say("start flow check_balance")
    assert chat.utters == ["utter_balance", "utter_ask_continue_interrupted_flow_confirmation"]
    assert await chat.say("repeat message") == ["utter_balance", "utter_ask_continue_interrupted_flow_confirmation"]


# --- pattern_code_change ----------------------------------------------------------------------


async def test_code_change_informs_and_cleans_the_stack(tmp_path: Path, bank: Project) -> None:
    changed = bank_project(tmp_path)
    flows_file = tmp_path / "bank" / "data" / "flows.yml"
    flows_file.write_text(flows_file.read_text().replace("the person who gets the money", "who gets it"))
    changed = load_project(tmp_path / "bank")
    assert changed.flows["transfer_money"].fingerprint != bank.flows["transfer_money"].fingerprint
    store = InMemoryTrackerStore()
    before = Chat(Assistant(bank, store))
    await before.say("start flow transfer_money", "set slot recipient Jane")
    after = Chat(Assistant(changed, store))
    assert await after.say("set slot amount 20") == ["utter_inform_code_change"]
    assert after.last is not None and [c.command for c in after.last.commands] == ["handle code change"]
    assert "transfer_money" in [e.flow_id for e in after.events(FlowCancelled)]
    assert await after.stack() == []
    assert await after.say("start flow check_balance") != ["utter_inform_code_change"]


# --- pattern_restart, session start / end -----------------------------------------------------


async def test_restart_clears_slots_and_stack(chat: Chat) -> None:
    await chat.say("start flow set_nickname", "set slot nickname Ace")
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    assert (await chat.slots())["nickname"] == "Ace"
    await chat.type("/restart")
    assert len(chat.events(Restarted)) == 1
    slots = await chat.slots()
    assert slots["recipient"] is None and slots["nickname"] is None
    assert await chat.stack() == []
    assert await chat.say("start flow transfer_money") == ["utter_ask_recipient"]


GREETING_FLOWS = """
flows:
  pattern_session_start:
    description: Greet the user.
    steps:
      - action: action_session_start
      - action: utter_greet
"""

GREETING_DOMAIN = """
responses:
  utter_greet:
    - text: Hello!
"""


async def test_session_start_override_greets_on_the_first_turn(tmp_path: Path) -> None:
    chat = Chat(make_assistant(bank_project(tmp_path, flows=GREETING_FLOWS, domain=GREETING_DOMAIN)))
    assert await chat.say("start flow check_balance") == ["utter_greet", "utter_balance", "utter_ask_continue_conversation"]
    assert len(chat.events(SessionStarted)) == 1


async def test_session_start_payload_starts_a_session(tmp_path: Path) -> None:
    chat = Chat(make_assistant(bank_project(tmp_path, flows=GREETING_FLOWS, domain=GREETING_DOMAIN)))
    assert await chat.type("/session_start") == ["utter_greet"]
    assert len(chat.events(SessionStarted)) == 1
    assert await chat.type("/session_start") == ["utter_greet"]
    assert len(chat.events(SessionStarted)) == 1


async def test_session_start_payload_with_the_default_pattern(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.type("/session_start") == []
    assert len(chat.events(SessionStarted)) == 1
    assert await chat.stack() == []


async def test_session_start_carries_slots_over_and_keeps_its_metadata(chat: Chat) -> None:
    await chat.say("start flow set_nickname", "set slot nickname Ace")
    chat.last = await chat.assistant.handle(
        chat.sender_id, UserTurn(text="/session_start", metadata={"caller": "+4930123"}, input_channel="rest")
    )
    assert len(chat.events(SessionStarted)) == 1
    slots = await chat.slots()
    assert slots["nickname"] == "Ace", "carry_over_slots_to_new_session is true by default"
    assert slots["session_started_metadata"] == {"caller": "+4930123"}
    assert await chat.stack() == []


async def test_session_end_payload_ends_the_session(chat: Chat) -> None:
    await chat.type("/session_end")
    ended = chat.events(SessionEnded)
    assert len(ended) == 1 and ended[0].metadata["_reason"] == "user disconnected"
    assert chat.last is not None and chat.last.session_ended is True


# --- pattern_user_silence ---------------------------------------------------------------------


async def test_silence_repeats_then_checks_then_hangs_up(chat: Chat) -> None:
    await chat.say("offtopic reply")
    assert await chat.type("/silence_timeout") == ["utter_cannot_handle"]
    assert (await chat.slots())["consecutive_silence_timeouts"] == 1.0
    assert await chat.type("/silence_timeout") == ["utter_ask_still_there"]
    assert (await chat.slots())["consecutive_silence_timeouts"] == 2.0
    assert chat.last is not None and not chat.last.session_ended
    assert await chat.type("/silence_timeout") == ["utter_inform_hangup"]
    ended = chat.events(SessionEnded)
    assert len(ended) == 1 and ended[0].metadata["_reason"] == "bot disconnected"
    assert chat.last.session_ended is True


async def test_silence_while_a_question_is_pending_repeats_it_once(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    assert await chat.type("/silence_timeout") == ["utter_ask_recipient"]


async def test_a_user_message_resets_the_silence_count(chat: Chat) -> None:
    await chat.say("start flow transfer_money")
    await chat.type("/silence_timeout")
    assert (await chat.slots())["consecutive_silence_timeouts"] == 1.0
    assert await chat.say("set slot recipient Jane") == ["utter_ask_amount"]
    assert (await chat.slots())["consecutive_silence_timeouts"] == 0.0
    assert await chat.type("/silence_timeout") == ["utter_ask_amount"], "counting starts again at 0"


async def test_user_silence_set_slot_events_are_written(chat: Chat) -> None:
    await chat.type("/silence_timeout")
    assert [e.value for e in chat.events(SlotSet) if e.slot == "consecutive_silence_timeouts"] == [1.0]


async def test_set_slot_payload_is_not_a_silence(chat: Chat) -> None:
    await chat.type("/silence_timeout")
    await send(chat, SetSlot("recipient", "Jane"))
    assert (await chat.slots())["consecutive_silence_timeouts"] == 0.0
