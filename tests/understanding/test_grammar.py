"""The per-turn GBNF grammar is valid for llama.cpp and names exactly what may be written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from llama_cpp import LlamaGrammar

from voicecalm.project import Project, load_project
from voicecalm.dialogue.commands import SetSlot
from voicecalm.understanding.grammar import command_grammar, ungrounded_numbers

REPOSITORY = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPOSITORY)


def startable(project: Project) -> list:
    return [flow for flow in project.user_flows if flow.guard is not False]


def rule(grammar: str, name: str) -> str:
    return next(line for line in grammar.splitlines() if line.startswith(f"{name} ::= "))


def sequence(grammar: str, name: str) -> list[str]:
    """The lines of sequence rule `name` (`name-0`, `name-1`, ...), without what may follow."""
    return [line.split(" ::= ")[1].split(' ("\\n"')[0] for line in grammar.splitlines() if re.match(rf"{name}-\d+ ::= ", line)]


def during_transfer(project: Project, **turn: Any) -> str:
    """The grammar while transfer_money runs (`asked_slot`, `message`), checked as valid GBNF."""
    grammar = command_grammar(startable(project), [project.flows["transfer_money"]], project, offtopic=True, handoff=True, **turn)
    LlamaGrammar.from_string(grammar, verbose=False)
    return grammar


def test_grammar_for_the_example_assistant_is_valid_gbnf(project: Project) -> None:
    grammar = command_grammar(startable(project), [], project, offtopic=True, handoff=True)
    LlamaGrammar.from_string(grammar, verbose=False)  # raises on a grammar llama.cpp rejects
    assert '"transfer_money"' in rule(grammar, "flow") and "authenticate_user" not in rule(grammar, "flow")
    assert '("checking" | "savings")' in grammar, "categorical values are spelled out"
    assert '"human handoff"' in grammar and '"offtopic reply"' in grammar


def test_grammar_without_offtopic_and_handoff(project: Project) -> None:
    flows = [project.flows["find_branch"]]
    grammar = command_grammar(flows, [], project, offtopic=False, handoff=False)
    LlamaGrammar.from_string(grammar, verbose=False)
    assert "offtopic reply" not in grammar and "human handoff" not in grammar
    assert sequence(grammar, "slots-find-branch") == ['"set slot branch_city " (text)']
    assert "disambiguate" not in grammar, "one flow cannot be disambiguated"


def test_slots_follow_the_flow_they_belong_to(project: Project) -> None:
    grammar = command_grammar(startable(project), [], project, offtopic=True, handoff=True, message="send 50 to Anna")
    LlamaGrammar.from_string(grammar, verbose=False)
    assert sequence(grammar, "slots-transfer-money") == [
        '"set slot transfer_from_account " (("checking" | "savings"))',
        '"set slot transfer_recipient " (span)',
        '"set slot transfer_amount " (("50"))',
    ], "in the flow's order, each at most once"
    assert rule(grammar, "slots-transfer-money-1").endswith('("\\n" (slots-transfer-money-2))?')
    assert '("transfer_money" ("\\n" slots-transfer-money)?)' in rule(grammar, "start")
    assert rule(grammar, "root").startswith("root ::= (single | (start))"), "one flow at a time, nothing after it"
    assert not any(line.startswith("set ::= ") for line in grammar.splitlines()), "no active flow: no bare set slot"


def test_the_flow_in_progress_is_not_started_again(project: Project) -> None:
    transfer = project.flows["transfer_money"]
    grammar = command_grammar(
        startable(project), [transfer, project.flows["authenticate_user"]], project, offtopic=True, handoff=True,
        asked_slot="auth_passcode", message="2468", current_flow="transfer_money",
    )
    LlamaGrammar.from_string(grammar, verbose=False)
    assert '"transfer_money"' not in rule(grammar, "start") and '"authenticate_user"' not in rule(grammar, "start")
    lines = sequence(grammar, "set")
    assert lines[0] == '"set slot auth_passcode " (span)', "the asked slot comes first"
    assert '"set slot auth_customer_number " (span)' in lines and '"set slot transfer_recipient " (span)' in lines


def test_skip_and_cancel_need_a_question_and_a_flow(project: Project) -> None:
    idle = command_grammar(startable(project), [], project, offtopic=True, handoff=True, message="skip")
    assert "skip question" not in idle and "cancel flow" not in idle
    busy = during_transfer(project, asked_slot="transfer_amount", message="skip")
    assert '"skip question"' in busy and '"cancel flow"' in busy
    unlike = during_transfer(project, asked_slot="transfer_amount", message="perfect", skip=False)
    assert "skip question" not in unlike and '"cancel flow"' in unlike


def test_the_asked_slot_may_be_set_even_outside_the_flow_list(project: Project) -> None:
    """ask_before_filling confirmations and patterns' questions are not in the flow list."""
    grammar = during_transfer(project, asked_slot="continue_interrupted_flow_confirmation", message="ok yes, let's go on")
    lines = sequence(grammar, "set")
    assert lines[0] == '"set slot continue_interrupted_flow_confirmation " (("True" | "False"))'
    assert '"set slot transfer_recipient " (span)' in lines, "slots of the active flow may be corrected"


def test_values_come_from_the_message(project: Project) -> None:
    grammar = during_transfer(project, asked_slot="transfer_amount", message='it\'s 2,500 for "David Lee."')
    assert sequence(grammar, "set")[0] == '"set slot transfer_amount " (("2500"))', "only the number the user said"
    spans = {line for line in grammar.splitlines() if line.startswith("span")}
    assert 'span-4 ::= "Lee"' in spans, "trailing punctuation is not part of a value"
    assert 'span-3 ::= "David" | "David " span-4' in spans, "leading quotes are dropped"
    assert 'span-1 ::= "2,500" | "2,500 " span-2' in spans, "inner commas are kept"
    assert not any("digits" in line for line in sequence(grammar, "set")), "digits only when numbers are spelled out"


def test_numbers_in_words_allow_any_number_and_digits(project: Project) -> None:
    grammar = during_transfer(project, asked_slot="auth_passcode", message="two four six eight")
    lines = sequence(grammar, "set")
    assert '"set slot transfer_amount " (number)' in lines
    assert lines[0] == '"set slot auth_passcode " (span | digits)'


def test_a_number_the_message_does_not_hold_is_dropped_afterwards(project: Project) -> None:
    """The line stays writable (forbidding it forced the model into some other line), but the
    invented number does not survive."""
    grammar = during_transfer(project, asked_slot="transfer_amount", message="hmm ok")
    assert sequence(grammar, "set")[0] == '"set slot transfer_amount " (number)'
    invented = [SetSlot("transfer_amount", "250"), SetSlot("transfer_recipient", "ok")]
    assert ungrounded_numbers(invented, project, "hmm ok") == [SetSlot("transfer_recipient", "ok")]
    assert ungrounded_numbers([SetSlot("transfer_amount", "40")], project, "forty dollars") == [SetSlot("transfer_amount", "40")]
    assert ungrounded_numbers([SetSlot("transfer_amount", "12.50")], project, "make it 12.5") == [SetSlot("transfer_amount", "12.50")]
    assert ungrounded_numbers([SetSlot("transfer_amount", "15")], project, "make it 12.5") == []


def test_without_a_message_values_are_only_bounded(project: Project) -> None:
    grammar = during_transfer(project)
    lines = sequence(grammar, "set")
    assert '"set slot transfer_recipient " (text)' in lines and '"set slot transfer_amount " (number)' in lines
