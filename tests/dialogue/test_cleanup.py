"""Cleanup of a turn's commands (commands.md §3 filters, §4 table and whole-list rules, §4 execution skips)."""

from __future__ import annotations

import shutil
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.dialogue.conftest import BANK, Chat, make_assistant
from voicecalm.assistant import UserTurn
from voicecalm.dialogue.cleanup import CleanupSettings, clean_commands, filter_for_state
from voicecalm.dialogue.commands import (
    CUSTOM,
    LLM,
    PAYLOAD,
    CancelFlow,
    CannotHandle,
    ChitChat,
    Clarify,
    Command,
    CorrectedSlot,
    CorrectSlots,
    HumanHandoff,
    Knowledge,
    RepeatMessage,
    SetSlot,
    SkipQuestion,
    StartFlow,
)
from voicecalm.project import Project, load_project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import SlotSet

SETTINGS = CleanupSettings()


def bank_project(tmp_path: Path, flows: str = "", domain: str = "") -> Project:
    root = tmp_path / "bank"
    shutil.copytree(BANK, root)
    (root / "domain").mkdir()
    shutil.move(root / "domain.yml", root / "domain" / "bank.yml")
    if domain:
        (root / "domain" / "zz_extra.yml").write_text(textwrap.dedent(domain).lstrip("\n"))
    if flows:
        (root / "data" / "extra.yml").write_text(textwrap.dedent(flows).lstrip("\n"))
    return load_project(root)


async def state(chat: Chat, *turns: list[str]) -> Conversation:
    """The conversation after the given turns (each a list of DSL lines)."""
    for lines in turns:
        await chat.say(*lines)
    return await chat.conversation()


def clean(chat: Chat, conversation: Conversation, *commands: Command, settings: CleanupSettings = SETTINGS) -> list[Command]:
    return clean_commands(list(commands), chat.assistant.project, conversation, settings)


def same_commands(a: list[Command], b: list[Command]) -> bool:
    return Counter(map(repr, a)) == Counter(map(repr, b))


# --- set slot ---------------------------------------------------------------------------------


async def test_unknown_slot_cannot_be_handled(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, SetSlot("shoe_size", "42")) == [CannotHandle()]


async def test_llm_may_not_set_a_controlled_slot(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, SetSlot("balance", "1000")) == [CannotHandle()]
    assert clean(chat, conversation, SetSlot("logged_in", "True")) == [CannotHandle()]


async def test_dropped_controlled_slot_leaves_the_other_commands(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, SetSlot("logged_in", "True"), StartFlow("vip_offer")) == [StartFlow("vip_offer")]


async def test_payload_and_custom_may_set_a_controlled_slot(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, SetSlot("balance", "10", PAYLOAD)) == [SetSlot("balance", "10", PAYLOAD)]
    assert clean(chat, conversation, SetSlot("balance", "10", CUSTOM)) == [SetSlot("balance", "10", CUSTOM)]


async def test_controlled_slot_through_the_assistant_sets_nothing(chat: Chat) -> None:
    assert await chat.say("set slot logged_in True") == ["utter_ask_rephrase"]
    assert (await chat.slots())["logged_in"] is False


async def test_invalid_llm_set_slot_next_to_a_valid_one_for_the_same_slot(chat: Chat) -> None:
    conversation = await state(chat)
    cleaned = clean(chat, conversation, SetSlot("balance", "5", PAYLOAD), SetSlot("balance", "6", LLM))
    assert cleaned == [SetSlot("balance", "5", PAYLOAD)]


NLU_DOMAIN = """
entities:
  - city
slots:
  city:
    type: text
    mappings:
      - type: from_entity
        entity: city
      - type: from_llm
  town:
    type: text
    mappings:
      - type: from_entity
        entity: city
      - type: from_llm
        allow_nlu_correction: true
"""


