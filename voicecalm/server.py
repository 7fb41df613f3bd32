"""The one ASGI app every channel mounts into: health, version, tracker, graceful shutdown, and
the voice channels credentials.yml enables (Twilio Media Streams, the browser page, a SIP trunk)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from voicecalm import __version__, logs, metrics
from voicecalm.assistant import Assistant, MessageSink, TurnResult, UserTurn
from voicecalm.channels import ShuttingDown, rest
from voicecalm.channels.rest import error_response
from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import CallStatusChanged
from voicecalm.voice.settings import (
    BrowserAudioSettings,
    SipSettings,
    TwilioMediaStreamsSettings,
    VoiceChannelSettings,
    VoiceSettingsError,
    channel_settings,
    require_speech_services,
)

if TYPE_CHECKING:  # the voice stack (pipecat, models) is imported only when a voice channel is on
    from voicecalm.channels.twilio.routes import CallStatusReport
    from voicecalm.voice.runtime import VoiceRuntime

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


@dataclass(frozen=True, slots=True)
class VoiceChannels:
    """The voice channels a project's credentials.yml enables, with their checked settings."""

    twilio: TwilioMediaStreamsSettings | None = None
    browser: BrowserAudioSettings | None = None
    sip: SipSettings | None = None

    @classmethod
    def of(cls, project: Project) -> "VoiceChannels":
        """Raises `VoiceSettingsError`, one `credentials.yml: ...` line per problem, when an enabled
        channel's settings are wrong or its speech services cannot run here. A channel that is
        not enabled is not looked at: its credentials may well be missing."""
        found: dict[str, Any] = {}
        problems: list[str] = []
        for name in ("twilio_media_streams", "browser_audio", "sip"):
            try:
                found[name] = settings = channel_settings(project, name)
                if settings is not None:
                    require_speech_services(settings)
            except VoiceSettingsError as error:
                lines = str(error).splitlines()
                problems += [line if line.startswith("credentials.yml") else f"credentials.yml: {name}: {line}" for line in lines]
        if problems:
            raise VoiceSettingsError("\n".join(problems))
        return cls(found["twilio_media_streams"], found["browser_audio"], found["sip"])

    @property
    def enabled(self) -> list[VoiceChannelSettings]:
        return [settings for settings in (self.twilio, self.browser, self.sip) if settings is not None]


def create_app(
    assistant: Assistant, *, drain_timeout: float = DRAIN_TIMEOUT, voice: VoiceChannels | None = None
) -> FastAPI:
    """The HTTP app serving `assistant` on every channel; closing it closes the assistant.
    `voice` defaults to the channels of the project's credentials.yml (`VoiceChannels.of`, whose
    `VoiceSettingsError` this raises)."""
    turns = InFlightTurns(assistant)
    voice = voice if voice is not None else VoiceChannels.of(assistant.project)
    runtime = _voice_runtime(assistant) if voice.enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warming = None
        sip = None
        try:
            try:
                if runtime is None:
                    # The model warms up while the server already answers; early turns simply wait for it.
                    warming = asyncio.create_task(assistant.warm_up())
                else:
                    # A caller must not wait for models: the server listens once they are loaded.
                    for settings in voice.enabled:
                        await runtime.warm_up(settings)
                if voice.sip is not None and runtime is not None:
                    from voicecalm.channels.sip import SipServer

                    sip = SipServer(voice.sip, runtime)
                    await sip.start()
            except BaseException:
                app.state.start_failed = True  # uvicorn logs why, then returns as if all went well
                raise
            yield
        finally:
            if sip is not None:
                await sip.stop(drain_timeout=drain_timeout)
            if warming is not None:
                warming.cancel()
            await turns.drain(drain_timeout)
            if runtime is not None:
                await runtime.close()
            await assistant.close()
            metrics.process_exiting()

    app = FastAPI(title="voicecalm", version=__version__, lifespan=lifespan)
    app.state.assistant = assistant
    app.state.turns = turns
    app.state.voice_runtime = runtime
    app.state.start_failed = False
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
    if runtime is not None:
        _mount_voice_channels(app, runtime, voice)
    return app


def _voice_runtime(assistant: Assistant) -> VoiceRuntime:
    from voicecalm.voice.runtime import VoiceRuntime

    return VoiceRuntime(assistant)


def _mount_voice_channels(app: FastAPI, runtime: VoiceRuntime, voice: VoiceChannels) -> None:
    """The Twilio and browser routes; every call runs on the one runtime, whose assistant is the
    REST channel's, so that one conversation can go on across channels."""
    if voice.twilio is not None:
        from voicecalm.channels.twilio.routes import twilio_router

        app.include_router(twilio_router(lambda: runtime, voice.twilio, on_call_status=call_status_recorder(runtime.assistant)))
    if voice.browser is not None:
        from voicecalm.channels.webrtc import webrtc_router

        # The router's own lifespan (it hangs up the browser calls at shutdown) joins the app's.
        app.include_router(webrtc_router(lambda: runtime, voice.browser))


def call_status_recorder(assistant: Assistant) -> Callable[[CallStatusReport], Awaitable[None]]:
    """Twilio's status callback as a `call_status` event on the call's tracker (telephony.md §1.1)."""

    async def record(report: CallStatusReport) -> None:
        # Twilio reports every call of the number, also those that never reached a stream (busy,
        # refused, another app's): only a call this assistant talked to gets the event.
        if not await assistant.store.events(report.call_sid):
            logger.info("status %s of call %s: no conversation, not recorded", report.status, report.call_sid)
            return
        metadata: dict[str, Any] = {"channel": "twilio_media_streams"}
        if report.duration_secs is not None:
            metadata["duration_secs"] = report.duration_secs
        await assistant.record(report.call_sid, [CallStatusChanged(status=report.status, metadata=metadata)])

    return record


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
