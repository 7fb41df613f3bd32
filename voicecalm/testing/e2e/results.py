"""What running a test case produced: its turns, every check made, and the first failure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from text_to_num import alpha2digit

from voicecalm.project.problems import Location
from voicecalm.testing.e2e.assertions import AssertionOutcome
from voicecalm.testing.e2e.cases import TestCase, UserStep
from voicecalm.testing.e2e.conversation import StepOutcome
from voicecalm.testing.e2e.du import DuStep
from voicecalm.tracker.events import Event, UserUttered


def _spoken_words(text: str) -> list[str]:
    # Digits one by one, so "12345678", "1234 5678" and "one two three ..." compare equal.
    return re.findall(r"[a-z']+|\d", alpha2digit(text.lower().replace(",", ""), "en"))


@dataclass(frozen=True, slots=True)
class Turn:
    step: UserStep | None  # None: session start and fixtures
    events: Sequence[Event]  # everything the turn appended, the user message included
    # Spoken e2e: the transcript of each user message the spoken line became (usually one; none
    # when the ASR heard nothing); None when the step was typed.
    heard: tuple[str, ...] | None = None

    @property
    def heard_as_written(self) -> bool:
        """The ASR heard the written words, case, punctuation and number spelling aside."""
        assert self.step is not None and self.heard is not None
        return _spoken_words(self.step.text) == _spoken_words(" ".join(self.heard))

    @property
    def bot_side(self) -> Sequence[Event]:
        """The events after the user message: what steps and assertions check."""
        for index, event in enumerate(self.events):
            if isinstance(event, UserUttered):
                return self.events[index + 1 :]
        return self.events


@dataclass(frozen=True, slots=True)
class Failure:
    location: Location  # of the failing step
    step: str  # the failing step as written
    message: str
    assertion: AssertionOutcome | None = None
    turn: Turn | None = None


@dataclass(slots=True)
class CaseResult:
    case: TestCase
    turns: list[Turn] = field(default_factory=list)
    step_outcomes: list[StepOutcome] = field(default_factory=list)  # conversation style
    assertion_outcomes: list[AssertionOutcome] = field(default_factory=list)  # assertion style
    du_steps: list[DuStep] = field(default_factory=list)
    failure: Failure | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.failure is None

    def checks(self) -> list[tuple[str, bool]]:
        """(type, passed) of every assertion or bot/slot step that was checked."""
        return [(o.assertion.kind, o.passed) for o in self.assertion_outcomes] + [
            (o.step_kind, o.passed) for o in self.step_outcomes
        ]
