"""A categorical value the message names outright is set for the flow the model starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecalm.dialogue.commands import CancelFlow, Command, SetSlot, StartFlow
from voicecalm.project import Project, load_project
from voicecalm.understanding.mentions import named_values

REPOSITORY = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPOSITORY)


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
    assert named_values(commands, project, message) == commands + added


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ([StartFlow("check_balance")], "how much money do I have"),  # nothing named
        ([StartFlow("check_balance")], "is it in checking or savings?"),  # two values: ambiguous
        ([StartFlow("transfer_money"), SetSlot("transfer_from_account", "checking")], "pay Anna from checking"),  # already set
        ([StartFlow("check_balance")], "my account is overchecking-free"),  # part of a word
        ([SetSlot("account_type", "savings")], "savings, not checking"),  # no flow started: the model's answer stands
    ],
)
def test_nothing_is_added_unless_named_once(project: Project, commands: list[Command], message: str) -> None:
    assert named_values(commands, project, message) == commands
