"""The media half of a Twilio call (telephony.md §1.3–1.4): pipecat's FastAPI websocket transport
with its Twilio serializer (μ-law 8 kHz on the wire, 16 kHz in the pipeline), plus what pipecat
leaves out: every frame validated, a `mark` after each bot message, its echo taken as "heard",
nothing stale written after a `clear`, and output paced to real time with a small lead."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicecalm.channels.twilio.messages import (
    BadFrame,
    Connected,
    Dtmf,
    FrameTooLarge,
    Mark,
    Media,
    Start,
    Stop,
    mark_message,
    parse_frame,
)
from voicecalm.voice import pipecat_api as pc

logger = logging.getLogger(__name__)

TWILIO_RATE = 8000
PIPELINE_RATE = 16_000
# How far our audio may run ahead of the caller's ear: slack for network and scheduling jitter
# (pipecat's websocket output alone keeps none), small enough that a barge-in finds little queued.
PLAYOUT_LEAD_SECS = 0.2
CLOSE_POLICY = 1008  # RFC 6455: policy violation
CLOSE_TOO_BIG = 1009

OnHeard = Callable[[str], None]


class MarkLedger:
    """The marks sent on one stream and their echoes. Twilio echoes a mark once the audio before
    it has played, and echoes every pending mark at once after a `clear`: so an echo counts as
    "heard" only for a mark that was still pending when it came, never for one a `clear` cut."""

    def __init__(self, on_heard: OnHeard) -> None:
        self._on_heard = on_heard
        self._pending: list[str] = []
        self._cut: Counter[str] = Counter()  # cleared marks whose (meaningless) echo is still due
        self._all_echoed = asyncio.Event()
        self._all_echoed.set()

    def sent(self, name: str) -> None:
        self._pending.append(name)
        self._all_echoed.clear()

    def cleared(self) -> None:
        """A `clear` goes out now: Twilio drops its buffer; nothing pending will play."""
        self._cut.update(self._pending)
        self._pending.clear()
        self._all_echoed.set()

    def echoed(self, name: str) -> None:
        if name in self._pending:
            self._pending.remove(name)
            if not self._pending:
                self._all_echoed.set()
            self._on_heard(name)
        elif self._cut[name] > 0:
            self._cut[name] -= 1
        else:
            logger.info("ignoring the echo of a mark that was never sent")

    def stream_ended(self) -> None:
        """No echo will come any more: release whoever waits for one."""
        self._pending.clear()
        self._all_echoed.set()

    @property
    def pending(self) -> list[str]:
        return list(self._pending)

    async def wait_all_echoed(self, timeout: float) -> bool:
        """Wait until Twilio has played everything sent (the bot hangs up or transfers after it)."""
        try:
            await asyncio.wait_for(self._all_echoed.wait(), timeout)
        except TimeoutError:
            return False
        return True


class PlayoutClock:
    """Holds each chunk back until the caller's playback is within `lead` seconds of it."""

    def __init__(self, lead: float) -> None:
        self._lead = lead
        self._played_until = 0.0  # monotonic time at which the audio sent so far ends playing

    async def sent(self, seconds: float) -> None:
        now = time.monotonic()
        self._played_until = max(self._played_until, now) + seconds
        ahead = self._played_until - now - self._lead
        if ahead > 0:
            await asyncio.sleep(ahead)

    def reset(self) -> None:
        """Twilio's buffer was cleared: the next chunk plays at once."""
        self._played_until = 0.0


ViolationHandler = Callable[[int, str], Awaitable[None]]


class MediaStreamSerializer(pc.TwilioFrameSerializer):
    """pipecat's Twilio serializer behind a validating front: each frame is checked with the
    pydantic models of `messages`; `mark` echoes go to the ledger; an oversized frame closes the
    socket; malformed and unknown frames are logged and dropped."""

    def __init__(self, stream_sid: str, marks: MarkLedger, on_violation: ViolationHandler) -> None:
        # auto_hang_up off: hang-up is ours (TwilioCallControl), after the last mark.
        params = pc.TwilioFrameSerializer.InputParams(
            auto_hang_up=False, twilio_sample_rate=TWILIO_RATE, sample_rate=PIPELINE_RATE
        )
        super().__init__(stream_sid, params=params)
        self.stream_sid = stream_sid
        self._marks = marks
        self._on_violation = on_violation
        self._last_sequence: int | None = None

    async def serialize(self, frame: pc.Frame) -> str | bytes | None:
        if isinstance(frame, pc.InterruptionFrame):
            # Noted as the `clear` is written: a mark sent before it is cut, one sent after is not.
            self._marks.cleared()
        return await super().serialize(frame)

    async def deserialize(self, data: str | bytes) -> pc.Frame | None:
        try:
            message = parse_frame(data)
        except FrameTooLarge as error:
            logger.warning("closing the media stream: %s", error)
            await self._on_violation(CLOSE_TOO_BIG, "frame too large")
            return None
        except BadFrame as error:
            logger.warning("ignoring a bad Media Streams frame: %s", error)
            return None
        if message is None or isinstance(message, Connected):
            return None
        if message.streamSid != self.stream_sid:
            logger.warning("ignoring a %s message for another stream", message.event)
            return None
        self._check_sequence(message.sequenceNumber)
        match message:
            case Media() if message.media.track != "inbound":
                return None  # <Connect><Stream> carries the caller only; anything else is not for ASR
            case Media() | Dtmf():
                return await super().deserialize(data)
            case Mark():
                self._marks.echoed(message.mark.name)
            case Stop():
                logger.info("Twilio stopped the media stream of call %s", message.stop.callSid)
                self._marks.stream_ended()
            case Start():
                logger.warning("ignoring a second start message")
        return None

    def _check_sequence(self, sequence_number: str) -> None:
        if not sequence_number.isdigit():
            return
        number = int(sequence_number)
        if self._last_sequence is not None and number != self._last_sequence + 1:
            logger.info("media stream gap: message %d follows %d", number, self._last_sequence)
        self._last_sequence = number


