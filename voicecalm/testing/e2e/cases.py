"""Loaded test cases: what the runner plays, with the file position of every step."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecalm.dialogue.commands import Command
from voicecalm.project.problems import Location
from voicecalm.testing.e2e.model import AssertionModel, LlmJudgeModel


def show_value(value: Any) -> str:
    """A slot value as a transcript shows it: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True, slots=True)
class Annotation:
    """vc `commands:` of a user step, parsed and post-processed like generator output."""

    commands: tuple[Command, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class Assertion:
    kind: str
    check: AssertionModel
    location: Location


@dataclass(frozen=True, slots=True)
class UserStep:
    text: str
    location: Location
    metadata: Mapping[str, Any] = field(default_factory=dict)  # test case and step metadata, merged
    annotation: Annotation | None = None
    reaches_generator: bool = True
    assertions: tuple[Assertion, ...] = ()
    assertion_order_enabled: bool = False

    def describe(self) -> str:
        return f"user: {self.text}"


@dataclass(frozen=True, slots=True)
class ExpectUtter:
    name: str
    location: Location

    def describe(self) -> str:
        return f"utter: {self.name}"


@dataclass(frozen=True, slots=True)
class ExpectBotText:
    text: str
    location: Location

    def describe(self) -> str:
        return f"bot: {self.text}"


@dataclass(frozen=True, slots=True)
class SlotExpectation:
    name: str
    value: Any = None
    check_value: bool = False

    def describe(self) -> str:
        return f"{self.name}: {show_value(self.value)}" if self.check_value else self.name


@dataclass(frozen=True, slots=True)
class ExpectSlots:
    """`slot_was_set` (`present`) or `slot_was_not_set`."""

    entries: tuple[SlotExpectation, ...]
    present: bool
    location: Location

    @property
    def kind(self) -> str:
        return "slot_was_set" if self.present else "slot_was_not_set"

    def describe(self) -> str:
        return f"{self.kind}: {', '.join(entry.describe() for entry in self.entries)}"


BotStep = ExpectUtter | ExpectBotText | ExpectSlots
Step = UserStep | BotStep


def step_kind(step: BotStep) -> str:
    if isinstance(step, ExpectSlots):
        return step.kind
    return "utter" if isinstance(step, ExpectUtter) else "bot"


@dataclass(frozen=True, slots=True)
class TestCase:
    __test__ = False  # not a pytest class
    name: str
    file: Path
    location: Location
    steps: tuple[Step, ...]
    assertion_style: bool
    fixtures: Mapping[str, Any] = field(default_factory=dict)  # slot values after session start
    metadata: Mapping[str, Any] = field(default_factory=dict)
    stubs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # action name → reply body
    llm_judge: LlmJudgeModel | None = None
