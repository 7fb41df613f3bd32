"""The Twilio channel served by a real uvicorn on 127.0.0.1, called by the fake Twilio of
`voicecalm.testing.twilio_fakes` (signed webhooks, the Media Streams WebSocket, the REST API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI

from voicecalm.channels.twilio.routes import CallStatusReport, twilio_router
from voicecalm.channels.twilio.security import StreamTokens
from voicecalm.channels.twilio.routes import CallRunner
from voicecalm.testing.twilio_fakes import FakeTwilioCall, FakeTwilioRest, serve_app
from voicecalm.voice.call import CallControl, CallInfo
from voicecalm.voice.settings import TwilioMediaStreamsSettings

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT_SID = "AC" + "1" * 32
PUBLIC_HOST = "bot.example.com"
HANDOFF = {"number": "+15550002222", "caller_id": "+15550009999", "timeout": 25}

WEBHOOK = "/webhooks/twilio_media_streams/webhook"
AFTER_STREAM = "/webhooks/twilio_media_streams/after_stream"
HANDOFF_RESULT = "/webhooks/twilio_media_streams/handoff_result"
STATUS = "/webhooks/twilio_media_streams/status"


def twilio_settings(**overrides: Any) -> TwilioMediaStreamsSettings:
    data: dict[str, Any] = {
        "server_url": PUBLIC_HOST,
        "auth_token": AUTH_TOKEN,
        "account_sid": ACCOUNT_SID,
        "handoff": HANDOFF,
        **overrides,
    }
    return TwilioMediaStreamsSettings.model_validate({k: v for k, v in data.items() if v is not None})


@dataclass
class RecordingRunner:
    """Stands in for the voice runtime where only the gate matters: records each call that got
    through and ends it at once."""

    calls: list[CallInfo] = field(default_factory=list)
    controls: list[CallControl] = field(default_factory=list)

    async def run_call(self, transport: Any, call: CallInfo, settings: Any, *, control: Any = None, **_: Any) -> None:
        self.calls.append(call)
        self.controls.append(control)


@dataclass
class TwilioServer:
    base_url: str
    statuses: list[CallStatusReport]
    rest: FakeTwilioRest | None

    def call(self, **kwargs: Any) -> FakeTwilioCall:
        return FakeTwilioCall(self.base_url, public_host=PUBLIC_HOST, auth_token=AUTH_TOKEN, **kwargs)


@asynccontextmanager
async def twilio_server(
    runner: CallRunner,
    settings: TwilioMediaStreamsSettings | None = None,
    *,
    tokens: StreamTokens | None = None,
    with_rest: bool = True,
) -> AsyncIterator[TwilioServer]:
    """The channel's router on a real server; the fake REST API when the settings name an account."""
    settings = settings or twilio_settings()
    statuses: list[CallStatusReport] = []

    async def record(report: CallStatusReport) -> None:
        statuses.append(report)

    rest = FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) if with_rest else None
    async with rest.running() if rest else _nothing():
        app = FastAPI()
        app.include_router(
            twilio_router(
                lambda: runner,
                settings,
                on_call_status=record,
                rest_api_base_url=rest.base_url if rest else None,
                tokens=tokens,
            )
        )
        async with serve_app(app) as base_url:
            yield TwilioServer(base_url, statuses, rest)


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield None


@pytest.fixture
def runner() -> RecordingRunner:
    return RecordingRunner()
