"""The Twilio Media Streams channel's routes (telephony.md §1.1), mounted on the `voicecalm run`
server: the voice webhook, the media WebSocket, the TwiML callbacks and the status callback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.datastructures import ImmutableMultiDict

from voicecalm.channels.twilio import twiml
from voicecalm.channels.twilio.control import PendingHandoffs, TwilioCallControl, TwilioRest
from voicecalm.channels.twilio.media import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    TWILIO_RATE,
    TwilioMediaTransport,
    close_websocket,
)
from voicecalm.channels.twilio.paths import (
    AFTER_STREAM_PATH,
    CHANNEL_NAME,
    HANDOFF_RESULT_PATH,
    PREFIX,
    STATUS_PATH,
    WEBHOOK_PATH,
    WEBSOCKET_PATH,
)
from voicecalm.channels.twilio.messages import BadFrame, Connected, FrameTooLarge, Start, parse_frame
from voicecalm.channels.twilio.security import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    StreamGrant,
    StreamTokens,
    TokenRefused,
    TwilioSignatures,
    basic_auth_ok,
)
from voicecalm.voice.call import CallControl, CallInfo
from voicecalm.voice.delivery import Playback
from voicecalm.voice.settings import TwilioMediaStreamsSettings

logger = logging.getLogger(__name__)

START_TIMEOUT_SECS = 5.0
MAX_FORM_BYTES = 64 * 1024
DIAL_CONNECTED = frozenset({"completed", "answered"})  # the human took the call: we are done


class CallRunner(Protocol):
    """What runs a call's pipeline: `voicecalm.voice.runtime.VoiceRuntime`."""

    async def run_call(
        self,
        transport: Any,
        call: CallInfo,
        settings: Any,
        *,
        control: CallControl | None = None,
        audio_out_sample_rate: int,
        playback: Playback | None = None,
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class CallStatusReport:
    """One status callback: the call reached `status` (completed, busy, failed, no-answer, ...)."""

    call_sid: str
    status: str
    duration_secs: int | None = None


CallStatusSink = Callable[[CallStatusReport], Awaitable[None]]


class TwilioForm(BaseModel):
    """The parameters of Twilio's voice requests voicecalm reads (it signs them all)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    CallSid: str
    AccountSid: str | None = None
    From: str | None = None
    To: str | None = None
    Direction: str | None = None
    CallStatus: str | None = None
    CallDuration: int | None = None
    DialCallStatus: str | None = None

    def grant(self, handoff_status: str | None = None) -> StreamGrant:
        direction = "outbound" if (self.Direction or "").startswith("outbound") else "inbound"
        return StreamGrant(
            call_sid=self.CallSid,
            user_phone=self.From or None,
            bot_phone=self.To or None,
            direction=direction,
            handoff_status=handoff_status,
        )


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def twilio_router(
    runtime_provider: Callable[[], CallRunner],
    settings: TwilioMediaStreamsSettings,
    *,
    on_call_status: CallStatusSink | None = None,
    rest_api_base_url: str | None = None,
    tokens: StreamTokens | None = None,
) -> APIRouter:
    """The channel's routes. `runtime_provider` gives the process's voice runtime when a call
    starts (it may be built after the router); `on_call_status` records status callbacks (call
    end) on the tracker; `rest_api_base_url` points the REST client at a fake Twilio."""
    auth_token = settings.auth_token.get_secret_value()
    signatures = TwilioSignatures(auth_token, settings.server_url)
    tokens = tokens or StreamTokens(auth_token)
    rest = TwilioRest(settings.account_sid, auth_token, api_base_url=rest_api_base_url) if settings.account_sid else None
    pending = PendingHandoffs()
    stream_url = signatures.url(WEBSOCKET_PATH, "wss")
    after_stream_url = signatures.url(AFTER_STREAM_PATH)
    handoff_result_url = signatures.url(HANDOFF_RESULT_PATH)
    basic_auth = (
        (settings.username, settings.password.get_secret_value())
        if settings.username is not None and settings.password is not None
        else None
    )
    router = APIRouter(prefix=PREFIX, tags=[CHANNEL_NAME])

    async def signed_form(request: Request, path: str) -> TwilioForm:
        """The request's form, if Twilio signed it for `path`; else `_Refused`."""
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(Response(status_code=413))
        form = ImmutableMultiDict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signatures.valid_post(path, form, signature, request.headers.get(SIGNATURE_SETTINGS_HEADER)):
            logger.warning("refused a request to %s: %s signature", path, "invalid" if signature else "no")
            raise _Refused(Response(status_code=403))
        try:
            return TwilioForm.model_validate(dict(form))
        except ValidationError:
            raise _Refused(Response("expected Twilio's call parameters (CallSid, ...)", status_code=400)) from None

    def connect_stream(form: TwilioForm, handoff_status: str | None = None) -> Response:
        grant = form.grant(handoff_status)
        document = twiml.connect_stream(
            stream_url=stream_url, after_stream_url=after_stream_url, token=tokens.issue(grant), grant=grant
        )
        return Response(document, media_type=twiml.CONTENT_TYPE)

    @router.get("/")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/webhook", response_model=None)
    async def webhook(request: Request) -> Response:
        if basic_auth is not None and not basic_auth_ok(request.headers.get("authorization"), *basic_auth):
            # Twilio sends the credentials of the webhook URL only when challenged.
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="voicecalm"'})
        try:
            form = await signed_form(request, WEBHOOK_PATH)
        except _Refused as refused:
            return refused.response
        logger.info("incoming call %s: answering with a media stream", form.CallSid)
        return connect_stream(form)

    @router.post("/after_stream", response_model=None)
    async def after_stream(request: Request) -> Response:
        try:
            form = await signed_form(request, AFTER_STREAM_PATH)
        except _Refused as refused:
            return refused.response
        document = pending.take(form.CallSid)
        if document is not None:
            logger.info("call %s: stream closed for a transfer, dialling the configured target", form.CallSid)
            return Response(document, media_type=twiml.CONTENT_TYPE)
        return Response(twiml.hangup(), media_type=twiml.CONTENT_TYPE)

    @router.post("/handoff_result", response_model=None)
    async def handoff_result(request: Request) -> Response:
        try:
            form = await signed_form(request, HANDOFF_RESULT_PATH)
        except _Refused as refused:
            return refused.response
        outcome = form.DialCallStatus or "failed"
        logger.info("call %s: transfer ended with %s", form.CallSid, outcome)
        if outcome in DIAL_CONNECTED:
            return Response(twiml.hangup(), media_type=twiml.CONTENT_TYPE)
        # Nobody took the call: the bot comes back, and the new session knows why.
        return connect_stream(form, handoff_status=outcome)

    @router.post("/status", response_model=None)
    async def status(request: Request) -> Response:
        try:
            form = await signed_form(request, STATUS_PATH)
        except _Refused as refused:
            return refused.response
        report = CallStatusReport(form.CallSid, form.CallStatus or "unknown", form.CallDuration)
        logger.info("call %s: status %s", report.call_sid, report.status)
        if on_call_status is not None:
            await on_call_status(report)
        return Response(status_code=204)

    @router.websocket("/websocket")
    async def media_stream(websocket: WebSocket) -> None:
        scheme = signatures.websocket_scheme(
            WEBSOCKET_PATH, websocket.headers.get(SIGNATURE_HEADER), websocket.headers.get(SIGNATURE_SETTINGS_HEADER)
        )
        if scheme is None:
            logger.warning("refused a media stream upgrade without a valid signature")
            await websocket.close(code=CLOSE_POLICY)  # before accept: the upgrade is answered 403
            return
        await websocket.accept()
        try:
            start = await asyncio.wait_for(_await_start(websocket), START_TIMEOUT_SECS)
            grant = tokens.redeem(start.start.customParameters.get("token"), start.start.customParameters, start.start.callSid)
        except WebSocketDisconnect:
            return
        except TimeoutError:
            logger.warning("closing a media stream: no start message within %.0f s", START_TIMEOUT_SECS)
            await close_websocket(websocket, CLOSE_POLICY, "no start")
            return
        except FrameTooLarge as error:
            logger.warning("closing a media stream: %s", error)
            await close_websocket(websocket, CLOSE_TOO_BIG, "frame too large")
            return
        except (BadFrame, TokenRefused) as error:
            logger.warning("closing a media stream before its start: %s", error)
            await close_websocket(websocket, CLOSE_POLICY, "refused")
            return
        logger.info(
            "media stream %s of call %s opened (upgrade signed in its %s:// form)",
            start.streamSid,
            grant.call_sid,
            scheme,
        )
        await run_stream(websocket, start, grant)

    async def run_stream(websocket: WebSocket, start: Start, grant: StreamGrant) -> None:
        playback = Playback(confirmed_by_channel=True)
        transport = TwilioMediaTransport(websocket, stream_sid=start.streamSid, on_heard=playback.confirm)
        control = TwilioCallControl(
            grant.call_sid,
            marks=transport.marks,
            close_stream=transport.close,
            handoff=settings.handoff,
            handoff_result_url=handoff_result_url,
            rest=rest,
            pending=pending,
        )
        call = CallInfo(
            call_id=grant.call_sid,
            channel=CHANNEL_NAME,
            user_phone=grant.user_phone,
            bot_phone=grant.bot_phone,
            direction=grant.direction,
            parameters=_call_parameters(grant),
        )
        try:
            await runtime_provider().run_call(
                transport, call, settings, control=control, audio_out_sample_rate=TWILIO_RATE, playback=playback
            )
        except Exception:
            logger.exception("the pipeline of call %s failed", grant.call_sid)
        finally:
            transport.marks.stream_ended()
            await close_websocket(websocket, 1000)

    return router


async def _await_start(websocket: WebSocket) -> Start:
    """Read frames until `start` (`connected` comes first; unknown events are skipped)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        parsed = parse_frame(data)
        if parsed is None or isinstance(parsed, Connected):
            continue
        if not isinstance(parsed, Start):
            raise BadFrame(f"{parsed.event!r} message before start")
        media_format = parsed.start.mediaFormat
        if (media_format.encoding, media_format.sampleRate, media_format.channels) != ("audio/x-mulaw", TWILIO_RATE, 1):
            raise BadFrame("media format is not μ-law 8 kHz mono")
        return parsed


def _call_parameters(grant: StreamGrant) -> Mapping[str, str]:
    return {"handoff_status": grant.handoff_status} if grant.handoff_status else {}
