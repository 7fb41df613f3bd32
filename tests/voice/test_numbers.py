"""Spoken numbers to digits for the slot being asked (voice.md §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dialogue.conftest import BANK, Chat, make_assistant
from voicecalm.project import Project, Slot, load_project
from voicecalm.project.flows import CollectStep
from voicecalm.project.schema import SlotModel
from voicecalm.voice.numbers import expects_digit_string, normalise_for_slot, normalise_transcript

EXAMPLE = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def bank() -> Project:
    return load_project(BANK)


@pytest.fixture(scope="module")
def example() -> Project:
    return load_project(EXAMPLE)


def collect_step(project: Project, flow_id: str, slot: str) -> CollectStep:
    return next(step for step in project.flows[flow_id].collect_steps() if step.collect == slot)


@pytest.mark.parametrize(
    ("heard", "normalised"),
    [
        ("two hundred and fifty dollars", "250 dollars"),
        ("twenty five point five", "25.5"),
        ("one two three four", "1234"),
        ("One, two, three, four.", "1234."),
        ("three thousand two hundred", "3200"),
        ("send nine hundred ninety nine thousand please", "send 999000 please"),
        ("it costs twelve dollars and fifty cents", "it costs 12 dollars and 50 cents"),
        # 25.50 or 2550? Not guessed: both numbers reach the command generator.
        ("twenty five fifty", "25 50"),
        ("$250", "$250"),
        ("2.5 6", "2.5 6"),
        ("the blue one", "the blue one"),
        ("no one knows, I need a second", "no one knows, I need a second"),
        ("", ""),
    ],
)
def test_a_float_answer_gets_its_numbers_as_digits(bank: Project, heard: str, normalised: str) -> None:
    step = collect_step(bank, "transfer_money", "amount")
    assert normalise_for_slot(heard, bank.domain.slots["amount"], step) == normalised


@pytest.mark.parametrize(
    ("heard", "normalised"),
    [
        ("one two three four five six seven eight", "12345678"),
        ("twelve thirty four fifty six seventy eight", "12345678"),
        ("zero zero four two", "0042"),
        ("zero four one two", "0412"),
        ("five oh seven", "507"),
        ("It is 1, 2, 3, 4.", "It is 1234."),
        ("my number is one two three four five six seven eight, thanks", "my number is 12345678, thanks"),
        ("I don't have it", "I don't have it"),
    ],
)
def test_a_digit_string_answer_is_joined_into_one_number(example: Project, heard: str, normalised: str) -> None:
    step = collect_step(example, "authenticate_user", "auth_customer_number")
    assert normalise_for_slot(heard, example.domain.slots["auth_customer_number"], step) == normalised


def test_digit_strings_are_recognised_by_dtmf_description_or_slot_name(bank: Project, example: Project) -> None:
    slots = example.domain.slots
    assert expects_digit_string(slots["new_zip_code"], collect_step(example, "update_address", "new_zip_code"))  # dtmf
    assert expects_digit_string(slots["auth_passcode"], collect_step(example, "authenticate_user", "auth_passcode"))
    assert expects_digit_string(bank.domain.slots["pin"], collect_step(bank, "login", "pin"))  # the slot name
    assert expects_digit_string(Slot("account_number", SlotModel(type="text"), None), None)
    assert not expects_digit_string(
        slots["new_street_address"], collect_step(example, "update_address", "new_street_address")
    )
    assert not expects_digit_string(bank.domain.slots["recipient"], collect_step(bank, "transfer_money", "recipient"))
    assert not expects_digit_string(bank.domain.slots["amount"], None)  # a float is not a digit string


@pytest.mark.parametrize(
    ("slot", "heard"),
    [
        ("recipient", "one two three"),
        ("confirmed", "one"),
        ("bill", "the one for water"),
        ("nickname", "Agent double oh seven"),
    ],
)
def test_other_answers_are_left_as_heard(bank: Project, slot: str, heard: str) -> None:
    assert normalise_for_slot(heard, bank.domain.slots[slot]) == heard


async def test_the_transcript_is_normalised_for_the_collect_being_asked(bank: Project) -> None:
    chat = Chat(make_assistant(bank))
    await chat.say("cancel flow")
    heard = "two hundred and fifty"
    assert normalise_transcript(heard, await chat.conversation(), bank) == heard  # nothing asked
    assert await chat.say("start flow transfer_money") == ["utter_ask_recipient"]
    assert normalise_transcript(heard, await chat.conversation(), bank) == heard
    assert await chat.say("set slot recipient Jane") == ["utter_ask_amount"]
    assert normalise_transcript(heard, await chat.conversation(), bank) == "250"
