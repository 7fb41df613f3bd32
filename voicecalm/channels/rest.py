"""Rasa-compatible REST channel: `POST /webhooks/rest/webhook` (testing.md §4)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from voicecalm import __version__
from voicecalm.assistant import TurnResult, UserTurn
from voicecalm.channels import ShuttingDown, TurnHandler
from voicecalm.nlg import BotMessage

logger = logging.getLogger(__name__)

CHANNEL_NAME = "rest"
# The stream is newline-delimited JSON, but Rasa labels it this way and its clients expect it.
STREAM_MEDIA_TYPE = "text/event-stream"


class RestMessage(BaseModel):
    # Some Rasa clients send numeric sender ids.
    model_config = ConfigDict(coerce_numbers_to_str=True)

    sender: str
    message: str
    metadata: dict[str, Any] | None = None
    input_channel: str | None = None


def error_response(code: int, reason: str, message: str, details: Any = None) -> JSONResponse:
    """An error answer shaped like the Rasa HTTP API's."""
    body = {
        "version": __version__,
        "status": "failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }
    return JSONResponse(body, status_code=code)


def message_json(recipient_id: str, message: BotMessage) -> dict[str, Any]:
    """A bot message as Rasa's REST channel sends it; absent parts are left out."""
    # Rasa sends quick replies as buttons.
    buttons = [dict(button) for button in message.buttons] or message.quick_replies
    data = {
        "recipient_id": recipient_id,
        "text": message.text,
        "buttons": buttons or None,
        "image": message.image,
        "custom": message.custom,
        "attachment": message.attachment,
    }
    return {key: value for key, value in data.items() if value is not None}


_BODY_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": RestMessage.model_json_schema()}}}
}


def create_router(handle: TurnHandler) -> APIRouter:
    router = APIRouter(prefix="/webhooks/rest", tags=["rest"])

    @router.get("/")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    # The body is parsed by hand: Rasa clients (and `curl -d`) often send JSON without a JSON
    # content type, and a bad body is a 400 in Rasa, not FastAPI's 422.
    @router.post("/webhook", response_model=None, openapi_extra=_BODY_SCHEMA)
    async def webhook(request: Request) -> Response:
        try:
            body = RestMessage.model_validate_json(await request.body())
        except ValidationError as error:
            problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
            message = "expected a JSON object with string fields 'sender' and 'message'"
            return error_response(400, "BadRequest", message, problems)
        turn = UserTurn(
            text=body.message, metadata=body.metadata or {}, input_channel=body.input_channel or CHANNEL_NAME
        )
        logger.debug("rest message from %s: %r", body.sender, body.message)
        if request.query_params.get("stream", "false").lower() == "true":
            return _streamed(handle, body.sender, turn)
        try:
            result = await handle(body.sender, turn, None)
        except ShuttingDown:
            raise
        except Exception:  # logged where the turn ran
            return error_response(500, "TurnFailed", "the turn could not be completed or stored")
        return JSONResponse([message_json(body.sender, message) for message in result.messages])

    return router


def _streamed(handle: TurnHandler, sender: str, turn: UserTurn) -> StreamingResponse:
    """One JSON line per bot message, written as the turn produces it."""
    queue: asyncio.Queue[BotMessage | None] = asyncio.Queue()

    def finished(pending: asyncio.Future[TurnResult]) -> None:
        # A failed turn was logged where it ran; the stream just ends (the 200 is long sent).
        if not pending.cancelled():
            pending.exception()
        queue.put_nowait(None)

    handle(sender, turn, queue.put_nowait).add_done_callback(finished)

    async def lines() -> AsyncIterator[str]:
        while (message := await queue.get()) is not None:
            yield json.dumps(message_json(sender, message)) + "\n"

    return StreamingResponse(lines(), media_type=STREAM_MEDIA_TYPE)
