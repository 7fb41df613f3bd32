"""The action-server client against a real rasa-sdk server, and against a server that
misbehaves on the wire in ways rasa-sdk itself never does."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.actions.conftest import HERE, bank_copy
from voicecalm.testing.action_server import ServerTls, free_port
from voicecalm.testing.action_server import action_server as serve_actions
from tests.dialogue.conftest import Chat
from voicecalm.actions import ActionServerClient
from voicecalm.assistant import Assistant
from voicecalm.project import load_project
from voicecalm.tracker.events import ActionExecuted, ActionExecutionRejected, FlowCancelled
from voicecalm.tracker.stores import InMemoryTrackerStore


async def chat_with(project_dir: Path) -> Chat:
    chat = Chat(_assistant(project_dir))
    await chat.say("cancel flow")
    return chat


def _assistant(project_dir: Path) -> Assistant:
    project = load_project(project_dir)
    return Assistant(project, InMemoryTrackerStore(), actions=ActionServerClient(project.endpoints.action_endpoint, project))


def failure_of(chat: Chat) -> dict[str, Any]:
    failed = [e for e in chat.events(ActionExecuted) if "error" in e.metadata]
    assert failed, "no failed action was recorded"
    return dict(failed[0].metadata)


@pytest.fixture
def project(tmp_path: Path, action_server: str) -> Path:
    return bank_copy(tmp_path, f'action_endpoint:\n  url: "{action_server}"\n  timeout: 1\n')


async def test_actions_run_on_the_server_and_the_domain_arrives_after_449(project: Path) -> None:
    domain = project / "domain.yml"
    # A domain this server has never seen, so the first call must be answered with 449.
    domain.write_text(domain.read_text().replace("responses:\n", f"responses:\n  utter_unique_{id(project)}:\n    - text: x\n"))
    chat = await chat_with(project)
    statuses: list[int] = []

    async def record(response):
        statuses.append(response.status_code)

    chat.assistant.services.actions.client.event_hooks["response"].append(record)
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    assert chat.texts[0] == "Your balance is 120.5."
    assert statuses == [449, 200]
    statuses.clear()
    await chat.say("start flow check_balance")
    assert statuses == [200], "the server keeps the domain for its digest"
    await chat.assistant.close()


async def test_messages_from_the_server(project: Path) -> None:
    chat = await chat_with(project)
    await chat.say("start flow transfer_money", "set slot recipient Jane", "set slot amount 50")
    assert await chat.say("set slot confirmed True") == [
        "Transferring 50.0.", "utter_transfer_done", "utter_ask_continue_conversation"
    ]
    await chat.assistant.close()


@pytest.mark.parametrize(
    ("flow", "kind", "status"),
    [
        ("broken_flow", "http_error", 500),
        ("unknown_action_flow", "not_found", 404),
        ("slow_flow", "timeout", None),
    ],
)
async def test_failures_go_to_the_internal_error_pattern(project: Path, flow: str, kind: str, status: int | None) -> None:
    chat = await chat_with(project)
    assert await chat.say(f"start flow {flow}") == ["utter_internal_error_rasa", "utter_flow_cancelled_rasa"]
    assert failure_of(chat) == {"error": kind, "status": status}
    assert [e.flow_id for e in chat.events(FlowCancelled)] == [flow]
    assert await chat.say("start flow transfer_money") == ["utter_ask_recipient"], "the next turn works"
    await chat.assistant.close()


async def test_a_rejected_action_lets_the_flow_go_on(project: Path) -> None:
    chat = await chat_with(project)
    assert await chat.say("start flow refused_flow") == ["utter_thanks", "utter_ask_continue_conversation"]
    assert [e.action_name for e in chat.events(ActionExecutionRejected)] == ["action_refuse"]
    await chat.assistant.close()


@pytest.fixture(scope="module")
def tls_action_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The rasa-sdk server over HTTPS, with a certificate from a CA made for this test; yields
    the URL and the CA's PEM file."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    tls = ServerTls(certificate=folder / "server.pem", key=folder / "server.key", ca=folder / "ca.pem")
    issued.cert_chain_pems[0].write_to_path(str(tls.certificate))
    issued.private_key_pem.write_to_path(str(tls.key))
    authority.cert_pem.write_to_path(str(tls.ca))
    with serve_actions("server_actions", HERE, tls=tls) as url:
        yield url, tls.ca


async def test_a_tls_action_server_is_reached_with_the_configured_ca(tmp_path: Path, tls_action_server: tuple[str, Path]) -> None:
    url, ca = tls_action_server
    project = bank_copy(tmp_path, f'action_endpoint:\n  url: "{url}"\n  cafile: ca.pem\n')
    shutil.copy(ca, project / "ca.pem")  # `cafile` is relative to the project
    chat = await chat_with(project)
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    await chat.assistant.close()


async def test_a_tls_action_server_whose_certificate_is_not_trusted_is_not_called(
    tmp_path: Path, tls_action_server: tuple[str, Path]
) -> None:
    url, _ = tls_action_server
    chat = await chat_with(bank_copy(tmp_path, f'action_endpoint:\n  url: "{url}"\n'))
    assert await chat.say("start flow check_balance") == ["utter_internal_error_rasa", "utter_flow_cancelled_rasa"]
    assert failure_of(chat) == {"error": "connection_error", "status": None}
    await chat.assistant.close()


async def test_server_down(tmp_path: Path) -> None:
    project = bank_copy(tmp_path, f'action_endpoint:\n  url: "http://127.0.0.1:{free_port()}/webhook"\n')
    chat = await chat_with(project)
    assert await chat.say("start flow check_balance") == ["utter_internal_error_rasa", "utter_flow_cancelled_rasa"]
    assert failure_of(chat) == {"error": "connection_error", "status": None}
    await chat.assistant.close()


class WireServer:
    """A loopback HTTP server that answers the webhook with whatever a test sets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.answer: Response = JSONResponse({"events": [], "responses": []})
        app = Starlette(routes=[Route("/webhook", self.webhook, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def webhook(self, request: Request) -> Response:
        raw = await request.body()
        if request.headers.get("content-encoding") == "deflate":
            raw = zlib.decompress(raw)
        self.requests.append({"body": json.loads(raw), "headers": dict(request.headers), "query": dict(request.query_params)})
        return self.answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"


@pytest.fixture
def wire() -> Iterator[WireServer]:
    server = WireServer()
    server.thread.start()
    while not server.server.started:
        threading.Event().wait(0.02)
    yield server
    server.server.should_exit = True
    server.thread.join(timeout=5)


@pytest.mark.parametrize(
    "answer",
    [
        Response("not json", media_type="application/json"),
        JSONResponse({"events": [{"event": "teleport"}], "responses": []}),
        JSONResponse({"events": "all of them"}),
        JSONResponse(["a", "list"]),
    ],
    ids=["malformed-json", "unknown-event", "events-not-a-list", "body-not-an-object"],
)
async def test_invalid_bodies_are_failures(tmp_path: Path, wire: WireServer, answer: Response) -> None:
    wire.answer = answer
    chat = await chat_with(bank_copy(tmp_path, f'action_endpoint:\n  url: "{wire.url}"\n'))
    assert await chat.say("start flow check_balance") == ["utter_internal_error_rasa", "utter_flow_cancelled_rasa"]
    assert failure_of(chat) == {"error": "invalid_response", "status": 200}
    assert (await chat.slots())["balance"] is None, "nothing of a failed action is applied"
    await chat.assistant.close()


async def test_second_449_is_a_failure_and_nothing_is_retried_blindly(tmp_path: Path, wire: WireServer) -> None:
    wire.answer = JSONResponse({"error": "domain please", "action_name": "action_check_balance"}, status_code=449)
    chat = await chat_with(bank_copy(tmp_path, f'action_endpoint:\n  url: "{wire.url}"\n'))
    await chat.say("start flow check_balance")
    assert failure_of(chat) == {"error": "domain_not_accepted", "status": 449}
    assert ["domain" in r["body"] for r in wire.requests] == [False, True]
    wire.requests.clear()
    wire.answer = JSONResponse({"error": "boom"}, status_code=500)
    await chat.say("start flow check_balance")
    assert len(wire.requests) == 1, "a request that reached the server is never repeated"
    await chat.assistant.close()


async def test_request_shape_token_headers_auth_and_compression(
    tmp_path: Path, wire: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPRESS_ACTION_SERVER_REQUEST", "true")
    monkeypatch.setenv("VC_ACTION_TOKEN", "s3cret")
    wire.answer = JSONResponse({"events": [{"event": "slot", "name": "balance", "value": 7}], "responses": []})
    endpoints = f"""action_endpoint:
  url: "{wire.url}"
  token: "${{VC_ACTION_TOKEN}}"
  token_name: auth_token
  headers: {{X-Api-Key: abc}}
  basic_auth: {{username: bank, password: pw}}
"""
    chat = await chat_with(bank_copy(tmp_path, endpoints))
    assert await chat.say("start flow check_balance") == ["utter_balance", "utter_ask_continue_conversation"]
    request = wire.requests[0]
    assert request["query"] == {"auth_token": "s3cret"}
    assert request["headers"]["x-api-key"] == "abc"
    assert request["headers"]["authorization"].startswith("Basic ")
    assert request["headers"]["content-encoding"] == "deflate"
    body = request["body"]
    assert body["next_action"] == "action_check_balance" and body["sender_id"] == "tester"
    assert len(body["domain_digest"]) == 64 and "domain" not in body
    tracker = body["tracker"]
    assert {"slots", "latest_message", "events", "stack", "latest_action_name", "sender_id"} <= set(tracker)
    assert tracker["stack"][0]["flow_id"] == "check_balance"
    await chat.assistant.close()


async def test_concurrent_conversations_share_one_pooled_client(project: Path) -> None:
    assistant = _assistant(project)
    chats = [Chat(assistant, sender_id=f"caller-{i}") for i in range(10)]
    results = await asyncio.gather(*(chat.say("start flow check_balance") for chat in chats))
    assert all(utters == ["utter_balance", "utter_ask_continue_conversation"] for utters in results)
    await assistant.close()
