from __future__ import annotations

from typing import Any

import pytest

from voicecalm.dialogue.commands import (
    CANNOT_HANDLE_INVALID_INTENT,
    COMMAND_TYPES,
    CUSTOM,
    ERROR_USER_INPUT_TOO_LONG,
    PAYLOAD,
    CancelFlow,
    CannotHandle,
    ChitChat,
    Clarify,
    Command,
    CorrectedSlot,
    CorrectSlots,
    Error,
    HandleCodeChange,
    HumanHandoff,
    Knowledge,
    Noop,
    RepeatMessage,
    Restart,
    SessionEnd,
    SessionStart,
    SetSlot,
    SkipQuestion,
    StartFlow,
    UserSilence,
    command_from_json,
)
from voicecalm.dialogue.dsl import parse_commands, post_process, to_dsl_lines

USER_FLOWS = {"transfer_money", "check_balance", "add_card"}


@pytest.mark.parametrize(
    "line",
    [
        "start flow transfer_money",
        "- start flow transfer_money",
        "* start flow transfer_money",
        "1. start flow transfer_money",
        "  12) start flow transfer_money  ",
        "`start flow transfer_money`",
        "```start flow transfer_money```",
        '"start flow transfer_money"',
        "start flow 'transfer_money'",
        "start flow `transfer_money`",
        'start flow "transfer_money"',
        "StartFlow(transfer_money)",
        "StartFlow('transfer_money')",
        '- StartFlow("transfer_money")',
    ],
)
def test_start_flow_forms(line: str) -> None:
    assert parse_commands(line) == [StartFlow("transfer_money")]


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ("set slot recipient Jane Foo", "recipient", "Jane Foo"),
        ("set slot recipient Jane Foo.", "recipient", "Jane Foo"),
        ("- set slot amount 50$", "amount", "50"),
        ("2. set slot amount 50", "amount", "50"),
        ("set slot confirmed True", "confirmed", "True"),
        ("`set slot account savings`", "account", "savings"),
        ("set slot 'recipient' 'Jane'", "recipient", "Jane"),
        ('set slot recipient "Jane Foo"', "recipient", "Jane Foo"),
        ("set slot recipient `Jane`", "recipient", "Jane"),
        ("set slot amount -5", "amount", "-5"),
        ("set slot note hello, world!", "note", "hello, world"),
        ("set slot my-slot x", "my-slot", "x"),
        ("set slot recipient [missing information]", "recipient", None),
        ("set slot recipient [missing]", "recipient", None),
        ("set slot recipient None", "recipient", None),
        ("set slot recipient 'None'.", "recipient", None),
        ("set slot recipient undefined", "recipient", None),
        ('set slot recipient "null"', "recipient", None),
        ("set slot recipient ''", "recipient", None),
        ("set slot recipient none", "recipient", "none"),  # null words are case-sensitive, as in Rasa
        ("SetSlot(recipient, Jane Foo)", "recipient", "Jane Foo"),
        ("SetSlot(recipient, 'Jane Foo')", "recipient", "Jane Foo"),
        ('SetSlot("amount", "50")', "amount", "50"),
        ("SetSlot(recipient,[missing information])", "recipient", None),
        ("SetSlot(recipient, None)", "recipient", None),
    ],
)
def test_set_slot_forms(line: str, name: str, value: Any) -> None:
    assert parse_commands(line) == [SetSlot(name, value)]


