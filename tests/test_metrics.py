"""Prometheus metrics: turns through the real server are counted and timed per stage, and
`/metrics` shows them; action failures and LLM errors are counted by kind."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.channels.test_rest import WEBHOOK, CountingActions, bank_project, say, serving
from tests.dialogue.conftest import BANK, BankActions, Chat
from tests.scaleout.test_workers import run_cli
from voicecalm.testing.action_server import free_port
from voicecalm import metrics
from voicecalm.assistant import Assistant
from voicecalm.project import load_project
from voicecalm.project.schema import CommandGeneratorConfig
from voicecalm.server import create_app
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.stores import InMemoryTrackerStore
from voicecalm.understanding import generator as generator_module
from voicecalm.understanding.generator import LLMCommandGenerator
from voicecalm.understanding.llm import LlmError, LlmSettings


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def turns(channel: str, outcome: str = "ok") -> float:
    return value("voicecalm_turns_total", channel=channel, outcome=outcome)


def stage_counts() -> dict[str, float]:
    return {stage: value("voicecalm_turn_duration_seconds_count", stage=stage) for stage in metrics.STAGES}


async def test_a_turn_through_the_server_is_counted_timed_and_exposed(tmp_path: Path) -> None:
    assistant = Assistant.from_path(bank_project(tmp_path), actions=CountingActions())
    before_turns, before_stages = turns("rest"), stage_counts()
    before_web = turns("web")
    before_total = value("voicecalm_turn_duration_seconds_sum", stage="total")
    async with serving(create_app(assistant)) as (client, _):
        await say(client, "ann", "/transfer")
        await say(client, "ann", "/SetSlots(recipient=Jane)", input_channel="web")
        response = await client.get("/metrics")

    assert turns("rest") == before_turns + 1
    assert turns("web") == before_web + 1
    assert {stage: count - before_stages[stage] for stage, count in stage_counts().items()} == {
        "understanding": 2,
        "dialogue": 2,
        "store": 2,
        "total": 2,
    }
    assert value("voicecalm_turn_duration_seconds_sum", stage="total") > before_total

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {"voicecalm_turns", "voicecalm_turn_duration_seconds", "voicecalm_llm_errors", "voicecalm_action_errors",
            "voicecalm_active_calls"} <= set(families)
    exposed = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert exposed[("voicecalm_turns_total", (("channel", "rest"), ("outcome", "ok")))] == turns("rest")
    for stage in metrics.STAGES:
        assert exposed[("voicecalm_turn_duration_seconds_count", (("stage", stage),))] >= 2
    assert ("voicecalm_turn_duration_seconds_bucket", (("le", "+Inf"), ("stage", "understanding"))) in exposed


async def test_an_action_failure_is_counted_by_kind() -> None:
    chat = Chat(Assistant(load_project(BANK), InMemoryTrackerStore(), actions=BankActions()), channel="metrics-test")
    before, before_ok = value("voicecalm_action_errors_total", kind="connection_error"), turns("metrics-test")
    assert "utter_internal_error_rasa" in await chat.say("start flow broken_flow")
    assert value("voicecalm_action_errors_total", kind="connection_error") == before + 1
    assert turns("metrics-test") == before_ok + 1, "a failed action is handled: the turn itself is ok"


class ExplodingActions(BankActions):
    async def run(self, action_name: str, conversation: Conversation):  # type: ignore[override]
        raise RuntimeError("a bug in the runtime, not an action failure")


async def test_a_turn_that_raises_is_counted_as_internal_error() -> None:
    chat = Chat(Assistant(load_project(BANK), InMemoryTrackerStore(), actions=ExplodingActions()), channel="exploding")
    before = turns("exploding", "internal_error")
    assert "utter_internal_error_rasa" in await chat.say("start flow check_balance")
    assert turns("exploding", "internal_error") == before + 1


def generator(settings) -> LLMCommandGenerator:  # type: ignore[no-untyped-def]
    project = load_project(BANK)
    config = CommandGeneratorConfig(name="CompactLLMCommandGenerator")
    return LLMCommandGenerator(project, config, settings, constrained=False, embedder=None)


async def test_llm_errors_are_counted_by_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_model() -> LlmSettings:
        raise RuntimeError("llama.cpp did not start")

    async def remote() -> LlmSettings:
        return LlmSettings(model="openai/remote", api_base="http://127.0.0.1:9/v1", api_key="sk-secret", timeout=1.0)

    async def failing_completion(*args: object, **kwargs: object) -> str:
        raise LlmError("APIConnectionError from openai/remote")

    monkeypatch.setattr(generator_module, "complete", failing_completion)
    project = load_project(BANK)
    before = {kind: value("voicecalm_llm_errors_total", kind=kind) for kind in ("unavailable", "completion")}

    for settings in (no_model, remote):
        chat = Chat(Assistant(project, InMemoryTrackerStore(), actions=BankActions(), generator=generator(settings)))
        assert await chat.type("send money to Jane") == ["utter_internal_error_rasa"]

    assert value("voicecalm_llm_errors_total", kind="unavailable") == before["unavailable"] + 1
    assert value("voicecalm_llm_errors_total", kind="completion") == before["completion"] + 1


def test_channel_labels_stay_few_and_tame() -> None:
    assert metrics.channel_label(None) == "unknown"
    assert metrics.channel_label("rest") == "rest"
    assert metrics.channel_label('x"} 1\nevil') == "other"
    assert metrics.channel_label("a" * 200) == "other"


def test_active_calls_gauge() -> None:
    before = value("voicecalm_active_calls")
    with metrics.active_call():
        metrics.call_started()
        assert value("voicecalm_active_calls") == before + 2
        metrics.call_ended()
    assert value("voicecalm_active_calls") == before


def turns_in(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "voicecalm_turns_total"
    )


async def test_every_worker_serves_the_sum_over_all_workers(tmp_path: Path) -> None:
    """`run --workers 2`: metrics go through files in a folder the CLI makes for the workers."""
    project = bank_project(tmp_path, {"type": "SQL", "dialect": "sqlite", "db": str(tmp_path / "trackers.db")})
    port = free_port()
    log = tmp_path / "server.log"
    server = run_cli(
        "run", str(project), "--port", str(port), "--workers", "2", "--log-format", "json",
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"no answer in 60 s:\n{log.read_text()}"
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            # New connections each time, so that both workers answer some of them.
            for n in range(8):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as fresh:
                    response = await fresh.post(WEBHOOK, json={"sender": f"w{n}", "message": "/transfer"})
                    assert response.status_code == 200, response.text
            for _ in range(6):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as fresh:
                    assert turns_in((await fresh.get("/metrics")).text) == 8
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(40) == 0, log.read_text()
        finally:
            if server.poll() is None:
                server.kill()
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert {entry["message"].split('"')[1] for entry in entries if entry["logger"] == "uvicorn.access"} >= {
        f"POST {WEBHOOK} HTTP/1.1",
        "GET /metrics HTTP/1.1",
    }, "uvicorn's access lines are JSON too"
