from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from voicecalm.cli import app
from voicecalm.dialogue.commands import Command
from voicecalm.dialogue.dsl import parse_commands, post_process
from voicecalm.project import Project, load_project
from voicecalm.tracker.conversation import Conversation

BANK = Path(__file__).parent.parent / "dialogue" / "bank"

# The bank's custom actions exist only in its domain: every test file stubs them.
STUBS = """
stub_custom_actions:
  action_check_balance:
    events: [{event: slot, name: balance, value: 120.5}]
    responses: []
  action_send_money:
    responses: [{text: "Transferring now."}]
"""


@pytest.fixture(scope="session")
def bank() -> Project:
    return load_project(BANK)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "e2e.yml", stubs: bool = True) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((STUBS if stubs else "") + textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def run_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["test", "e2e", *map(str, args), "--project", str(BANK)])


def last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


class ScriptedGenerator:
    """A command generator that answers each user text with fixed DSL lines."""

    def __init__(self, script: dict[str, Sequence[str]]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def route(self, text: str, conversation: Conversation) -> list[Command] | None:
        return None

    async def predict(self, text: str, conversation: Conversation, project: Project) -> list[Command]:
        self.calls.append(text)
        return post_process(parse_commands("\n".join(self.script.get(text, ()))), [f.id for f in project.user_flows])