async def test_llm_does_not_overwrite_an_nlu_value_without_allow_nlu_correction(tmp_path: Path) -> None:
    chat = Chat(make_assistant(bank_project(tmp_path, domain=NLU_DOMAIN)))
    conversation = (await state(chat, ["cancel flow"])).fork()
    conversation.apply(SlotSet(slot="city", value="Paris", filled_by="NLU"))
    conversation.apply(SlotSet(slot="town", value="Paris", filled_by="NLU"))
    assert clean(chat, conversation, SetSlot("city", "Rome")) == []
    assert clean(chat, conversation, SetSlot("town", "Rome")) == [
        CorrectSlots((CorrectedSlot("town", "Rome", LLM),))
    ]


async def test_asked_slot_already_set_is_kept_as_an_answer(chat: Chat) -> None:
    conversation = (await state(chat, ["start flow transfer_money"])).fork()
    conversation.apply(SlotSet(slot="recipient", value="Jane", filled_by=LLM))
    assert clean(chat, conversation, SetSlot("recipient", "Joe")) == [SetSlot("recipient", "Joe")]


async def test_empty_slot_is_kept(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money"])
    assert clean(chat, conversation, SetSlot("recipient", "Jane"), SetSlot("amount", "5")) == [
        SetSlot("recipient", "Jane"),
        SetSlot("amount", "5"),
    ]


async def test_same_value_again_is_dropped(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money", "set slot recipient Jane", "set slot amount 50"])
    assert clean(chat, conversation, SetSlot("recipient", "Jane")) == []
    assert clean(chat, conversation, SetSlot("amount", "50.0")) == [], "compared as strings with the stored value"


async def test_new_value_for_a_filled_slot_becomes_a_correction(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money", "set slot recipient Jane", "set slot amount 50"])
    assert clean(chat, conversation, SetSlot("recipient", "Joe"), SetSlot("amount", "80")) == [
        CorrectSlots((CorrectedSlot("recipient", "Joe", LLM), CorrectedSlot("amount", "80", LLM)))
    ]


# --- cancel flow, cannot handle, start flow ---------------------------------------------------


async def test_cancel_without_a_flow_cannot_be_handled(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, CancelFlow()) == [CannotHandle()]


async def test_cancel_with_a_flow_is_kept(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money"])
    assert clean(chat, conversation, CancelFlow()) == [CancelFlow()]


async def test_duplicate_cannot_handle_is_dropped(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, CannotHandle(), CannotHandle("cannot_handle_chitchat")) == [CannotHandle()]


async def test_starting_the_running_flow_is_dropped(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money"])
    assert clean(chat, conversation, StartFlow("transfer_money")) == []
    assert clean(chat, conversation, StartFlow("check_balance")) == [StartFlow("check_balance")]


async def test_starting_a_called_flow_that_runs_on_top_is_dropped(chat: Chat) -> None:
    conversation = await state(chat, ["start flow pay_bill"])
    assert clean(chat, conversation, StartFlow("login")) == []
    assert clean(chat, conversation, StartFlow("pay_bill")) == [StartFlow("pay_bill")]


async def test_starting_the_top_flow_is_kept_while_continue_interrupted_asks(chat: Chat) -> None:
    conversation = await state(
        chat, ["start flow transfer_money", "set slot recipient Jane"], ["start flow check_balance"]
    )
    assert chat.utters[-1] == "utter_ask_continue_interrupted_flow_confirmation"
    assert clean(chat, conversation, StartFlow("transfer_money")) == [StartFlow("transfer_money")]


# --- free-form, clarify -----------------------------------------------------------------------


async def test_offtopic_and_provide_info_move_to_the_front(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money"])
    assert clean(chat, conversation, SetSlot("recipient", "Jane"), ChitChat()) == [ChitChat(), SetSlot("recipient", "Jane")]
    assert clean(chat, conversation, StartFlow("check_balance"), Knowledge()) == [Knowledge(), StartFlow("check_balance")]


async def test_offtopic_with_trigger_chitchat_and_no_responder_cannot_be_handled(tmp_path: Path) -> None:
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
    chat = Chat(make_assistant(project))
    conversation = await state(chat, ["cancel flow"])
    assert clean(chat, conversation, ChitChat()) == [CannotHandle("cannot_handle_chitchat")]
    with_responder = CleanupSettings(has_chitchat_responder=True)
    assert clean(chat, conversation, ChitChat(), settings=with_responder) == [ChitChat()]


async def test_disambiguate_is_dropped_with_other_commands(chat: Chat) -> None:
    conversation = await state(chat)
    clarify = Clarify(("pay_bill", "transfer_money"))
    assert clean(chat, conversation, clarify, StartFlow("check_balance")) == [StartFlow("check_balance")]
    assert clean(chat, conversation, clarify) == [clarify]


# --- human handoff ----------------------------------------------------------------------------


async def test_human_handoff_drops_the_other_requests_and_keeps_slots_and_cancel(chat: Chat) -> None:
    conversation = await state(chat, ["start flow transfer_money"])
    cleaned = clean(
        chat,
        conversation,
        StartFlow("check_balance"),
        Clarify(("pay_bill", "transfer_money")),
        ChitChat(),
        Knowledge(),
        RepeatMessage(),
        SkipQuestion(),
        CannotHandle(),
        HumanHandoff(),
        SetSlot("recipient", "Jane"),
        CancelFlow(),
    )
    assert same_commands(cleaned, [SetSlot("recipient", "Jane"), CancelFlow(), HumanHandoff()]), cleaned


async def test_human_handoff_alone_is_kept_once(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, HumanHandoff()) == [HumanHandoff()]
    assert clean(chat, conversation, HumanHandoff(), HumanHandoff()) == [HumanHandoff()]


async def test_human_handoff_command_off_cannot_be_handled(chat: Chat) -> None:
    conversation = await state(chat)
    off = CleanupSettings(human_handoff_command=False)
    assert clean(chat, conversation, HumanHandoff(), settings=off) == [CannotHandle()]
    assert clean(chat, conversation, HumanHandoff(), StartFlow("check_balance"), settings=off) == [
        StartFlow("check_balance")
    ]


# --- whole-list rules -------------------------------------------------------------------------


async def test_clarify_on_multiple_start_flows(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation = await state(chat)
    assert conversation.stack == []
    starts = (StartFlow("check_balance"), StartFlow("transfer_money"))
    assert clean(chat, conversation, *starts) == list(starts), "off unless the env var is set"
    monkeypatch.setenv("CLARIFY_ON_MULTIPLE_START_FLOWS", "true")
    assert clean(chat, conversation, *starts) == [Clarify(("check_balance", "transfer_money"))]
    assert clean(chat, conversation, StartFlow("check_balance")) == [StartFlow("check_balance")]


async def test_clarify_on_multiple_start_flows_needs_an_empty_stack(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARIFY_ON_MULTIPLE_START_FLOWS", "true")
    conversation = await state(chat, ["start flow transfer_money"])
    starts = (StartFlow("check_balance"), StartFlow("set_nickname"))
    assert clean(chat, conversation, *starts) == list(starts)


async def test_keep_only_the_first_repeat_and_chitchat(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, RepeatMessage(), RepeatMessage()) == [RepeatMessage()]
    assert clean(chat, conversation, ChitChat(), ChitChat()) == [ChitChat()]


async def test_cannot_handle_goes_when_other_commands_remain(chat: Chat) -> None:
    conversation = await state(chat)
    assert clean(chat, conversation, CannotHandle(), StartFlow("check_balance")) == [StartFlow("check_balance")]
    assert clean(chat, conversation, SetSlot("shoe_size", "4"), StartFlow("check_balance")) == [
        StartFlow("check_balance")
    ]


# --- filter_for_state: guards and force_slot_filling -------------------------------------------


async def test_guard_filters_start_flow(chat: Chat) -> None:
    project = chat.assistant.project
    conversation = await state(chat)
    assert conversation.slots["logged_in"] is False
    assert filter_for_state([StartFlow("vip_offer"), StartFlow("check_balance")], project, conversation) == [
        StartFlow("check_balance")
    ]
    logged_in = await state(chat, ["start flow pay_bill"], ["set slot pin 1234"])
    assert logged_in.slots["logged_in"] is True
    assert filter_for_state([StartFlow("vip_offer")], project, logged_in) == [StartFlow("vip_offer")]


async def test_guard_does_not_filter_an_active_flow(chat: Chat) -> None:
    conversation = await state(chat, ["start flow pay_bill"])
    assert filter_for_state([StartFlow("login")], chat.assistant.project, conversation) == [StartFlow("login")]


async def test_guard_filter_through_the_assistant(chat: Chat) -> None:
    assert await chat.say("start flow vip_offer") == ["utter_ask_rephrase"]
    assert chat.last is not None and chat.last.commands == [CannotHandle()]
    assert await chat.stack() == []


FORCED_FLOWS = """
flows:
  verify:
    description: Verify the caller.
    steps:
      - collect: pin
        force_slot_filling: true
      - action: utter_logged_in
"""


async def test_force_slot_filling_keeps_only_the_asked_slot(tmp_path: Path) -> None:
    project = bank_project(tmp_path, flows=FORCED_FLOWS)
    chat = Chat(make_assistant(project))
    conversation = await state(chat, ["cancel flow"], ["start flow verify"])
    assert chat.utters == ["utter_ask_pin"]
    commands = [StartFlow("check_balance"), SetSlot("pin", "1234"), SetSlot("nickname", "Ace"), ChitChat()]
    assert filter_for_state(commands, project, conversation) == [SetSlot("pin", "1234")]
    assert filter_for_state([StartFlow("check_balance"), CancelFlow()], project, conversation) == [CannotHandle()]
    assert await chat.say("start flow check_balance") == ["utter_ask_rephrase", "utter_ask_pin"]
    assert await chat.say("set slot pin 1234", "start flow check_balance") == [
        "utter_logged_in",
        "utter_ask_continue_conversation",
    ]


# --- execution-level skips and order (commands.md §4 end, §5) ----------------------------------


async def test_set_slot_no_active_flow_collects_is_skipped(chat: Chat) -> None:
    assert await chat.say("set slot recipient Jane") == []
    assert [e for e in chat.events(SlotSet) if e.slot == "recipient"] == []
    assert (await chat.slots())["recipient"] is None


async def test_set_slot_for_a_flow_started_this_turn_is_not_skipped(chat: Chat) -> None:
    await chat.say("set slot recipient Jane", "start flow transfer_money")
    assert chat.utters == ["utter_ask_amount"]


async def test_set_slot_for_an_ask_before_filling_slot_is_skipped(chat: Chat) -> None:
    lines = ("start flow transfer_money", "set slot recipient Jane", "set slot amount 5", "set slot confirmed True")
    assert await chat.say(*lines) == ["utter_ask_confirmed"]
    assert [e.value for e in chat.events(SlotSet) if e.slot == "confirmed"] in ([], [None])


async def test_custom_set_slot_is_never_skipped(chat: Chat) -> None:
    chat.last = await chat.assistant.handle(
        chat.sender_id, UserTurn(text="1234", commands=[SetSlot("recipient", "Jane", CUSTOM)])
    )
    events = [e for e in chat.events(SlotSet) if e.slot == "recipient"]
    assert len(events) == 1 and events[0].value == "Jane" and events[0].filled_by == CUSTOM
    assert (await chat.slots())["recipient"] == "Jane"


async def test_set_slot_with_the_current_value_is_skipped(chat: Chat) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    chat.last = await chat.assistant.handle(
        chat.sender_id, UserTurn(text="x", commands=[SetSlot("recipient", "Jane", CUSTOM)])
    )
    assert [e for e in chat.events(SlotSet) if e.slot == "recipient"] == []


async def test_first_predicted_flow_runs_first_on_an_empty_stack(chat: Chat) -> None:
    assert await chat.say("start flow transfer_money", "start flow check_balance") == ["utter_ask_recipient"]
    assert [name for name, _ in await chat.stack()] == ["check_balance", "transfer_money", "pattern_collect_information"]


async def test_first_predicted_flow_runs_first_in_the_other_order(chat: Chat) -> None:
    assert await chat.say("start flow set_nickname", "start flow transfer_money") == ["utter_ask_nickname"]
    assert [name for name, _ in await chat.stack()] == ["transfer_money", "set_nickname", "pattern_collect_information"]
