"""The one ASGI app every channel mounts into: health, version, tracker, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from voicecalm import __version__, logs, metrics
from voicecalm.assistant import Assistant, MessageSink, TurnResult, UserTurn
from voicecalm.channels import ShuttingDown, rest
from voicecalm.channels.rest import error_response
from voicecalm.tracker.conversation import Conversation

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0  # seconds a shutdown waits for turns in flight before cancelling them
PROJECT_ENV = "VOICECALM_PROJECT"  # the project folder each worker of `voicecalm run --workers` serves
LOG_LEVEL_ENV = "VOICECALM_LOG_LEVEL"


class InFlightTurns:
    """Runs each turn as a task of its own and keeps it until done, so a shutdown can wait for
    every turn in flight before the tracker store closes (the `TurnHandler` of the channels)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.draining = False
        self._tasks: set[asyncio.Task[TurnResult]] = set()

    def start(self, sender_id: str, turn: UserTurn, on_message: MessageSink | None = None) -> asyncio.Future[TurnResult]:
        if self.draining:
            raise ShuttingDown()
        task = asyncio.create_task(self.assistant.handle(sender_id, turn, on_message))
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, sender_id))
        # Whoever awaits the turn may be cancelled (client gone); the turn itself goes on.
        return asyncio.shield(task)

    def _finished(self, sender_id: str, task: asyncio.Task[TurnResult]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("turn of %s failed and was not stored", sender_id, exc_info=error)

    async def drain(self, timeout: float) -> None:
        """Take no new turns; wait up to `timeout` seconds for the running ones, cancel the rest."""
        self.draining = True
        if not self._tasks:
            return
        logger.info("waiting for %d turn(s) in flight", len(self._tasks))
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        if late:
            logger.warning("cancelling %d turn(s) still running after %.0f s", len(late), timeout)
            for task in late:
                task.cancel()
            await asyncio.wait(late)


class _RejectWhileDraining:
    """Requests that still arrive once shutdown began get 503, so clients retry elsewhere."""

    def __init__(self, app: ASGIApp, turns: InFlightTurns) -> None:
        self.app = app
        self.turns = turns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.turns.draining:
            await _shutting_down_response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _shutting_down_response() -> JSONResponse:
    return error_response(503, "ShuttingDown", "the server is shutting down")


def tracker_json(conversation: Conversation) -> dict[str, Any]:
    """A conversation as Rasa's tracker endpoint shows it."""
    latest = conversation.latest_message
    latest_message = None
    if latest is not None:
        latest_message = {
            **latest.parse_data,
            "text": latest.text,
            "message_id": latest.message_id,
            "metadata": dict(latest.metadata),
        }
    return {
        "sender_id": conversation.sender_id,
        "slots": conversation.slots,
        "stack": conversation.stack,
        "latest_message": latest_message,
        "events": conversation.event_dicts(),
    }


def create_app(assistant: Assistant, *, drain_timeout: float = DRAIN_TIMEOUT) -> FastAPI:
    """The HTTP app serving `assistant` on every channel; closing it closes the assistant."""
    turns = InFlightTurns(assistant)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model warms up while the server already answers; early turns simply wait for it.
        warming = asyncio.create_task(assistant.warm_up())
        try:
            yield
        finally:
            warming.cancel()
            await turns.drain(drain_timeout)
            await assistant.close()
            metrics.process_exiting()

    app = FastAPI(title="voicecalm", version=__version__, lifespan=lifespan)
    app.state.assistant = assistant
    app.state.turns = turns
    app.add_middleware(_RejectWhileDraining, turns=turns)

    async def shutting_down(request: Request, error: Exception) -> JSONResponse:
        return _shutting_down_response()

    app.add_exception_handler(ShuttingDown, shutting_down)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    @app.get("/conversations/{sender_id}/tracker")
    async def tracker(sender_id: str) -> JSONResponse:
        return JSONResponse(tracker_json(await assistant.conversation(sender_id)))

    app.include_router(rest.create_router(turns.start))
    return app


def app_from_environment() -> FastAPI:
    """App factory for uvicorn worker processes (`voicecalm run --workers N`): each worker builds
    its own assistant from the project folder named by $VOICECALM_PROJECT; the workers share
    conversations through the tracker and lock stores of the project's endpoints.yml."""
    path = os.environ.get(PROJECT_ENV)
    if not path:
        raise RuntimeError(f"set {PROJECT_ENV} to the project folder this worker serves")
    level = os.environ.get(LOG_LEVEL_ENV)
    if level:
        logs.configure(level, os.environ.get(logs.FORMAT_ENV) or "text", text_format=logs.WORKER_TEXT_FORMAT)
    return create_app(Assistant.from_path(path))
