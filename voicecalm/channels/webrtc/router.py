"""The browser channel (telephony.md §3): the demo page at `/` and WebRTC signalling at
`/api/offer`; each peer connection is one call through the voice pipeline, on pipecat's
SmallWebRTC transport (aiortc)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import ValidationError

from voicecalm.channels.webrtc.messages import Answer, DtmfMessage, IcePatch, Offer, StateMessage, state_message
from voicecalm.channels.webrtc.publisher import BrowserStatePublisher
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallInfo
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import BrowserAudioSettings

logger = logging.getLogger(__name__)

CHANNEL = "browser_audio"
PIPELINE_SAMPLE_RATE = 16000  # what every transport hands the pipeline (voice.md §8)
OPUS_SAMPLE_RATE = 48000  # the browser's Opus runs at 48 kHz: bot audio is made at that rate
CALLS_END_TIMEOUT = 15.0  # seconds a shutdown waits for hung-up calls (pipecat gives up a stuck audio write after 10)
STATIC = Path(__file__).parent / "static"
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}

RuntimeProvider = Callable[[], VoiceRuntime]


class BrowserCalls:
    """The running calls of one server: a pipeline per peer connection, ended at shutdown."""

    def __init__(self, settings: BrowserAudioSettings) -> None:
        self.settings = settings
        self.signalling = pc.SmallWebRTCRequestHandler()
        self._calls: set[asyncio.Task[Any]] = set()

    async def start(self, runtime: VoiceRuntime, connection: pc.SmallWebRTCConnection) -> None:
        """Run a call on a new peer connection (its pc_id is the sender id) until it hangs up."""
        transport = pc.SmallWebRTCTransport(
            connection,
            pc.TransportParams(
                audio_in_enabled=True,
                audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
                audio_out_enabled=True,
                audio_out_sample_rate=OPUS_SAMPLE_RATE,
            ),
        )

        @transport.event_handler("on_app_message")
        async def keypad(transport: pc.SmallWebRTCTransport, message: Any, sender: str) -> None:
            try:
                dtmf = DtmfMessage.model_validate(message)
            except ValidationError:
                logger.debug("ignoring data-channel message %r from %s", message, sender)
                return
            await transport.input().queue_frame(pc.InputDTMFFrame(button=pc.KeypadEntry(dtmf.digit)))

        call_id = connection.pc_id
        publisher = BrowserStatePublisher(connection.send_app_message, lambda: runtime.assistant.conversation(call_id))
        call = runtime.run_call(
            transport,
            CallInfo(call_id=call_id, channel=CHANNEL),
            self.settings,
            audio_out_sample_rate=OPUS_SAMPLE_RATE,
            observers=[publisher],
        )
        task = asyncio.create_task(call, name=f"browser call {call_id}")
        self._calls.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._calls.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("%s failed", task.get_name(), exc_info=error)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        yield
        # Hanging up every peer lets each pipeline end its call as if the caller had left.
        await self.signalling.close()
        if self._calls:
            _, late = await asyncio.wait(set(self._calls), timeout=CALLS_END_TIMEOUT)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)


def webrtc_router(runtime_provider: RuntimeProvider, settings: BrowserAudioSettings) -> APIRouter:
    """The demo page and signalling routes, for `app.include_router`. `runtime_provider` gives
    the process's `VoiceRuntime` when a call starts; its assistant must be the one the server's
    REST channel uses, so that typed and spoken turns continue one conversation."""
    calls = BrowserCalls(settings)
    router = APIRouter(tags=[CHANNEL], lifespan=calls.lifespan)

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/webrtc/{name}", include_in_schema=False)
    async def page_file(name: str) -> FileResponse:
        if name not in PAGE_FILES:
            raise HTTPException(404)
        return FileResponse(STATIC / name, media_type=PAGE_FILES[name])

    @router.post("/api/offer")
    async def offer(body: Offer) -> Answer:
        runtime = runtime_provider()

        async def start_call(connection: pc.SmallWebRTCConnection) -> None:
            await calls.start(runtime, connection)

        pipecat_request = pc.SmallWebRTCRequest(
            sdp=body.sdp, type=body.type, pc_id=body.pc_id, restart_pc=body.restart_pc, request_data=body.request_data
        )
        answer = await calls.signalling.handle_web_request(pipecat_request, start_call)
        return Answer.model_validate(answer)

    @router.patch("/api/offer")
    async def trickle_ice(body: IcePatch) -> dict[str, str]:
        candidates = [pc.IceCandidate(c.candidate, c.sdp_mid, c.sdp_mline_index) for c in body.candidates]
        await calls.signalling.handle_patch_request(pc.SmallWebRTCPatchRequest(pc_id=body.pc_id, candidates=candidates))
        return {"status": "success"}

    @router.get("/api/state/{sender_id}")
    async def conversation_state(sender_id: str) -> StateMessage:
        """What the page shows after a typed turn (voice turns push the same over the data channel)."""
        return state_message(await runtime_provider().assistant.conversation(sender_id))

    return router
