"""The filler line for slow custom actions (voice.md §3): said once per turn, only when slow."""

from __future__ import annotations

import asyncio

from voicecalm.tracker.conversation import Conversation
from voicecalm.voice.engine_processor import SlowActionFiller


class SleepingActions:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ran: list[str] = []

    async def run(self, action_name: str, conversation: Conversation) -> str:
        await asyncio.sleep(self.seconds)
        self.ran.append(action_name)
        return "done"


async def test_a_slow_action_gets_one_filler_and_its_result() -> None:
    fillers: list[Conversation] = []
    conversation = Conversation("caller", {})
    runner = SlowActionFiller(SleepingActions(0.3), 0.05, fillers.append)
    assert await runner.run("action_look_up", conversation) == "done"
    assert await runner.run("action_look_up_more", conversation) == "done"
    assert fillers == [conversation]  # once per turn, for the first slow action


async def test_a_fast_action_gets_no_filler() -> None:
    fillers: list[Conversation] = []
    runner = SlowActionFiller(SleepingActions(0.0), 1.0, fillers.append)
    assert await runner.run("action_quick", Conversation("caller", {})) == "done"
    await asyncio.sleep(0)
    assert fillers == []
