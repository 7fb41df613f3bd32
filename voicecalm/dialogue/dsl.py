"""The tolerant parser for LLM command output, DSL v2 and v1 (commands.md §2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable

from voicecalm.dialogue.commands import (
    CancelFlow,
    CannotHandle,
    ChitChat,
    Clarify,
    Command,
    HumanHandoff,
    Knowledge,
    RepeatMessage,
    SetSlot,
    SkipQuestion,
    StartFlow,
)

# Bullets, numbering, backticks and quotes before a command.
PREFIX = r"^[\s\W\d]*"

NULL_WORDS = frozenset({"", "[missing information]", "[missing]", "None", "undefined", "null"})
VALUE_QUOTES = "'\" "

ARGUMENT_FREE: dict[str, Callable[[], Command]] = {
    "cancel flow": CancelFlow,
    "offtopic reply": ChitChat,
    "provide info": Knowledge,
    "search and reply": Knowledge,
    "repeat message": RepeatMessage,
    "skip question": SkipQuestion,
    "cannot handle": CannotHandle,
    "human handoff": HumanHandoff,
    "hand over": HumanHandoff,
}
V1_ARGUMENT_FREE: dict[str, Callable[[], Command]] = {
    "CancelFlow": CancelFlow,
    "ChitChat": ChitChat,
    "SearchAndReply": Knowledge,
    "SkipQuestion": SkipQuestion,
    "RepeatLastBotMessages": RepeatMessage,
    "HumanHandoff": HumanHandoff,
    "CannotHandle": CannotHandle,
}

START_FLOW = re.compile(PREFIX + r"""start flow ['"`]?([a-zA-Z0-9_-]+)['"`]*""")
SET_SLOT = re.compile(PREFIX + r"""set slot ['"`]?([a-zA-Z_][a-zA-Z0-9_-]*)['"`]? ['"`]?(.+?)[\W]*$""")
DISAMBIGUATE = re.compile(PREFIX + r"""disambiguate flows\s*(["'a-zA-Z0-9_, -]*)[\W]*$""")
ARGUMENT_FREE_PATTERNS = [
    (re.compile(PREFIX + re.escape(words) + r"""['"`]*$"""), make) for words, make in ARGUMENT_FREE.items()
]

V1_START_FLOW = re.compile(r"""StartFlow\(['"]?([a-zA-Z0-9_-]+)['"]?\)""")
V1_SET_SLOT = re.compile(r"""SetSlot\(['"]?([a-zA-Z_][a-zA-Z0-9_-]*)['"]?, ?['"]?(.*)['"]?\)""")
V1_CLARIFY = re.compile(r"""Clarify\(([\"'a-zA-Z0-9_, ]+)\)""")
V1_ARGUMENT_FREE_PATTERNS = [(re.compile(re.escape(name) + r"\(\)"), make) for name, make in V1_ARGUMENT_FREE.items()]


def parse_commands(text: str) -> list[Command]:
    """Every command found in an LLM completion, in order; lines matching nothing are ignored."""
    commands: list[Command] = []
    for raw_line in text.splitlines():
        commands.extend(_parse_line(raw_line.strip()))
    return commands


def _parse_line(line: str) -> Iterable[Command]:
    if match := START_FLOW.search(line):
        yield StartFlow(match.group(1))
    if match := SET_SLOT.search(line):
        # Null words are checked on the uncut tail too: the cut eats the `]` of `[missing]`.
        uncut = line[match.start(2) :]
        yield SetSlot(match.group(1), _slot_value(match.group(2), uncut))
    if match := DISAMBIGUATE.search(line):
        yield Clarify(split_options(match.group(1)))
    for pattern, make in ARGUMENT_FREE_PATTERNS:
        if pattern.search(line):
            yield make()
    if match := V1_START_FLOW.search(line):
        yield StartFlow(match.group(1))
    if match := V1_SET_SLOT.search(line):
        yield SetSlot(match.group(1), _slot_value(match.group(2)))
    if match := V1_CLARIFY.search(line):
        yield Clarify(split_options(match.group(1)))
    for pattern, make in V1_ARGUMENT_FREE_PATTERNS:
        if pattern.search(line):
            yield make()


def _slot_value(value: str, uncut: str | None = None) -> str | None:
    if uncut is not None and uncut.strip(VALUE_QUOTES) in NULL_WORDS:
        return None
    value = value.strip(VALUE_QUOTES)
    return None if value in NULL_WORDS else value


def split_options(options: str) -> tuple[str, ...]:
    """Flow ids of a `disambiguate flows` line: split on spaces and commas, unquoted, sorted."""
    return tuple(sorted(option.strip("'\"") for option in options.replace(",", " ").split() if option.strip("'\"")))


def post_process(commands: list[Command], user_flow_ids: Collection[str]) -> list[Command]:
    """Flow-aware cleanup of parsed commands: only real user flow ids survive (commands.md §2)."""
    result: list[Command] = []
    for command in commands:
        match command:
            case StartFlow(flow=flow):
                if flow in user_flow_ids:
                    result.append(command)
            case SetSlot(name="flow_name", value=value):
                if isinstance(value, str) and value in user_flow_ids:
                    result.append(StartFlow(value))
            case Clarify(options=options):
                if clarified := _clarify(options, user_flow_ids):
                    result.append(clarified)
            case _:
                result.append(command)
    return result


def _clarify(options: tuple[str, ...], user_flow_ids: Collection[str]) -> Command | None:
    if not options:
        return Clarify(())
    valid = sorted({option for option in split_options(" ".join(options)) if option in user_flow_ids})
    if len(valid) == 1:
        return StartFlow(valid[0])
    return Clarify(tuple(valid)) if valid else None


def to_dsl_lines(commands: Iterable[Command]) -> list[str]:
    return [line for command in commands if (line := command.to_dsl()) is not None]
