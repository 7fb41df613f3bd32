"""Two `voicecalm run` processes share one Redis or PostgreSQL tracker store and a Redis lock store.

50 conversations talk over the REST channel, half to each worker; one worker is killed with
SIGKILL while turns are running on it. Every conversation then goes on at the other worker, which
waits for the dead worker's locks to expire and continues from what the store holds. At the end
each conversation's stored events hold every turn exactly once, in order, with the answers the
client saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.channels.test_rest import WEBHOOK, bank_project
from tests.tracker.services import (
    drop_postgres_schema,
    drop_redis_prefix,
    postgres_options,
    postgres_ready,
    redis_options,
    redis_ready,
    unique_name,
)
from voicecalm.project.schema import StoreConfig
from voicecalm.tracker.events import BotUttered, UserUttered
from voicecalm.tracker.stores import create_tracker_store

REPO_ROOT = Path(__file__).resolve().parents[2]
CONVERSATIONS = 50
LOCK_LIFETIME = 2  # seconds a dead worker's conversations stay locked
ANYTHING_ELSE = "Can I help you with anything else?"

ACTIONS = '''
import asyncio
from rasa_sdk import Action
from rasa_sdk.events import SlotSet


class CheckBalance(Action):
    def name(self):
        return "action_check_balance"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(0.15)  # slow enough that a kill lands mid-turn
        return [SlotSet("balance", 100.0)]


class SendMoney(Action):
    def name(self):
        return "action_send_money"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(0.15)
        dispatcher.utter_message(text=f"Transferring {tracker.get_slot('amount')}.")
        return []
'''


def script(n: int) -> list[tuple[str, list[str]]]:
    """Each conversation's turns (user payload, the bot's answers): two rounds of transfer + balance."""
    turns: list[tuple[str, list[str]]] = []
    for round_ in range(2):
        amount = float(10 * n + round_ + 1)
        turns += [
            ("/transfer", ["Who should get the money?"]),
            ("/SetSlots(recipient=Ann)", ["How much should I send to Ann?"]),
            (f"/SetSlots(amount={amount})", [f"Send {amount} to Ann?"]),
            ("/SetSlots(confirmed=true)", [f"Transferring {amount}.", f"Sent {amount} to Ann.", ANYTHING_ELSE]),
            ("/balance", ["Your balance is 100.0.", ANYTHING_ELSE]),
        ]
    return turns


@pytest.fixture(params=["redis", "postgresql"])
async def tracker_store(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    if request.param == "redis":
        await (await redis_ready()).aclose()
        prefix = unique_name("kill")
        yield redis_options(prefix)
        await drop_redis_prefix(prefix)
    else:
        await (await postgres_ready()).close()
        schema = unique_name("kill")
        yield postgres_options(schema)
        await drop_postgres_schema(schema)


@pytest.fixture
async def lock_prefix() -> AsyncIterator[str]:
    await (await redis_ready()).aclose()
    prefix = unique_name("killlock")
    yield prefix
    await drop_redis_prefix(prefix)


def project_with(root: Path, tracker_store: dict[str, Any], lock_prefix: str) -> Path:
    project = bank_project(root, tracker_store)
    (project / "actions").mkdir()
    (project / "actions" / "__init__.py").write_text("")
    (project / "actions" / "bank.py").write_text(ACTIONS)
    endpoints = {
        "tracker_store": tracker_store,
        "lock_store": redis_options(lock_prefix, lock_lifetime=LOCK_LIFETIME),
        "action_endpoint": {"actions_module": "actions"},
    }
    (project / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
    return project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    started: list[Worker] = []

    def start(project: Path) -> Worker:
        port = free_port()
        log = tmp_path / f"worker-{port}.log"
        command = [sys.executable, "-m", "voicecalm.cli", "run", str(project), "--port", str(port), "--log-level", "warning"]
        if not (REPO_ROOT / "voicecalm" / "__main__.py").exists():
            command = [sys.executable, "-c", "from voicecalm.cli import app; app()", *command[3:]]
        process = subprocess.Popen(
            command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        )
        worker = Worker(process, f"http://127.0.0.1:{port}", log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(10)


async def wait_healthy(client: httpx.AsyncClient, worker: Worker) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(f"worker exited with {worker.process.returncode}:\n{worker.log.read_text()}")
        try:
            if (await client.get(f"{worker.url}/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"worker at {worker.url} did not come up in 30 s:\n{worker.log.read_text()}")


@dataclass
class Stats:
    answered: int = 0
    answered_by: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
    interrupted: int = 0  # turns sent to the dead worker that got no answer
    mid_turn: int = 0  # of those, turns it had accepted and was running when it died
    lost_answers: int = 0  # of those, turns the dead worker had committed before dying
    moved: set[str] = field(default_factory=set)


async def converse(
    client: httpx.AsyncClient, sender: str, n: int, workers: list[Worker], first: int, stats: Stats, answers: dict[int, list[str]]
) -> None:
    current = first
    for index, (payload, expected) in enumerate(script(n)):
        while True:
            worker = workers[current]
            body = {"sender": sender, "message": payload, "metadata": {"turn": index}}
            try:
                response = await client.post(worker.url + WEBHOOK, json=body)
            except httpx.TransportError as error:
                # The worker died (mid-turn, or before this turn reached it): go on at the other one.
                stats.interrupted += 1
                stats.mid_turn += not isinstance(error, httpx.ConnectError)
                stats.moved.add(sender)
                current = 1 - current
                tracker = (await client.get(f"{workers[current].url}/conversations/{sender}/tracker")).json()
                turns = [e["metadata"].get("turn") for e in tracker["events"] if e["event"] == "user"]
                if index in turns:
                    stats.lost_answers += 1  # stored before the kill; only the answer was lost
                    break
                continue
            assert response.status_code == 200, f"{sender} turn {index} at {worker.url}: {response.text}"
            texts = [message.get("text") for message in response.json()]
            assert texts == expected, f"{sender} turn {index} ({payload})"
            answers[index] = texts
            stats.answered += 1
            stats.answered_by[current] += 1
            break


async def test_killed_worker_loses_and_duplicates_nothing(
    tmp_path: Path, tracker_store: dict[str, Any], lock_prefix: str, start_worker: Any
) -> None:
    started = time.monotonic()
    project = project_with(tmp_path, tracker_store, lock_prefix)
    workers = [start_worker(project), start_worker(project)]
    stats = Stats()
    answers: dict[str, dict[int, list[str]]] = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for worker in workers:
            await wait_healthy(client, worker)

        senders = [f"caller-{n:02d}" for n in range(CONVERSATIONS)]
        tasks = []
        for n, sender in enumerate(senders):
            answers[sender] = {}
            tasks.append(asyncio.create_task(converse(client, sender, n, workers, n % 2, stats, answers[sender])))

        # Kill worker 0 once its conversations are well under way (3 turns each answered on
        # average), each of its 25 conversations in the middle of a turn or about to send one.
        while stats.answered_by[0] < 75:
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < 45, "turns are not being answered"
        workers[0].process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        workers[0].process.wait(10)

        await asyncio.wait_for(asyncio.gather(*tasks), timeout=45)
        finished = time.monotonic()

    # Every conversation of the dead worker moved; some of its turns died under it.
    assert stats.moved == {sender for n, sender in enumerate(senders) if n % 2 == 0}
    assert stats.mid_turn >= 1
    # The survivor waited for the dead worker's locks to expire, and not much longer.
    assert finished - killed_at < LOCK_LIFETIME + 20

    store = create_tracker_store(StoreConfig(**tracker_store), tmp_path)
    try:
        assert await store.sender_ids() == senders
        for n, sender in enumerate(senders):
            events = await store.events(sender)
            user_turns = [e.metadata.get("turn") for e in events if isinstance(e, UserUttered)]
            assert user_turns == list(range(10)), f"{sender}: turns stored {user_turns}"
            # The bot's messages between one user turn and the next are that turn's answers.
            said: dict[int, list[str]] = {}
            turn = -1
            for event in events:
                if isinstance(event, UserUttered):
                    turn = event.metadata["turn"]
                    said[turn] = []
                elif isinstance(event, BotUttered):
                    said.setdefault(turn, []).append(event.text)
            assert said == {index: expected for index, (_, expected) in enumerate(script(n))}, sender
            for index, texts in answers[sender].items():
                assert said[index] == texts
    finally:
        await store.close()
    print(
        f"\n{tracker_store['type']}: {stats.answered} turns answered, {stats.interrupted} sent to the dead worker unanswered "
        f"({stats.mid_turn} of them mid-turn, {stats.lost_answers} committed before the kill), all done {finished - killed_at:.1f} s after the kill"
    )