def test_set_slot_value_stays_a_string_from_the_llm() -> None:
    [command] = parse_commands("set slot amount 50")
    assert isinstance(command, SetSlot)
    assert command.value == "50" and command.extractor == "LLM"


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("cancel flow", CancelFlow()),
        ("- cancel flow", CancelFlow()),
        ("offtopic reply", ChitChat()),
        ("provide info", Knowledge()),
        ("search and reply", Knowledge()),
        ("repeat message", RepeatMessage()),
        ("skip question", SkipQuestion()),
        ("cannot handle", CannotHandle()),
        ("human handoff", HumanHandoff()),
        ("hand over", HumanHandoff()),
        ("3. `hand over`", HumanHandoff()),
        ('"human handoff"', HumanHandoff()),
        ("CancelFlow()", CancelFlow()),
        ("ChitChat()", ChitChat()),
        ("SearchAndReply()", Knowledge()),
        ("SkipQuestion()", SkipQuestion()),
        ("RepeatLastBotMessages()", RepeatMessage()),
        ("HumanHandoff()", HumanHandoff()),
        ("- CannotHandle()", CannotHandle()),
    ],
)
def test_argument_free_forms(line: str, command: Command) -> None:
    assert parse_commands(line) == [command]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello there",
        "I think we should start a flow",
        "cancel flow now",  # argument-free lines must end there
        "please cancel flow",
        "start flow",
        "set slot amount",
        "StartFlow()",
        "Start flow transfer_money",  # case-sensitive, as in Rasa
    ],
)
def test_unknown_lines_are_ignored(line: str) -> None:
    assert parse_commands(line) == []


@pytest.mark.parametrize(
    ("line", "options"),
    [
        ("disambiguate flows transfer_money check_balance", ("check_balance", "transfer_money")),
        ("disambiguate flows transfer_money, check_balance", ("check_balance", "transfer_money")),
        ("- disambiguate flows 'transfer_money', \"check_balance\".", ("check_balance", "transfer_money")),
        ("disambiguate flows", ()),
        ("Clarify(transfer_money, check_balance)", ("check_balance", "transfer_money")),
        ("Clarify('transfer_money', 'add_card')", ("add_card", "transfer_money")),
    ],
)
def test_disambiguate_parses_sorted_options(line: str, options: tuple[str, ...]) -> None:
    assert parse_commands(line) == [Clarify(options)]


def test_multi_line_completion_keeps_order() -> None:
    completion = """
    Here are my actions:
    1. start flow transfer_money
    2. set slot recipient Jane Foo.
    3. set slot amount 50$

    that's all
    """
    assert parse_commands(completion) == [
        StartFlow("transfer_money"),
        SetSlot("recipient", "Jane Foo"),
        SetSlot("amount", "50"),
    ]


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        ([StartFlow("transfer_money")], [StartFlow("transfer_money")]),
        ([StartFlow("transfer money")], []),
        ([StartFlow("pattern_chitchat")], []),
        ([StartFlow("unknown")], []),
        ([SetSlot("flow_name", "check_balance")], [StartFlow("check_balance")]),
        ([SetSlot("flow_name", "nope")], []),
        ([SetSlot("flow_name", None)], []),
        ([SetSlot("amount", "50")], [SetSlot("amount", "50")]),
        ([Clarify(("check_balance",))], [StartFlow("check_balance")]),
        ([Clarify(("check_balance", "unknown"))], [StartFlow("check_balance")]),
        ([Clarify(("check_balance", "check_balance"))], [StartFlow("check_balance")]),
        ([Clarify(("transfer_money", "check_balance"))], [Clarify(("check_balance", "transfer_money"))]),
        ([Clarify(("transfer_money", "'add_card'", "x"))], [Clarify(("add_card", "transfer_money"))]),
        ([Clarify(("x", "y"))], []),
        ([Clarify(())], [Clarify(())]),
        ([CancelFlow(), HumanHandoff()], [CancelFlow(), HumanHandoff()]),
    ],
)
def test_post_process(commands: list[Command], expected: list[Command]) -> None:
    assert post_process(commands, USER_FLOWS) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("disambiguate flows check_balance", [StartFlow("check_balance")]),
        ("disambiguate flows check_balance nothing_here", [StartFlow("check_balance")]),
        ("disambiguate flows transfer_money check_balance", [Clarify(("check_balance", "transfer_money"))]),
        ("disambiguate flows", [Clarify(())]),
        ("disambiguate flows foo bar", []),
        ("set slot flow_name transfer_money", [StartFlow("transfer_money")]),
        ("start flow Transfer Money", []),
    ],
)
def test_parse_then_post_process(completion: str, expected: list[Command]) -> None:
    assert post_process(parse_commands(completion), USER_FLOWS) == expected


