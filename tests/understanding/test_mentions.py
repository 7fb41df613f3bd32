"""Values the message names outright are set where the model left them out: for the flow it
starts (categorical values, the one number, the one name), in the flow under way, and from the
request a clarification question asked about."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import CancelFlow, Command, Knowledge, SetSlot, StartFlow
from voicecalm.project import Project, load_project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from voicecalm.understanding.mentions import capitalised_runs, named_values, numbers_in

REPOSITORY = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPOSITORY)


def fresh() -> Conversation:
    return Conversation("caller", {})


def in_flow(project: Project, flow: str, **slots: object) -> Conversation:
    conversation = Conversation("caller", {})
    conversation.set_stack([stacks.user_flow_frame(flow, "regular")])
    conversation.apply_all(SlotSet(slot=name, value=value) for name, value in slots.items())
    return conversation


@pytest.mark.parametrize(
    ("commands", "message", "added"),
    [
        ([StartFlow("check_balance")], "uh I'd like to check my savings balance please", [SetSlot("account_type", "savings")]),
        (
            [StartFlow("replace_card")],
            "can you send me a replacement debit card by express",
            [SetSlot("card_type", "debit"), SetSlot("replacement_delivery", "express")],
        ),
        ([CancelFlow(), StartFlow("block_card")], "no wait, block my Credit card instead", [SetSlot("card_type", "credit")]),
    ],
)
def test_named_values_of_the_started_flow_are_set(
    project: Project, commands: list[Command], message: str, added: list[Command]
) -> None:
    assert named_values(commands, project, message, fresh()) == commands + added


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ([StartFlow("check_balance")], "how much money do I have"),  # nothing named
        ([StartFlow("check_balance")], "is it in checking or savings?"),  # two values: ambiguous
        ([StartFlow("transfer_money"), SetSlot("transfer_from_account", "checking")], "pay them from checking"),  # already set
        ([StartFlow("check_balance")], "my account is overchecking-free"),  # part of a word
        ([SetSlot("account_type", "savings")], "savings, not checking"),  # no flow started: the model's answer stands
    ],
)
def test_nothing_is_added_unless_named_once(project: Project, commands: list[Command], message: str) -> None:
    assert named_values(commands, project, message, fresh()) == commands


@pytest.mark.parametrize(
    ("message", "added"),
    [
        ("I want to pay Anna 10 dollars", [SetSlot("transfer_amount", 10.0), SetSlot("transfer_recipient", "Anna")]),
        ("I wanna send Linda Chen a hundred and twenty", [SetSlot("transfer_amount", 120.0), SetSlot("transfer_recipient", "Linda Chen")]),
        ("send money to Riverside Apartments", [SetSlot("transfer_recipient", "Riverside Apartments")]),
        ("Anna says send 20 to Bob, or was it 30", [SetSlot("transfer_recipient", "Bob")]),  # two numbers; a first word may just be capitalised
        ("pay Anna and Bob", []),  # two names
        ("I want to send money", []),
    ],
)
def test_the_one_number_and_the_one_name_of_a_started_flow(project: Project, message: str, added: list[Command]) -> None:
    commands: list[Command] = [StartFlow("transfer_money")]
    assert named_values(commands, project, message, fresh()) == commands + added


def test_names_and_numbers_as_written() -> None:
    assert capitalised_runs("I need to pay David Lee, then Springfield Utilities.") == ["David Lee", "Springfield Utilities"]
    assert capitalised_runs("I'm told I should ask") == []
    assert numbers_in("twenty five dollars and 3.50") == [25.0, 3.5]


def test_an_answer_in_the_flow_under_way_takes_the_other_values_it_names(project: Project) -> None:
    conversation = in_flow(project, "block_card")
    answer: list[Command] = [SetSlot("card_type", "credit")]
    assert named_values(answer, project, "the credit card, it was stolen", conversation) == [
        *answer, SetSlot("card_block_reason", "stolen")
    ]
    # A correction names the new value; the value already held is no news.
    transfer = in_flow(project, "transfer_money", transfer_from_account="checking", transfer_amount=20.0)
    correction: list[Command] = [SetSlot("transfer_amount", 25.0)]
    assert named_values(correction, project, "no, 25, and from savings", transfer) == [
        *correction, SetSlot("transfer_from_account", "savings")
    ]
    assert named_values(correction, project, "25 from checking", transfer) == correction
    # Not an answer: nothing is added.
    assert named_values([Knowledge()], project, "is my savings money insured?", transfer) == [Knowledge()]


def test_the_answer_to_a_clarification_carries_the_request_s_values(project: Project) -> None:
    clarifying = Conversation.from_events("caller", {}, [
        UserUttered(text="I want to look at my savings account"),
        ActionExecuted(action_name="action_clarify_flows"),
        BotUttered(text="Which one do you mean: check your balance or review recent transactions?"),
    ])
    commands: list[Command] = [StartFlow("check_balance")]
    assert named_values(commands, project, "just the balance", clarifying) == [*commands, SetSlot("account_type", "savings")]
    not_clarifying = Conversation.from_events("caller", {}, [UserUttered(text="my savings account"), BotUttered(text="Sorry?")])
    assert named_values(commands, project, "just the balance", not_clarifying) == commands
