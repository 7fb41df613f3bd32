"""`Assistant.handle`: many conversations at once, one turn at a time per conversation, atomic turns."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from tests.dialogue.conftest import BankActions, Chat
from voicecalm.actions.runner import ActionResult
from voicecalm.assistant import Assistant, UserTurn
from voicecalm.dialogue import executor
from voicecalm.dialogue.dsl import parse_commands
from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import BotUttered, Event, UserUttered
from voicecalm.tracker.stores import InMemoryTrackerStore


class SlowStore(InMemoryTrackerStore):
    """Yields to the event loop on every read and write, so that turns really interleave."""

    async def events(self, sender_id: str, start: int = 0) -> list[Event]:
        await asyncio.sleep(random.uniform(0, 0.002))
        return await super().events(sender_id, start)

    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.002))
        await super().append(sender_id, events, expected_count)


class SlowActions(BankActions):
    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        await asyncio.sleep(random.uniform(0, 0.003))
        return await super().run(action_name, conversation)


class FailingStore(InMemoryTrackerStore):
    """Refuses the next `append` when `fail_next` is set."""

    fail_next = False

    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database is gone")
        await super().append(sender_id, events, expected_count)


def turn(*lines: str, text: str = "user text") -> UserTurn:
    return UserTurn(text=text, commands=parse_commands("\n".join(lines)), input_channel="rest")


def names(result) -> list[str]:
    return [m.response or m.text or "" for m in result.messages]


async def test_twenty_conversations_in_parallel_keep_their_own_state(bank: Project) -> None:
    store = SlowStore()
    assistant = Assistant(bank, store, actions=SlowActions())

    async def conversation(i: int) -> list[list[str]]:
        sender = f"user-{i}"
        texts = []
        for lines in (
            ("start flow transfer_money",),
            (f"set slot recipient Person{i}",),
            (f"set slot amount {i + 1}",),
            ("set slot confirmed True",),
        ):
            result = await assistant.handle(sender, turn(*lines))
            texts.append([m.text or "" for m in result.messages])
        return texts

    results = await asyncio.gather(*(conversation(i) for i in range(20)))
    for i, texts in enumerate(results):
        assert texts[0] == ["Who should get the money?"]
        assert texts[1] == [f"How much should I send to Person{i}?"]
        assert texts[2] == [f"Send {float(i + 1)} to Person{i}?"]
        assert texts[3][:2] == [f"Transferring {float(i + 1)}.", f"Sent {float(i + 1)} to Person{i}."]
    assert sorted(await store.sender_ids()) == sorted(f"user-{i}" for i in range(20))
    for i in range(20):
        stored = await store.events(f"user-{i}")
        users = [e for e in stored if isinstance(e, UserUttered)]
        assert len(users) == 4
        conversation = await assistant.conversation(f"user-{i}")
        assert [f["flow_id"] for f in conversation.stack] == ["pattern_completed", "pattern_collect_information"]


async def test_two_turns_of_one_conversation_are_serialised(bank: Project) -> None:
    store = SlowStore()
    assistant = Assistant(bank, store, actions=SlowActions())
    first, second = await asyncio.gather(
        assistant.handle("same", turn("start flow transfer_money", text="first")),
        assistant.handle("same", turn("set slot recipient Jane", text="second")),
    )
    assert names(first) == ["utter_ask_recipient"]
    assert names(second) == ["utter_ask_amount"], "the second turn sees the first one's state"
    stored = await store.events("same")
    assert stored == [*first.events, *second.events]
    second_user = next(i for i, e in enumerate(stored) if isinstance(e, UserUttered) and e.text == "second")
    assert all(stored.index(e) < second_user for e in first.events)


async def test_many_concurrent_turns_of_one_conversation_all_commit(bank: Project) -> None:
    store = SlowStore()
    assistant = Assistant(bank, store, actions=SlowActions())
    results = await asyncio.gather(*(assistant.handle("busy", turn("offtopic reply", text=f"t{i}")) for i in range(10)))
    stored = await store.events("busy")
    assert stored == [e for r in results for e in r.events]
    assert [e.text for e in stored if isinstance(e, UserUttered)] == [f"t{i}" for i in range(10)]


async def test_a_turn_that_raises_answers_with_an_internal_error(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    await chat.say("start flow transfer_money", "set slot recipient Jane")
    before = list(await chat.assistant.store.events(chat.sender_id))
    original = executor.Turn.advance
    raised: list[bool] = []

    async def advance_raising_once(self: executor.Turn) -> None:
        if not raised:
            raised.append(True)
            raise RuntimeError("engine bug")
        await original(self)

    monkeypatch.setattr(executor.Turn, "advance", advance_raising_once)
    utters = await chat.say("set slot amount 50", text="fifty")
    assert raised == [True]
    assert utters == ["utter_internal_error_rasa", "utter_ask_amount"]
    stored = await chat.assistant.store.events(chat.sender_id)
    assert stored[: len(before)] == before, "the previous state is untouched"
    new = stored[len(before) :]
    assert new == chat.last.events
    user = [e for e in new if isinstance(e, UserUttered)]
    assert len(user) == 1 and user[0].text == "fifty"
    assert [c["command"] for c in user[0].commands] == ["error"]
    assert [e.utter_action for e in new if isinstance(e, BotUttered)] == ["utter_internal_error_rasa", "utter_ask_amount"]
    slots = await chat.slots()
    assert slots["recipient"] == "Jane" and slots["amount"] is None
    assert await chat.say("set slot amount 50") == ["utter_ask_confirmed"]


async def test_a_failed_append_leaves_the_cached_conversation_unchanged(bank: Project) -> None:
    store = FailingStore()
    chat = Chat(Assistant(bank, store, actions=BankActions()))
    await chat.say("start flow transfer_money")
    stored_before = list(await store.events(chat.sender_id))
    cached_before = await chat.conversation()
    count_before = len(cached_before.events)
    store.fail_next = True
    with pytest.raises(RuntimeError):
        await chat.say("set slot recipient Jane")
    assert await store.events(chat.sender_id) == stored_before
    conversation = await chat.conversation()
    assert len(conversation.events) == count_before and conversation.committed == count_before
    assert conversation.slots["recipient"] is None
    assert [f["flow_id"] for f in conversation.stack] == ["transfer_money", "pattern_collect_information"]
    assert await chat.say("set slot recipient Joe") == ["utter_ask_amount"]
    assert chat.texts == ["How much should I send to Joe?"]