class TwilioOutputTransport(pc.FastAPIWebsocketOutputTransport):
    """pipecat's websocket output, paced to real time `playout_lead` ahead of the caller's ear,
    writing a `mark` after each message."""

    def __init__(self, *args: Any, marks: MarkLedger, stream_sid: str, playout_lead: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marks = marks
        self._stream_sid = stream_sid
        self._clock = PlayoutClock(playout_lead)
        self._message_ids: dict[int, str] = {}  # AggregatedTextFrame id → bot message id
        # Frame ids grow with creation: audio made before the last interruption is stale.
        self._fresh_audio_from = 0

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        if isinstance(frame, pc.InterruptionFrame):
            self._clock.reset()
            self._fresh_audio_from = pc.obj_id()
        elif isinstance(frame, pc.AggregatedTextFrame) and not isinstance(frame, pc.TTSTextFrame):
            message_id = frame.metadata.get("message_id")
            if message_id:
                self._message_ids[frame.id] = str(message_id)
        await super().process_frame(frame, direction)

    async def write_transport_frame(self, frame: pc.Frame) -> None:
        # The TTS queues a message's TTSTextFrame behind its audio, so it arrives here once that
        # audio has been written: the moment for the message's mark.
        await super().write_transport_frame(frame)
        if isinstance(frame, pc.TTSTextFrame) and frame.segment_id is not None:
            # Text spoken without a message id (pipecat's own TTSSpeakFrame) is marked too, so a
            # hang-up still waits until it has played.
            name = self._message_ids.pop(frame.segment_id, None) or f"segment-{frame.segment_id}"
            self._marks.sent(name)
            await self.send_message(pc.OutputTransportMessageUrgentFrame(message=mark_message(self._stream_sid, name)))

    async def write_audio_frame(self, frame: pc.OutputAudioRawFrame) -> bool:
        if frame.interruptible and frame.id < self._fresh_audio_from:
            # pipecat still writes the chunk it had taken from its queue when the barge-in came;
            # after the `clear`, Twilio would play it.
            return False
        return await super().write_audio_frame(frame)

    async def _write_audio_sleep(self) -> None:
        # pipecat's websocket output sleeps one chunk's duration per chunk: real time with nothing
        # in hand, so any scheduling hiccup under load is a gap at the caller. Keep a little audio
        # buffered at Twilio instead (`clear` drops it on barge-in).
        await self._clock.sent(self.audio_chunk_size / (2 * self._params.audio_out_channels * self.sample_rate))


class TwilioMediaTransport(pc.FastAPIWebsocketTransport):
    """One call's media stream, from the `start` message on. `marks` says what the caller heard;
    each echoed message id is also reported to `on_heard` (the pipeline's `Playback.confirm`)."""

    def __init__(self, websocket: WebSocket, *, stream_sid: str, on_heard: OnHeard) -> None:
        self._websocket = websocket
        self.marks = MarkLedger(on_heard)
        serializer = MediaStreamSerializer(stream_sid, self.marks, self.close)
        params = pc.FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_sample_rate=TWILIO_RATE,
            audio_out_10ms_chunks=2,  # 20 ms packets, as Twilio sends
            audio_out_end_silence_secs=0,  # the call ends by hang-up or transfer, not by a fade
            add_wav_header=False,
            serializer=serializer,
            allowed_origins=[],  # Twilio sends no Origin; the signature and token guard the socket
        )
        super().__init__(websocket, params)
        # The parent built a plain output; ours replaces it before any pipeline sees it.
        self._output = TwilioOutputTransport(
            self,
            self._client,
            params,
            marks=self.marks,
            stream_sid=stream_sid,
            playout_lead=PLAYOUT_LEAD_SECS,
            name=self._output_name,
        )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket from our side (Twilio then asks `after_stream` what comes next)."""
        self.marks.stream_ended()
        await close_websocket(self._websocket, code, reason)


async def close_websocket(websocket: WebSocket, code: int, reason: str = "") -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    try:
        await websocket.close(code=code, reason=reason)
    except (RuntimeError, WebSocketDisconnect):
        pass  # closed meanwhile, by the peer or another task
