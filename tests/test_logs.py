"""Structured logs: one JSON object per line, the conversation id of the turn a line belongs to,
and no secrets from the project's configuration (nor user texts above DEBUG)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from tests.channels.test_rest import bank_project, say, serving
from voicecalm import logs
from voicecalm.assistant import Assistant
from voicecalm.cli import app as cli
from voicecalm.server import create_app

TOKEN = "tok-SECRET-4711"
PASSWORD = "pw-SECRET-0815"
USER_TEXT = "my private words about Zanzibar"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)


@pytest.fixture
def json_logs(restore_logging: None) -> io.StringIO:
    stream = io.StringIO()
    logs.configure(logging.DEBUG, "json", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def action_server(seen: list[dict[str, Any]]) -> FastAPI:
    """Checks the balance; every other action fails with HTTP 500."""
    server = FastAPI()

    @server.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @server.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append({"token": request.query_params.get("token"), "auth": request.headers.get("authorization")})
        if body["next_action"] == "action_check_balance":
            return JSONResponse({"events": [{"event": "slot", "name": "balance", "value": 7}], "responses": []})
        return JSONResponse({"error": "the bank is closed"}, status_code=500)

    return server


async def test_json_lines_carry_the_conversation_and_no_secrets(tmp_path: Path, json_logs: io.StringIO) -> None:
    seen: list[dict[str, Any]] = []
    async with serving(action_server(seen)) as (actions_client, _):
        project = bank_project(tmp_path)
        endpoints = {
            "tracker_store": {"type": "InMemoryTrackerStore"},
            "action_endpoint": {
                "url": str(actions_client.base_url.join("/webhook")),
                "token": TOKEN,
                "basic_auth": {"username": "bot", "password": PASSWORD},
            },
        }
        (project / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
        assistant = Assistant.from_path(project)
        async with serving(create_app(assistant)) as (client, _):
            assert [m["text"] for m in await say(client, "ann", "/balance")][0] == "Your balance is 7.0."
            await say(client, "ann", USER_TEXT)
            for payload in ("/transfer", "/SetSlots(recipient=Jane)", "/SetSlots(amount=50)"):
                await say(client, "ann", payload)
            failed = await say(client, "ann", "/SetSlots(confirmed=true)")
        logging.getLogger("voicecalm.test").info("after the turns")

    assert seen and all(request["token"] == TOKEN and request["auth"] for request in seen), "the secrets were in use"
    assert failed, "the failing action is answered with the internal error response"
    entries = lines(json_logs)
    assert entries, "nothing was logged"
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
    failure = next(e for e in entries if e["message"] == "action action_send_money failed: http_error")
    assert (failure["level"], failure["logger"], failure["conversation_id"]) == ("ERROR", "voicecalm.dialogue.executor", "ann")
    outside = next(e for e in entries if e["message"] == "after the turns")
    assert "conversation_id" not in outside

    output = json_logs.getvalue()
    assert TOKEN not in output and PASSWORD not in output
    assert not [e for e in entries if e["level"] != "DEBUG" and USER_TEXT in json.dumps(e)]


def test_exceptions_are_one_line_and_masked(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    log = logging.getLogger("voicecalm.test")
    with logs.conversation("caller-7"):
        try:
            raise ConnectionError("redis://:hunter2@cache:6379/0 refused")
        except ConnectionError:
            log.exception("store at %s failed", "http://bot:hunter2@actions/webhook?token=abc123")
    log.debug("not shown at info")

    [entry] = lines(stream)
    assert entry["level"] == "ERROR" and entry["conversation_id"] == "caller-7"
    assert entry["message"] == "store at http://***@actions/webhook?token=*** failed"
    assert "ConnectionError: redis://***@cache:6379/0 refused" in entry["exception"]
    assert "hunter2" not in stream.getvalue() and "abc123" not in stream.getvalue()
    assert entry["timestamp"].endswith("+00:00")


def test_text_format_is_masked_too(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure(logging.INFO, "text", stream=stream)
    logging.getLogger("voicecalm.test").warning("connecting to postgresql://bot:hunter2@db/rasa")
    assert stream.getvalue().rstrip().endswith("WARNING voicecalm.test: connecting to postgresql://***@db/rasa")


def test_run_takes_the_format_from_the_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    started: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, *args, **kwargs: started.append(server.config))
    project = str(bank_project(tmp_path))
    runner = CliRunner()

    result = runner.invoke(cli, ["run", project], env={"VOICECALM_LOG_FORMAT": "json"})
    assert result.exit_code == 0, result.output
    assert started[-1].log_config is None, "uvicorn's loggers go through the JSON handler"
    assert [type(h.formatter) for h in logging.getLogger().handlers] == [logs.JsonFormatter]

    result = runner.invoke(cli, ["run", project, "--log-format", "text"], env={"VOICECALM_LOG_FORMAT": "json"})
    assert result.exit_code == 0, result.output
    assert started[-1].log_config is not None
    assert [type(h.formatter) for h in logging.getLogger().handlers] == [logs.TextFormatter]

    result = runner.invoke(cli, ["run", project, "--log-format", "xml"])
    assert result.exit_code == 2
    assert "unknown log format" in result.output