def test_to_dsl_lines_skips_commands_without_dsl() -> None:
    commands = [
        StartFlow("transfer_money"),
        CorrectSlots((CorrectedSlot("amount", 5),)),
        SetSlot("amount", "50"),
        Restart(),
        Clarify(("a", "b")),
    ]
    assert to_dsl_lines(commands) == ["start flow transfer_money", "set slot amount 50", "disambiguate flows a b"]


EVERY_COMMAND: list[Command] = [
    StartFlow("transfer_money"),
    SetSlot("amount", "50"),
    SetSlot("amount", 50.0, PAYLOAD),
    SetSlot("tags", ["a", "b"], CUSTOM),
    SetSlot("recipient", None),
    CorrectSlots((CorrectedSlot("amount", 5.0), CorrectedSlot("recipient", "Jo", PAYLOAD))),
    CancelFlow(),
    Clarify(("check_balance", "transfer_money")),
    Clarify(()),
    ChitChat(),
    Knowledge(),
    RepeatMessage(),
    SkipQuestion(),
    HumanHandoff(),
    CannotHandle(),
    CannotHandle(CANNOT_HANDLE_INVALID_INTENT),
    Error(),
    Error(ERROR_USER_INPUT_TOO_LONG, {"max_characters": 420}),
    HandleCodeChange(),
    Restart(),
    SessionStart(),
    SessionEnd(),
    UserSilence(),
    Noop(),
]


def test_every_command_type_is_covered() -> None:
    assert {type(command) for command in EVERY_COMMAND} == set(COMMAND_TYPES.values())


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=repr)
def test_json_round_trip(command: Command) -> None:
    assert command_from_json(command.to_json()) == command


DSL_COMMANDS = [c for c in EVERY_COMMAND if c.to_dsl() is not None and not (isinstance(c, SetSlot) and c.extractor != "LLM")]


def test_dsl_round_trip_covers_every_dsl_type() -> None:
    dsl_types = {type(c) for c in EVERY_COMMAND if c.to_dsl() is not None}
    assert {type(c) for c in DSL_COMMANDS} == dsl_types == {
        StartFlow, SetSlot, CancelFlow, Clarify, ChitChat, Knowledge, RepeatMessage, SkipQuestion, HumanHandoff, CannotHandle,
    }


@pytest.mark.parametrize("command", [c for c in DSL_COMMANDS if c != CannotHandle(CANNOT_HANDLE_INVALID_INTENT)], ids=repr)
def test_dsl_round_trip(command: Command) -> None:
    line = command.to_dsl()
    assert line is not None
    assert post_process(parse_commands(line), USER_FLOWS) == [command]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"command": "hand over"}, HumanHandoff()),
        ({"command": "set slot", "name": "a", "value": 1}, SetSlot("a", 1)),
        ({"command": "cannot handle"}, CannotHandle()),
        ({"command": "clarify"}, Clarify(())),
        ({"command": "error"}, Error()),
        ({"command": "correct slot", "corrected_slots": [{"name": "a", "value": 1}]}, CorrectSlots((CorrectedSlot("a", 1),))),
    ],
)
def test_command_from_json_defaults_and_aliases(data: dict[str, Any], expected: Command) -> None:
    assert command_from_json(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"command": "dance"},
        {"command": 3},
        {"command": "start flow"},
        {"command": "start flow", "flow": 5},
        {"command": "set slot", "value": 1},
        {"command": "clarify", "options": "a b"},
        {"command": "clarify", "options": [1]},
        {"command": "correct slot"},
        {"command": "correct slot", "corrected_slots": ["amount"]},
        {"command": "error", "info": [1]},
        ["start flow"],
    ],
)
def test_command_from_json_rejects_malformed(data: Any) -> None:
    with pytest.raises(ValueError):
        command_from_json(data)
