"""Dialogue-understanding evaluation: predicted vs annotated commands (testing.md §3.3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecalm.dialogue.commands import (
    CannotHandle,
    Clarify,
    Command,
    SetSlot,
    StartFlow,
)
from voicecalm.dialogue.slot_values import coerce
from voicecalm.project import Slot


@dataclass(frozen=True, slots=True)
class DuStep:
    """One annotated user step that reached the generator."""

    test: str
    file: Path
    line: int
    text: str
    expected: tuple[Command, ...]
    predicted: tuple[Command, ...]  # what `parse_data.commands` holds: before cleanup


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    @property
    def count(self) -> int:
        """Expected commands of this type."""
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return None if p is None or r is None else _ratio(2 * p * r, p + r)

    def to_json(self) -> dict[str, Any]:
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": self.precision, "recall": self.recall, "f1": self.f1,
        }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True, slots=True)
class ScoredStep:
    step: DuStep
    match: bool
    per_command: Mapping[str, Counts]


@dataclass(frozen=True, slots=True)
class DuReport:
    steps: list[ScoredStep]
    per_command: dict[str, Counts]
    micro: Counts
    first_divergent: list[ScoredStep] = field(default_factory=list)  # per test, in run order

    @property
    def accuracy(self) -> float | None:
        return _ratio(sum(s.match for s in self.steps), len(self.steps))

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [
                {
                    "test": s.step.test,
                    "file": str(s.step.file),
                    "line": s.step.line,
                    "text": s.step.text,
                    "expected": command_lines(s.step.expected),
                    "predicted": command_lines(s.step.predicted),
                    "match": s.match,
                }
                for s in self.steps
            ],
            "per_command": {name: counts.to_json() for name, counts in self.per_command.items()},
            "accuracy": self.accuracy,
            "micro": self.micro.to_json(),
            "annotated_steps": len(self.steps),
            "first_divergent": [
                {"test": s.step.test, "file": str(s.step.file), "line": s.step.line} for s in self.first_divergent
            ],
        }


def command_lines(commands: Iterable[Command]) -> list[str]:
    return [command.to_dsl() or command.command for command in commands]


def evaluate(steps: Sequence[DuStep], slots: Mapping[str, Slot]) -> DuReport:
    scored = [score_step(step, slots) for step in steps]
    per_command: dict[str, Counts] = {}
    micro = Counts()
    for step in scored:
        for name, counts in step.per_command.items():
            per_command.setdefault(name, Counts()).add(counts)
            micro.add(counts)
    divergent: dict[str, ScoredStep] = {}
    for step in scored:
        if not step.match:
            divergent.setdefault(step.step.test, step)
    return DuReport(scored, dict(sorted(per_command.items())), micro, list(divergent.values()))


def score_step(step: DuStep, slots: Mapping[str, Slot]) -> ScoredStep:
    """Pairs each predicted command with an equal expected one: paired → TP of its type,
    unpaired predicted → FP, unpaired expected → FN."""
    if not step.expected and _is_no_command(step.predicted):
        return ScoredStep(step, True, {})
    counts: dict[str, Counts] = {}
    unpaired = list(step.expected)
    for predicted in step.predicted:
        partner = next((e for e in unpaired if commands_equal(e, predicted, slots)), None)
        kind = counts.setdefault(predicted.command, Counts())
        if partner is None:
            kind.fp += 1
        else:
            unpaired.remove(partner)
            kind.tp += 1
    for expected in unpaired:
        counts.setdefault(expected.command, Counts()).fn += 1
    match = all(c.fp == 0 and c.fn == 0 for c in counts.values())
    return ScoredStep(step, match, counts)


def _is_no_command(predicted: Sequence[Command]) -> bool:
    # `commands: []` expects that the generator finds nothing, which its post-processing turns
    # into one plain `cannot handle` (commands.md §2).
    return not predicted or list(predicted) == [CannotHandle()]


def commands_equal(expected: Command, predicted: Command, slots: Mapping[str, Slot]) -> bool:
    if expected.command != predicted.command:
        return False
    match expected, predicted:
        case StartFlow(flow=a), StartFlow(flow=b):
            return a == b
        case SetSlot(name=name, value=a), SetSlot(name=other, value=b):
            return name == other and _slot_value(slots.get(name), a) == _slot_value(slots.get(name), b)
        case Clarify(options=a), Clarify(options=b):
            return not a or set(a) == set(b)
    return True


def _slot_value(slot: Slot | None, value: Any) -> Any:
    if slot is not None:
        valid, coerced = coerce(slot, value)
        if valid:
            value = coerced
    return " ".join(value.split()) if isinstance(value, str) else value
