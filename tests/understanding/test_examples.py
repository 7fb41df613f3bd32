"""The embedded model's few-shot examples come from the project's flows, never from test data."""

from __future__ import annotations

import re
from pathlib import Path

from voicecalm.dialogue.dsl import parse_commands
from voicecalm.project import load_project
from voicecalm.testing.e2e.cases import UserStep
from voicecalm.testing.e2e.loader import load_tests
from voicecalm.understanding.examples import project_examples

REPOSITORY = Path(__file__).parents[2]


def examples() -> str:
    project = load_project(REPOSITORY)
    flows = [flow for flow in project.user_flows if flow.guard is not False]
    return project_examples(flows, project, offtopic=True, handoff=True)


def test_examples_use_the_projects_flows_slots_and_questions() -> None:
    project = load_project(REPOSITORY)
    text = examples()
    commands = parse_commands(text)
    started = {c.flow for c in commands if c.command == "start flow"}
    assert started and started <= {flow.id for flow in project.user_flows if flow.guard is not False}
    assert {c.name for c in commands if c.command == "set slot"} <= set(project.domain.slots)
    assert "AI: Which account, checking or savings?\n" in text, "the bot's own question"
    kinds = {c.command for c in commands}
    assert {"cancel flow", "knowledge", "chitchat", "human handoff", "repeat", "skip question", "cannot handle"} <= kinds


def test_no_example_message_is_an_evaluation_message() -> None:
    project = load_project(REPOSITORY)
    cases = load_tests(REPOSITORY / "e2e_tests", project).cases
    evaluated = {s.text.strip().lower() for case in cases for s in case.steps if isinstance(s, UserStep) and s.text}
    messages = {line.removeprefix("USER: ").strip().lower() for line in examples().splitlines() if line.startswith("USER: ")}
    assert messages and not messages & evaluated


def test_every_example_ends_with_actions_and_is_one_block() -> None:
    for block in examples().split("\n\n"):
        lines = block.splitlines()
        assert re.match(r"STATE: ", next(line for line in lines if not line.startswith(("AI:", "USER:"))))
        assert parse_commands("\n".join(lines[-1:])), block
