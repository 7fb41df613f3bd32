"""Keypad input into collect steps (voice.md §6), driven through real assistant turns."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tests.dialogue.conftest import BANK, Chat, make_assistant
from voicecalm.dialogue.commands import CUSTOM
from voicecalm.project import Project, load_project
from voicecalm.tracker.events import SlotSet, UserUttered
from voicecalm.voice.dtmf import DTMF_KEYS, DtmfCollector, active_collect, allows_audio_input

KEYPAD_FLOWS = """
flows:
  enter_pin:
    description: Log in with a PIN typed on the keypad.
    steps:
      - collect: pin
        description: the four-digit PIN
        dtmf: {length: 4}
      - action: utter_logged_in
  key_in_amount:
    description: Send an amount typed on the keypad.
    steps:
      - collect: amount
        dtmf: {finish_on_key: "*"}
      - collect: recipient
      - action: utter_transfer_done
  key_in_nickname:
    description: A nickname made of keys.
    steps:
      - collect: nickname
        dtmf: {}
      - action: utter_nickname_saved
  keypad_only:
    description: A one-key nickname, keypad only.
    steps:
      - collect: nickname
        dtmf: {length: 1, allow_audio_input: false}
      - action: utter_thanks
  two_questions:
    description: Two keypad questions in a row.
    steps:
      - collect: nickname
        dtmf: {finish_on_key: "#"}
      - collect: pin
        dtmf: {finish_on_key: "#"}
      - action: utter_thanks
"""


@pytest.fixture(scope="module")
def keypad_bank(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("keypad") / "bank"
    shutil.copytree(BANK, root)
    (root / "data" / "keypad.yml").write_text(textwrap.dedent(KEYPAD_FLOWS).lstrip("\n"))
    return load_project(root)


@pytest.fixture
async def chat(keypad_bank: Project) -> Chat:
    chat = Chat(make_assistant(keypad_bank), channel="twilio_media_streams")
    await chat.say("cancel flow")  # the first turn also starts the session
    return chat


async def press(collector: DtmfCollector, chat: Chat, keys: str) -> list[str | None]:
    """Press keys one by one; each completed input is handled as a user turn. Returns the text
    of each key's completed turn (None while the input goes on)."""
    texts: list[str | None] = []
    for key in keys:
        turn = collector.press(key, await chat.conversation())
        texts.append(turn.text if turn is not None else None)
        if turn is not None:
            chat.last = await chat.assistant.handle(chat.sender_id, turn)
    return texts


def last_user_event(chat: Chat) -> UserUttered:
    return chat.events(UserUttered)[-1]


def first_value_set(chat: Chat, slot: str) -> object:
    """The value the last turn set `slot` to (a completed flow resets its slots afterwards)."""
    return next(event.value for event in chat.events(SlotSet) if event.slot == slot)


async def test_the_input_completes_at_length_and_fills_a_text_slot_with_leading_zeros(chat: Chat, keypad_bank: Project) -> None:
    collector = DtmfCollector(keypad_bank, metadata={"call_id": "CA1"}, input_channel="twilio_media_streams")
    assert await chat.say("start flow enter_pin") == ["utter_ask_pin"]
    assert await press(collector, chat, "0042") == [None, None, None, "0042"]
    assert chat.utters[0] == "utter_logged_in"
    assert first_value_set(chat, "pin") == "0042"
    event = last_user_event(chat)
    assert event.text == "0042"
    assert event.metadata == {"call_id": "CA1", "source": "dtmf"}
    assert event.input_channel == "twilio_media_streams"
    assert event.commands == [{"command": "set slot", "name": "pin", "value": "0042", "extractor": CUSTOM}]
    assert collector.buffer == ""


async def test_the_finish_key_completes_a_float_slot_and_is_not_part_of_the_input(chat: Chat, keypad_bank: Project) -> None:
    collector = DtmfCollector(keypad_bank)
    assert await chat.say("start flow key_in_amount") == ["utter_ask_amount"]
    assert await press(collector, chat, "0250*") == [None, None, None, None, "0250"]
    assert (await chat.slots())["amount"] == 250.0
    assert last_user_event(chat).commands == [{"command": "set slot", "name": "amount", "value": 250.0, "extractor": CUSTOM}]
    assert chat.utters == ["utter_ask_recipient"]


