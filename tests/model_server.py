"""A loopback server speaking the OpenAI chat-completions wire protocol, playing a remote model
(paid APIs cannot be reached here), with the `model` and `fake_model` fixtures built on it."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from voicecalm.testing.action_server import free_port
from voicecalm.understanding.llm import load_litellm


class ModelServer:
    """Answers /v1/chat/completions with the next scripted completion (or, when `respond` is set,
    with what it returns for the prompt); records every prompt."""

    def __init__(self) -> None:
        self.port = free_port()
        self.completions: list[str] = []
        self.prompts: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.delay = 0.0
        self.status = 200
        self.respond: Callable[[str], str] | None = None
        # Streamed replies come word by word, `piece_delay` apart; after `stall_after` words the
        # model falls silent for good (a stream that dies half-way).
        self.piece_delay = 0.0
        self.stall_after: int | None = None
        self.streams_finished: list[float] = []  # time.monotonic() of each stream's last word
        self.streams_written: list[str] = []  # each stream written to its end
        self.streams_cut: list[str] = []  # what was written of each stream the client closed early
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        self.prompts.append(body["messages"][-1]["content"])
        # The answer is chosen when the request arrives: a late answer (`delay`) that its client
        # stopped waiting for must not take a completion scripted for a later request.
        status, content = self.status, ""
        if status == 200 and self.respond is not None:
            content = self.respond(self.prompts[-1])
        elif status == 200 and self.completions:
            content = self.completions.pop(0)
        if self.delay:
            await asyncio.sleep(self.delay)
        if status != 200:
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=status)
        if body.get("stream"):
            return StreamingResponse(self.pieces(body["model"], content), media_type="text/event-stream")
        return JSONResponse({
            "id": "cmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })

    async def pieces(self, model: str, content: str) -> AsyncIterator[str]:
        def event(delta: dict[str, str], finish: str | None = None) -> str:
            chunk = {
                "id": "cmpl-1", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n"

        written: list[str] = []
        try:
            yield event({"role": "assistant", "content": ""})
            for number, word in enumerate(re.findall(r"\S+\s*", content)):
                if self.stall_after is not None and number >= self.stall_after:
                    await asyncio.sleep(3600)
                await asyncio.sleep(self.piece_delay)
                yield event({"content": word})
                written.append(word)
            self.streams_finished.append(time.monotonic())
            self.streams_written.append(content)
            yield event({}, "stop")
            yield "data: [DONE]\n\n"
        except BaseException:
            self.streams_cut.append("".join(written))
            raise


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    load_litellm()  # imported once here, so the tests' reply timeouts time replies, not the import
    server = ModelServer()
    server.thread.start()
    while not server.server.started:
        time.sleep(0.02)
    yield server
    server.server.should_exit = True
    server.thread.join(timeout=5)


@pytest.fixture
def fake_model(model: ModelServer) -> ModelServer:
    model.completions.clear()
    model.prompts.clear()
    model.bodies.clear()
    model.delay, model.status, model.respond = 0.0, 200, None
    model.piece_delay, model.stall_after = 0.0, None
    return model
