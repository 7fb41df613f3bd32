from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voicecalm.actions.runner import ActionFailed, ActionResult
from voicecalm.assistant import Assistant, TurnResult, UserTurn
from voicecalm.dialogue.dsl import parse_commands, post_process
from voicecalm.dialogue.executor import TurnServices
from voicecalm.project import Project, load_project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import Event
from voicecalm.tracker.stores import InMemoryTrackerStore

BANK = Path(__file__).parent / "bank"


class BankActions:
    """The test bank's custom actions, run in-process (what an action server would answer)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.balance = 120.5

    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        self.calls.append(action_name)
        if action_name == "action_check_balance":
            return ActionResult(events=[{"event": "slot", "name": "balance", "value": self.balance}])
        if action_name == "action_send_money":
            return ActionResult(responses=[{"text": f"Transferring {conversation.slots['amount']}."}])
        raise ActionFailed("connection_error", detail="action server unreachable")


class Chat:
    """One conversation driven by DSL command lines, as an LLM would produce them."""

    def __init__(self, assistant: Assistant, sender_id: str = "tester", channel: str = "rest") -> None:
        self.assistant = assistant
        self.sender_id = sender_id
        self.channel = channel
        self.last: TurnResult | None = None

    async def say(self, *lines: str, text: str = "user text", **turn: Any) -> list[str]:
        """Send one turn; returns the response names the bot sent."""
        user_flows = [flow.id for flow in self.assistant.project.user_flows]
        commands = post_process(parse_commands("\n".join(lines)), user_flows) if lines else None
        self.last = await self.assistant.handle(
            self.sender_id, UserTurn(text=text, commands=commands, input_channel=self.channel, **turn)
        )
        return self.utters

    async def type(self, text: str) -> list[str]:
        """Send what a user typed (payloads like /SetSlots go through the payload parser)."""
        self.last = await self.assistant.handle(self.sender_id, UserTurn(text=text, input_channel=self.channel))
        return self.utters

    @property
    def utters(self) -> list[str]:
        assert self.last is not None
        return [m.response or m.text or "" for m in self.last.messages]

    @property
    def texts(self) -> list[str]:
        assert self.last is not None
        return [m.text or "" for m in self.last.messages]

    def events(self, kind: type[Event]) -> list[Any]:
        assert self.last is not None
        return [e for e in self.last.events if isinstance(e, kind)]

    async def conversation(self) -> Conversation:
        return await self.assistant.conversation(self.sender_id)

    async def slots(self) -> dict[str, Any]:
        return (await self.conversation()).slots

    async def stack(self) -> list[tuple[str, str]]:
        return [(f.get("flow_id", f["type"]), f.get("step_id", "")) for f in (await self.conversation()).stack]


@pytest.fixture(scope="session")
def bank() -> Project:
    return load_project(BANK)


@pytest.fixture
def actions() -> BankActions:
    return BankActions()


@pytest.fixture
def assistant(bank: Project, actions: BankActions) -> Assistant:
    return Assistant(bank, InMemoryTrackerStore(), actions=actions)


@pytest.fixture
async def chat(assistant: Assistant) -> Chat:
    chat = Chat(assistant)
    await chat.say("cancel flow")  # the first turn also starts the session
    return chat


def make_assistant(project: Project, **services: Any) -> Assistant:
    return Assistant(project, InMemoryTrackerStore(), services=TurnServices(actions=BankActions(), **services))
