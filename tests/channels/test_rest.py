"""The REST channel and the server, over real HTTP against uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from tests.dialogue.conftest import BANK, BankActions
from voicecalm import __version__
from voicecalm.actions import create_action_runner
from voicecalm.actions.runner import ActionResult
from voicecalm.assistant import Assistant
from voicecalm.project import load_project
from voicecalm.server import create_app
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.stores import InMemoryTrackerStore

EXAMPLE = Path(__file__).resolve().parents[2]
WEBHOOK = "/webhooks/rest/webhook"
ANYTHING_ELSE = "Can I help you with anything else?"  # pattern_completed
BALANCE = re.compile(r"Your balance is (\d+)")


class CountingActions(BankActions):
    """The test bank's actions, slowed down by `delay`; the balance counts the balance checks."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.running = 0
        self.most_running = 0  # the most actions that were running at the same moment

    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        if action_name == "action_check_balance":
            self.balance = float(self.calls.count(action_name) + 1)
        result = await super().run(action_name, conversation)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        return result


def bank_project(root: Path, tracker_store: dict[str, Any] | None = None) -> Path:
    """The test bank with intents that start its flows, so typed payloads can drive it."""
    project = root / "bank"
    shutil.copytree(BANK, project)
    domain = yaml.safe_load((project / "domain.yml").read_text())
    domain["intents"] = ["transfer", "balance", "report"]
    (project / "domain.yml").write_text(yaml.safe_dump(domain, sort_keys=False))
    flows_file = project / "data" / "flows.yml"
    flows = yaml.safe_load(flows_file.read_text())
    flows["flows"]["transfer_money"]["nlu_trigger"] = [{"intent": "transfer"}]
    flows["flows"]["check_balance"]["nlu_trigger"] = [{"intent": "balance"}]
    # A message before a slow action: the stream must deliver it before the action ends.
    flows["flows"]["report"] = {
        "description": "Thank, then tell the balance.",
        "nlu_trigger": [{"intent": "report"}],
        "steps": [{"action": "utter_thanks"}, {"action": "action_check_balance"}, {"action": "utter_balance"}],
    }
    flows_file.write_text(yaml.safe_dump(flows, sort_keys=False))
    store = tracker_store or {"type": "InMemoryTrackerStore"}
    (project / "endpoints.yml").write_text(yaml.safe_dump({"tracker_store": store}))
    return project


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, uvicorn.Server]]:
    """Serve `app` on a free loopback port until the block ends; yields a client for it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(200):
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.01)
        try:
            yield client, server
        finally:
            server.should_exit = True
            await task
            sock.close()


@pytest.fixture
def actions() -> CountingActions:
    return CountingActions()


@pytest.fixture
def assistant(tmp_path: Path, actions: CountingActions) -> Assistant:
    return Assistant.from_path(bank_project(tmp_path), actions=actions)


@pytest.fixture
async def client(assistant: Assistant) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(assistant)) as (client, _):
        yield client


async def say(client: httpx.AsyncClient, sender: str, message: str, **extra: Any) -> list[dict[str, Any]]:
    response = await client.post(WEBHOOK, json={"sender": sender, "message": message, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def test_health_version_and_rest_status(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/version")).json() == {"version": __version__}
    assert (await client.get("/webhooks/rest/")).json() == {"status": "ok"}


async def test_a_conversation_with_the_example_assistant() -> None:
    project = load_project(EXAMPLE)
    # An in-memory store: the example's endpoints.yml would write into the repository.
    assistant = Assistant(project, InMemoryTrackerStore(), actions=create_action_runner(project))
    async with serving(create_app(assistant)) as (client, _):
        greeting = await say(client, "caller", "/session_start")
        not_understood = await say(client, "caller", "what's the weather like?")
        tracker = (await client.get("/conversations/caller/tracker")).json()

    assert greeting == [{"recipient_id": "caller", "text": greeting[0]["text"]}]
    assert "VoiceCalm Bank" in greeting[0]["text"]
    assert [set(m) for m in not_understood] == [{"recipient_id", "text"}]
    bot = [e for e in tracker["events"] if e["event"] == "bot"]
    assert [e["metadata"]["utter_action"] for e in bot] == ["utter_greet", "utter_ask_rephrase"]
    assert [e["text"] for e in bot] == [greeting[0]["text"], not_understood[0]["text"]]
    users = [e for e in tracker["events"] if e["event"] == "user"]
    assert [(e["text"], e["input_channel"]) for e in users] == [
        ("/session_start", "rest"),
        ("what's the weather like?", "rest"),
    ]


async def test_transfer_answers_with_rasa_shaped_messages(client: httpx.AsyncClient) -> None:
    assert await say(client, "ann", "/transfer") == [{"recipient_id": "ann", "text": "Who should get the money?"}]
    assert await say(client, "ann", "/SetSlots(recipient=Jane)") == [
        {"recipient_id": "ann", "text": "How much should I send to Jane?"}
    ]
    assert await say(client, "ann", "/SetSlots(amount=50)") == [
        {
            "recipient_id": "ann",
            "text": "Send 50.0 to Jane?",
            "buttons": [
                {"title": "Yes", "payload": "/SetSlots(confirmed=true)"},
                {"title": "No", "payload": "/SetSlots(confirmed=false)"},
            ],
        }
    ]
    done = await say(client, "ann", "/SetSlots(confirmed=true)", metadata={"via": "button"}, input_channel="web")
    assert [m["text"] for m in done] == ["Transferring 50.0.", "Sent 50.0 to Jane.", ANYTHING_ELSE]

    tracker = (await client.get("/conversations/ann/tracker")).json()
    last_user = [e for e in tracker["events"] if e["event"] == "user"][-1]
    assert (last_user["input_channel"], last_user["metadata"]) == ("web", {"via": "button"})


async def test_stream_writes_each_message_as_a_line_when_it_is_produced(tmp_path: Path) -> None:
    actions = CountingActions(delay=0.3)
    assistant = Assistant.from_path(bank_project(tmp_path), actions=actions)
    arrivals: list[tuple[float, dict[str, Any]]] = []
    async with serving(create_app(assistant)) as (client, _):
        body = {"sender": "streamer", "message": "/report"}
        async with client.stream("POST", WEBHOOK, params={"stream": "true"}, json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line:
                    arrivals.append((time.monotonic(), json.loads(line)))

    assert [message for _, message in arrivals] == [
        {"recipient_id": "streamer", "text": "Thanks!"},
        {"recipient_id": "streamer", "text": "Your balance is 1.0."},
        {"recipient_id": "streamer", "text": ANYTHING_ELSE},
    ]
    # The first line came before the slow action ended, not with the rest at the end of the turn.
    assert arrivals[1][0] - arrivals[0][0] > 0.2


async def test_missing_sender_or_message_is_a_400_with_a_json_error(client: httpx.AsyncClient) -> None:
    for body in ({"message": "hi"}, {"sender": "bob"}, {"sender": "bob", "message": None}, [1, 2]):
        response = await client.post(WEBHOOK, json=body)
        assert response.status_code == 400, body
        assert response.json()["status"] == "failure"
    not_json = await client.post(WEBHOOK, content=b"sender=bob")
    assert not_json.status_code == 400
    assert not_json.json()["reason"] == "BadRequest"


async def test_json_without_a_json_content_type_is_accepted(client: httpx.AsyncClient) -> None:
    # What `curl -d '{...}'` sends (form content type), and what Rasa accepts.
    response = await client.post(
        WEBHOOK,
        content=json.dumps({"sender": "curl", "message": "/transfer"}),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.json() == [{"recipient_id": "curl", "text": "Who should get the money?"}]


async def test_turns_of_one_sender_run_one_at_a_time_in_order(tmp_path: Path) -> None:
    actions = CountingActions(delay=0.05)
    assistant = Assistant.from_path(bank_project(tmp_path), actions=actions)
    async with serving(create_app(assistant)) as (client, _):

        async def check(number: int) -> list[dict[str, Any]]:
            await asyncio.sleep(0.02 * number)  # sent in order, each while earlier ones still run
            return await say(client, "one", "/balance", metadata={"n": number})

        answers = await asyncio.gather(*(check(n) for n in range(10)))
        tracker = (await client.get("/conversations/one/tracker")).json()

    order = [e["metadata"]["n"] for e in tracker["events"] if e["event"] == "user"]
    assert order == list(range(10))
    # Each turn saw every earlier one: the n-th turn reports the n-th balance check.
    balances = [int(BALANCE.match(answer[0]["text"]).group(1)) for answer in answers]  # type: ignore[union-attr]
    assert balances == list(range(1, 11))


async def test_twenty_senders_at_once(tmp_path: Path) -> None:
    actions = CountingActions(delay=0.1)
    assistant = Assistant.from_path(bank_project(tmp_path), actions=actions)
    async with serving(create_app(assistant)) as (client, _):

        async def conversation(number: int) -> list[str]:
            sender = f"caller-{number}"
            texts = [m["text"] for m in await say(client, sender, "/transfer")]
            texts += [m["text"] for m in await say(client, sender, f"/SetSlots(recipient=Person{number})")]
            texts += [m["text"] for m in await say(client, sender, "/SetSlots(amount=10)")]
            texts += [m["text"] for m in await say(client, sender, "/SetSlots(confirmed=true)")]
            return texts

        results = await asyncio.gather(*(conversation(n) for n in range(20)))

    for number, texts in enumerate(results):
        assert texts == [
            "Who should get the money?",
            f"How much should I send to Person{number}?",
            f"Send 10.0 to Person{number}?",
            "Transferring 10.0.",
            f"Sent 10.0 to Person{number}.",
            ANYTHING_ELSE,
        ]
    assert actions.most_running > 1, "turns of different senders overlap: none waits for another's slow action"


async def test_tracker_endpoint(client: httpx.AsyncClient) -> None:
    await say(client, "tina", "/transfer")
    await say(client, "tina", "/SetSlots(recipient=Jane)", metadata={"k": "v"})
    tracker = (await client.get("/conversations/tina/tracker")).json()

    assert tracker["sender_id"] == "tina"
    assert tracker["slots"]["recipient"] == "Jane"
    assert [(f["flow_id"], f["step_id"]) for f in tracker["stack"]] == [
        ("transfer_money", "transfer_money_1_collect_amount"),
        ("pattern_collect_information", "pattern_collect_information_4_action_listen"),
    ]
    latest = tracker["latest_message"]
    assert (latest["text"], latest["metadata"]) == ("/SetSlots(recipient=Jane)", {"k": "v"})
    assert latest["commands"][0]["command"] == "set slot"
    kinds = [e["event"] for e in tracker["events"]]
    assert kinds.count("user") == 2 and "session_started" in kinds and "flow_started" in kinds

    unknown = (await client.get("/conversations/nobody/tracker")).json()
    assert (unknown["events"], unknown["latest_message"], unknown["stack"]) == ([], None, [])


async def test_a_store_failure_is_a_500(client: httpx.AsyncClient, assistant: Assistant) -> None:
    async def broken_append(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    assistant.store.append = broken_append  # type: ignore[method-assign]
    response = await client.post(WEBHOOK, json={"sender": "sam", "message": "/transfer"})
    assert response.status_code == 500
    assert response.json()["status"] == "failure"


async def test_requests_while_draining_get_503(assistant: Assistant) -> None:
    app = create_app(assistant)
    async with serving(app) as (client, _):
        app.state.turns.draining = True
        health = await client.get("/health")
        turn = await client.post(WEBHOOK, json={"sender": "late", "message": "/transfer"})
        app.state.turns.draining = False
    assert (health.status_code, turn.status_code) == (503, 503)
    assert turn.json()["reason"] == "ShuttingDown"


async def test_shutdown_waits_for_the_turn_in_flight(tmp_path: Path) -> None:
    project = bank_project(tmp_path, {"type": "SQL", "dialect": "sqlite", "db": "trackers.db"})
    actions = CountingActions(delay=0.5)
    async with serving(create_app(Assistant.from_path(project, actions=actions))) as (client, server):
        pending = asyncio.create_task(client.post(WEBHOOK, json={"sender": "slow", "message": "/balance"}))
        while not actions.calls:  # the turn is inside its slow action
            await asyncio.sleep(0.01)
        server.should_exit = True
        response = await pending

    assert response.status_code == 200
    assert [m["text"] for m in response.json()] == ["Your balance is 1.0.", ANYTHING_ELSE]
    reopened = Assistant.from_path(project)
    stored = await reopened.conversation("slow")
    await reopened.close()
    assert [e.to_dict()["event"] for e in stored.events].count("user") == 1
    assert stored.slots["balance"] == 1.0


async def test_a_turn_finishes_and_is_stored_when_its_client_leaves(tmp_path: Path) -> None:
    project = bank_project(tmp_path, {"type": "SQL", "dialect": "sqlite", "db": "trackers.db"})
    actions = CountingActions(delay=0.5)
    async with serving(create_app(Assistant.from_path(project, actions=actions))) as (client, _):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(WEBHOOK, json={"sender": "gone", "message": "/balance"}, timeout=0.2)
        # The server stops with the turn still running: the app's shutdown waits for it.

    reopened = Assistant.from_path(project)
    stored = await reopened.conversation("gone")
    await reopened.close()
    assert stored.slots["balance"] == 1.0
