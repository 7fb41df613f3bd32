"""Command equality and step scoring of the DU evaluation (testing.md §3.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecalm.dialogue.commands import (
    CannotHandle,
    ChitChat,
    Clarify,
    Command,
    SetSlot,
    StartFlow,
)
from voicecalm.project import Project
from voicecalm.testing.e2e.du import DuStep, commands_equal, score_step


@pytest.mark.parametrize(
    ("expected", "predicted", "equal"),
    [
        (StartFlow("transfer_money"), StartFlow("transfer_money"), True),
        (StartFlow("transfer_money"), StartFlow("check_balance"), False),
        (SetSlot("amount", "50"), SetSlot("amount", "50.0"), True),
        (SetSlot("amount", "50"), SetSlot("amount", "51"), False),
        (SetSlot("confirmed", "True"), SetSlot("confirmed", "yes"), True),
        (SetSlot("bill", "water"), SetSlot("bill", "Water"), True),
        (SetSlot("recipient", "Jane Doe"), SetSlot("recipient", " Jane   Doe "), True),
        (SetSlot("recipient", "Jane Doe"), SetSlot("recipient", "jane doe"), False),
        (SetSlot("recipient", "Jane"), SetSlot("nickname", "Jane"), False),
        (Clarify(("check_balance", "pay_bill")), Clarify(("pay_bill", "check_balance")), True),
        (Clarify(("check_balance", "pay_bill")), Clarify(("pay_bill",)), False),
        (Clarify(()), Clarify(("pay_bill", "check_balance")), True),
        (Clarify(("pay_bill", "check_balance")), Clarify(()), False),
        (CannotHandle(), CannotHandle("cannot_handle_chitchat"), True),
        (ChitChat(), CannotHandle(), False),
    ],
)
def test_command_equality(bank: Project, expected: Command, predicted: Command, equal: bool) -> None:
    assert commands_equal(expected, predicted, bank.domain.slots) is equal


def _step(expected: list[Command], predicted: list[Command]) -> DuStep:
    return DuStep("t", Path("e2e.yml"), 1, "text", tuple(expected), tuple(predicted))


def test_a_step_matches_as_a_multiset_in_any_order(bank: Project) -> None:
    scored = score_step(
        _step([StartFlow("transfer_money"), SetSlot("amount", "5")], [SetSlot("amount", "5"), StartFlow("transfer_money")]),
        bank.domain.slots,
    )
    assert scored.match
    twice = score_step(_step([StartFlow("transfer_money")], [StartFlow("transfer_money")] * 2), bank.domain.slots)
    assert not twice.match
    assert (twice.per_command["start flow"].tp, twice.per_command["start flow"].fp) == (1, 1)


@pytest.mark.parametrize(
    ("predicted", "match"), [([], True), ([CannotHandle()], True), ([ChitChat()], False)]
)
def test_an_empty_annotation_expects_no_command(bank: Project, predicted: list[Command], match: bool) -> None:
    assert score_step(_step([], predicted), bank.domain.slots).match is match