async def test_a_dtmf_with_neither_length_nor_finish_key_finishes_on_hash_and_warns_at_load(
    chat: Chat, keypad_bank: Project
) -> None:
    assert any(
        "`dtmf` has neither `length` nor `finish_on_key`: '#' finishes the input" in str(w) and "keypad.yml" in str(w)
        for w in keypad_bank.warnings
    )
    collector = DtmfCollector(keypad_bank)
    await chat.say("start flow key_in_nickname")
    assert await press(collector, chat, "7*A9#") == [None, None, None, None, "7*A9"]
    assert first_value_set(chat, "nickname") == "7*A9"


async def test_the_finish_key_alone_completes_nothing(chat: Chat, keypad_bank: Project) -> None:
    collector = DtmfCollector(keypad_bank)
    await chat.say("start flow key_in_nickname")
    assert await press(collector, chat, "##5#") == [None, None, None, "5"]


async def test_keys_are_ignored_and_the_buffer_cleared_when_no_dtmf_collect_is_asked(chat: Chat, keypad_bank: Project) -> None:
    collector = DtmfCollector(keypad_bank)
    assert await press(collector, chat, "12#") == [None, None, None]  # nothing asked at all
    await chat.say("start flow key_in_amount")
    assert await press(collector, chat, "12") == [None, None]
    assert collector.buffer == "12"
    assert await chat.say("set slot amount 30") == ["utter_ask_recipient"]  # spoken instead
    assert await press(collector, chat, "3") == [None]  # recipient has no dtmf
    assert collector.buffer == ""


async def test_a_different_collect_discards_the_partial_input(chat: Chat, keypad_bank: Project) -> None:
    collector = DtmfCollector(keypad_bank)
    assert await chat.say("start flow two_questions") == ["utter_ask_nickname"]
    assert await press(collector, chat, "12") == [None, None]
    assert await chat.say("set slot nickname Kim") == ["utter_ask_pin"]  # answered by voice
    assert await press(collector, chat, "3#") == [None, "3"]
    assert first_value_set(chat, "pin") == "3"


async def test_a_silence_timeout_clears_the_partial_input(chat: Chat, keypad_bank: Project) -> None:
    collector = DtmfCollector(keypad_bank)
    await chat.say("start flow enter_pin")
    await press(collector, chat, "12")
    collector.clear()
    assert await press(collector, chat, "5678") == [None, None, None, "5678"]


async def test_audio_input_is_refused_only_while_a_keypad_only_collect_is_asked(chat: Chat, keypad_bank: Project) -> None:
    assert allows_audio_input(await chat.conversation(), keypad_bank)
    await chat.say("start flow keypad_only")
    assert not allows_audio_input(await chat.conversation(), keypad_bank)
    assert await press(DtmfCollector(keypad_bank), chat, "4") == ["4"]
    assert chat.utters[0] == "utter_thanks"
    assert allows_audio_input(await chat.conversation(), keypad_bank)
    await chat.say("start flow enter_pin")
    assert allows_audio_input(await chat.conversation(), keypad_bank)


async def test_the_active_collect_is_the_step_that_asked(chat: Chat, keypad_bank: Project) -> None:
    assert active_collect((await chat.conversation()).stack, keypad_bank) is None
    await chat.say("start flow two_questions", "set slot nickname Kim")
    collect = active_collect((await chat.conversation()).stack, keypad_bank)
    assert collect is not None
    assert (collect.step.collect, collect.step.dtmf is not None) == ("pin", True)
    assert collect.slot is keypad_bank.domain.slots["pin"]
    assert collect.step is keypad_bank.flows["two_questions"].step_by_id[collect.step.id]


def test_the_sixteen_keys_are_accepted_and_anything_else_is_rejected(keypad_bank: Project) -> None:
    assert DTMF_KEYS == set("0123456789*#ABCD")
    collector = DtmfCollector(keypad_bank)
    for key in ("E", "a", "", "12", " "):
        with pytest.raises(ValueError, match="is not a DTMF key"):
            collector.press(key, None)  # type: ignore[arg-type]  # rejected before the state is read

