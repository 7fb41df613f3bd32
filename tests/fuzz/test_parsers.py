"""Fuzzing the parsers that read untrusted text: LLM completions (the DSL), typed `/payloads`
and JSON commands (tracker events, HTTP). None of them may raise on any input; the JSON reader
raises only `ValueError`. Each test is bounded (a few hundred examples, a few seconds)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dialogue.conftest import BANK
from voicecalm.dialogue.commands import (
    COMMAND_TYPES,
    CannotHandle,
    Clarify,
    Command,
    CorrectSlots,
    CorrectedSlot,
    SetSlot,
    StartFlow,
    command_from_json,
)
from voicecalm.dialogue.dsl import ARGUMENT_FREE, V1_ARGUMENT_FREE, parse_commands, post_process
from voicecalm.project import load_project
from voicecalm.understanding.payloads import button_pairs, parse_payload

PROJECT = load_project(BANK)
USER_FLOWS = sorted(flow.id for flow in PROJECT.user_flows)
SLOTS = sorted(PROJECT.domain.slots)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, lone surrogates included (a JSON body can carry them).
anything = st.text(st.characters(blacklist_categories=()), max_size=60)
weird = st.text(
    st.one_of(
        st.characters(blacklist_categories=()),
        st.sampled_from("()[]{}=,'\"`\\/\n\r\t\u200b\u202e\u0000\ufeff😀ß"),
    ),
    max_size=30,
)
name = st.one_of(st.sampled_from(USER_FLOWS + SLOTS + ["pattern_restart", "flow_name"]), weird)


def slot_value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


dsl_line = st.one_of(
    st.builds("start flow {}".format, name),
    st.builds("set slot {} {}".format, name, st.one_of(weird, st.sampled_from(["[missing]", "None", "null", "''"]))),
    st.builds("disambiguate flows {}".format, st.lists(name, max_size=5).map(" ".join)),
    st.sampled_from(sorted(ARGUMENT_FREE)),
    st.builds("StartFlow({})".format, name),
    st.builds("SetSlot({}, {})".format, name, weird),
    st.builds("Clarify({})".format, st.lists(name, max_size=5).map(", ".join)),
    st.sampled_from([f"{command}()" for command in V1_ARGUMENT_FREE]),
)


@st.composite
def mutated(draw: st.DrawFn, line: st.SearchStrategy[str]) -> str:
    """A DSL line with a prefix (bullets, numbers, quotes), a suffix, and characters inserted,
    deleted or replaced at random places."""
    text = draw(st.sampled_from(["", "- ", "1. ", "* `", '"', "  ", ">>> ", "\t"])) + draw(line)
    text += draw(st.sampled_from(["", "`", '"', ".", "'", " ", "\\", ")", "]]"]))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        match draw(st.sampled_from(["insert", "delete", "replace"])):
            case "insert":
                text = text[:at] + draw(weird) + text[at:]
            case "delete":
                text = text[:at] + text[at + draw(st.integers(1, 5)) :]
            case "replace":
                text = text[:at] + draw(weird) + text[at + 1 :]
    return text


completion = st.one_of(
    anything,
    st.lists(dsl_line, max_size=4).map("\n".join),
    st.lists(mutated(dsl_line), max_size=8).map("\n".join),
)


@FUZZ
@given(completion)
def test_parse_commands_never_raises(text: str) -> None:
    commands = parse_commands(text)
    assert all(isinstance(command, Command) for command in commands)


@FUZZ
@given(completion, st.lists(name, max_size=5))
def test_post_process_of_parsed_commands_never_raises(text: str, extra_flows: list[str]) -> None:
    user_flows = set(USER_FLOWS) | set(extra_flows)
    for command in post_process(parse_commands(text), user_flows):
        assert isinstance(command, Command)
        if isinstance(command, StartFlow):
            assert command.flow in user_flows


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), anything),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(anything, inner, max_size=4)),
    max_leaves=10,
)
any_command = st.one_of(
    st.builds(StartFlow, name),
    st.builds(SetSlot, name, json_value),
    st.builds(Clarify, st.lists(name, max_size=4).map(tuple)),
    st.builds(CannotHandle),
    st.builds(CorrectSlots, st.lists(st.builds(CorrectedSlot, name, json_value), max_size=3).map(tuple)),
    st.sampled_from([make() for make in ARGUMENT_FREE.values()]),
)


@FUZZ
@given(st.lists(any_command, max_size=8), st.lists(name, max_size=5))
def test_post_process_never_raises(commands: list[Command], user_flows: list[str]) -> None:
    post_process(commands, set(user_flows) | set(USER_FLOWS[:2]))


pair_value = st.one_of(
    weird,
    st.sampled_from(["true", "false", "None", "null", "undefined", "50", "1e309", "-0", "nan", "inf", "electricity"]),
    st.builds("[{}]".format, st.lists(weird, max_size=4).map(",".join)),
    st.builds("({})".format, weird),
    st.builds("[{}".format, weird),
)
pair = st.one_of(
    st.builds("{}={}".format, name, pair_value),
    st.builds("{}={}".format, st.sampled_from(SLOTS), st.sampled_from(["Jane", "50", "true", "water", "[a, b]", "null"])),
)


@st.composite
def set_slots_payload(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(pair, max_size=14))
    separator = draw(st.sampled_from([",", ", ", " , ", ",,", "(", ")", "=", "\n"]))
    body = separator.join(pairs)
    if draw(st.booleans()):  # nested parentheses around (part of) the pairs
        at = draw(st.integers(0, len(body)))
        body = body[:at] + "(" + body[at:] + ")"
    head = draw(st.sampled_from(["/SetSlots(", " /SetSlots(", "/SetSlots((", "/SetSlots", "/SetSlots[", "/SetSlotsX("]))
    tail = draw(st.sampled_from([")", "", "))", ") ", ")x", ")\n", "]"]))
    return head + body + tail


payload = st.one_of(
    set_slots_payload(),
    st.lists(pair, min_size=1, max_size=4).map(lambda pairs: "/SetSlots(" + ", ".join(pairs) + ")"),
    mutated(st.lists(pair, min_size=1, max_size=4).map(lambda pairs: "/SetSlots(" + ", ".join(pairs) + ")")),
    st.builds("/{}".format, anything),
    st.builds("/{}{}".format, name, st.builds("{{{}}}".format, weird)),
    st.builds("/{}".format, st.sampled_from(["session_start", "restart", "silence_timeout", "session_end"])),
)


@FUZZ
@given(payload, st.booleans())
def test_parse_payload_never_raises(text: str, offered: bool) -> None:
    buttons = ()
    if offered and (pairs := button_pairs(text, PROJECT.domain)) is not None:
        buttons = (pairs,)
    commands = parse_payload(text, PROJECT.domain, PROJECT.flows, buttons)
    assert commands is None or all(isinstance(command, Command) for command in commands)
    if commands is None:
        assert not text.strip().startswith("/")


command_key = st.sampled_from(
    ["command", "flow", "name", "value", "extractor", "corrected_slots", "options", "reason", "error_type", "info",
     "filled_by"]
)
command_dict = st.one_of(
    st.dictionaries(st.one_of(command_key, anything), json_value, max_size=6),
    st.builds(
        lambda command, rest: {**rest, "command": command},
        st.one_of(st.sampled_from([*COMMAND_TYPES, "hand over"]), json_value),
        st.dictionaries(command_key, json_value, max_size=5),
    ),
    st.builds(
        lambda slots: {"command": "correct slot", "corrected_slots": slots},
        st.lists(st.one_of(json_value, st.dictionaries(command_key, json_value, max_size=3)), max_size=3),
    ),
)


@FUZZ
@given(st.one_of(command_dict, json_value))
def test_command_from_json_raises_only_value_error(data: Any) -> None:
    try:
        command = command_from_json(data)
    except ValueError:
        return
    assert isinstance(command, Command)
    assert command_from_json(command.to_json()) == command
