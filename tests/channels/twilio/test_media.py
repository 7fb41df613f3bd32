"""The media path of a Twilio call: a small real pipeline (the Twilio transport, a scripted bot,
Piper) behind the real routes, called by the fake Twilio over a real WebSocket. Bot audio goes out
as μ-law with a mark after each message, echoes confirm what was heard, a barge-in sends `clear`,
and the bot's hang-up waits for the last mark before the REST call."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.channels.twilio.conftest import WEBHOOK, twilio_server
from voicecalm.channels.twilio.media import CLOSE_TOO_BIG, MarkLedger, MediaStreamSerializer
from voicecalm.testing.twilio_fakes import FakeTwilioCall, RestRequest
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallControl, CallInfo
from voicecalm.voice.delivery import Playback
from voicecalm.voice.tts import SharedPiperTTS
from voicecalm.voice.wav import ulaw_decode

GREETING = "Hello, this is the bank."
STORY = " ".join(["This is a long answer that goes on for a while, so that the caller can interrupt it."] * 4)
CLOSING = "Is there anything else?"
SPEAK_STORY, BARGE_IN, HANG_UP, TRANSFER, SPEAK_CLOSING = "1", "2", "3", "4", "6"


class ScriptedBot(pc.FrameProcessor):
    """Greets on start; DTMF keys make it speak, interrupt itself, hang up or transfer."""

    def __init__(self, playback: Playback, control: CallControl) -> None:
        super().__init__()
        self.playback = playback
        self.control = control
        self.keys: list[str] = []
        self.input_rates: set[int] = set()
        self.transfer_result: bool | None = None
        self._messages = 0

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.InputAudioRawFrame):
            self.input_rates.add(frame.sample_rate)
            return
        if isinstance(frame, pc.InputDTMFFrame):
            self.keys.append(frame.button.value)
            self.create_task(self._on_key(frame.button.value))
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, pc.StartFrame):
            await self.say(GREETING)

    async def say(self, text: str) -> str:
        self._messages += 1
        message_id = f"m{self._messages}"
        frame = pc.AggregatedTextFrame(text, pc.TextType.SENTENCE)
        frame.metadata["message_id"] = message_id
        self.playback.queued(message_id, frame.id, self._messages, True)
        await self.push_frame(frame)
        return message_id

    async def _on_key(self, key: str) -> None:
        if key == SPEAK_STORY:
            await self.say(STORY)
        elif key == SPEAK_CLOSING:
            await self.say(CLOSING)
        elif key == BARGE_IN:
            self.playback.barge_in(self._messages)  # as the engine does: the cut message is not awaited
            await self.broadcast_interruption()
        elif key == HANG_UP:
            await self.playback.wait_drained(30)
            await self.control.hang_up()
        elif key == TRANSFER:
            await self.playback.wait_drained(30)
            self.transfer_result = await self.control.transfer()


@dataclass
class PipelineRunner:
    """Runs each call through input → ScriptedBot → Piper → output until the caller leaves."""

    bots: list[ScriptedBot] = field(default_factory=list)
    playbacks: list[Playback] = field(default_factory=list)
    calls: list[CallInfo] = field(default_factory=list)

    async def run_call(
        self, transport: Any, call: CallInfo, settings: Any, *, control: Any, audio_out_sample_rate: int, playback: Any
    ) -> None:
        bot = ScriptedBot(playback, control)
        self.bots.append(bot)
        self.playbacks.append(playback)
        self.calls.append(call)
        pipeline = pc.Pipeline([transport.input(), bot, SharedPiperTTS(voice="en_US-joe-medium", volume=0.8), transport.output()])
        worker = pc.PipelineWorker(
            pipeline,
            params=pc.PipelineParams(audio_in_sample_rate=16_000, audio_out_sample_rate=audio_out_sample_rate),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def caller_left(*_: Any) -> None:
            await worker.cancel()

        runner = pc.WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()


def media_after(call: FakeTwilioCall, event_index: int) -> int:
    return sum(1 for e in call.events[event_index + 1 :] if e.get("event") == "media")


def index_of_mark(call: FakeTwilioCall, name: str) -> int:
    return next(i for i, e in enumerate(call.events) if e.get("event") == "mark" and e["mark"]["name"] == name)


def rms(ulaw: bytes) -> float:
    samples = ulaw_decode(ulaw).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


@pytest.mark.slow
async def test_the_caller_hears_the_greeting_then_barges_in_and_the_bot_hangs_up_after_its_last_mark() -> None:
    runner = PipelineRunner()
    async with twilio_server(runner) as server:
        assert server.rest is not None
        call = server.call()
        at_hang_up: list[list[str]] = []

        def hang_up_seen(request: RestRequest) -> None:
            at_hang_up.append([name for name in call.marks if name not in call.echoed_marks])
            call.leave_on_update(request)

        server.rest.listeners.append(hang_up_seen)
        await call.start(await call.answer(WEBHOOK))
        await call.wait_for(lambda: "m1" in call.echoed_marks, timeout=60)
        await call.press("5")
        await call.press(SPEAK_STORY)
        await call.wait_for(lambda: "m1" in call.marks and media_after(call, index_of_mark(call, "m1")) >= 25, timeout=60)
        await call.press(BARGE_IN)
        await call.wait_for(lambda: "clear" in call.event_names(), timeout=10)
        await call.pause(0.5)
        before_m3 = len(call.events)
        await call.press(SPEAK_CLOSING)  # m3: spoken in full
        await call.wait_for(lambda: "m3" in call.echoed_marks, timeout=90)
        await call.press(HANG_UP)
        await call.wait_for(lambda: call.closed.is_set(), timeout=30)

    [bot], [playback] = runner.bots, runner.playbacks
    greeting = b"".join(call.media_payloads[: sum(1 for e in call.events[: index_of_mark(call, "m1")] if e["event"] == "media")])
    assert call.protocol_errors == []
    assert all(payload[:4] != b"RIFF" for payload in call.media_payloads)
    assert len(greeting) > 8000 and rms(greeting) > 300  # over a second of audible speech
    # The greeting's mark came after all of its audio, and was echoed once it had played.
    assert call.event_names()[0] == "media" and call.marks == ["m1", "m3"]
    assert sorted(call.echoed_marks) == sorted(call.marks)
    # The story's audio was playing when the caller cut in; nothing of it came after the clear.
    clear = call.event_names().index("clear")
    assert "media" in call.event_names()[index_of_mark(call, "m1") : clear]
    assert "media" not in call.event_names()[clear:before_m3]
    assert (playback.heard("m1"), playback.heard("m2"), playback.heard("m3")) == (True, False, True)
    assert bot.keys == ["5", SPEAK_STORY, BARGE_IN, SPEAK_CLOSING, HANG_UP]
    assert bot.input_rates == {16_000}
    assert [r.form for r in server.rest.requests] == [{"Status": "completed"}]
    assert server.rest.requests[0].authorized and server.rest.requests[0].call_sid == call.call_sid
    assert at_hang_up == [[]]  # every mark had been echoed before the REST hang-up


@pytest.mark.slow
async def test_a_transfer_redirects_the_call_to_the_configured_dial() -> None:
    runner = PipelineRunner()
    async with twilio_server(runner) as server:
        assert server.rest is not None
        call = server.call()
        server.rest.listeners.append(call.leave_on_update)
        await call.start(await call.answer(WEBHOOK))
        await call.wait_for(lambda: "m1" in call.echoed_marks, timeout=60)
        await call.press(TRANSFER)
        await call.wait_for(lambda: call.closed.is_set(), timeout=30)

    [request] = server.rest.requests
    assert set(request.form) == {"Twiml"}
    assert "<Dial " in request.form["Twiml"] and "<Number>+15550002222</Number>" in request.form["Twiml"]
    assert 'callerId="+15550009999"' in request.form["Twiml"] and 'timeout="25"' in request.form["Twiml"]
    assert 'action="https://bot.example.com/webhooks/twilio_media_streams/handoff_result"' in request.form["Twiml"]
    assert runner.bots[0].transfer_result is True


# --- the serializer and the mark ledger, frame by frame ----------------------------------------


@dataclass
class Violations:
    closed: list[tuple[int, str]] = field(default_factory=list)

    async def __call__(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def message(event: str, body: dict[str, Any], stream: str = "MZ1", sequence: int = 1) -> str:
    return json.dumps({"event": event, "sequenceNumber": str(sequence), "streamSid": stream, event: body})


async def make_serializer() -> tuple[MediaStreamSerializer, list[str], Violations]:
    heard: list[str] = []
    violations = Violations()
    serializer = MediaStreamSerializer("MZ1", MarkLedger(heard.append), violations)
    await serializer.setup(SimpleNamespace(audio_in_sample_rate=16_000))  # type: ignore[arg-type]
    return serializer, heard, violations


async def test_media_and_dtmf_become_pipeline_frames_and_the_rest_is_dropped() -> None:
    serializer, heard, violations = await make_serializer()
    tone = bytes(range(0, 160))
    frames = [
        await serializer.deserialize(
            message("media", {"track": "inbound", "chunk": str(n), "timestamp": str(20 * n), "payload": base64.b64encode(tone).decode()}, sequence=n)
        )
        for n in range(1, 21)
    ]
    key = await serializer.deserialize(message("dtmf", {"track": "inbound_track", "digit": "5"}, sequence=21))
    dropped = [
        await serializer.deserialize(message("dtmf", {"track": "inbound_track", "digit": "X"}, sequence=22)),
        await serializer.deserialize(message("media", {"chunk": "1", "timestamp": "0", "payload": "!!"}, sequence=23)),
        await serializer.deserialize(message("dtmf", {"digit": "1"}, stream="MZ-other", sequence=24)),
        await serializer.deserialize('{"event": "future_event"}'),
        await serializer.deserialize("[1, 2]"),
        await serializer.deserialize(b"\x00\x01"),
    ]

    audio = [f for f in frames if f is not None]  # the resampler hands out ~100 ms blocks
    assert audio and all(isinstance(f, pc.InputAudioRawFrame) and f.sample_rate == 16_000 for f in audio)
    assert isinstance(key, pc.InputDTMFFrame) and key.button.value == "5"
    assert dropped == [None] * 6
    assert heard == [] and violations.closed == []


async def test_an_echo_counts_as_heard_only_for_a_mark_still_pending_when_it_comes() -> None:
    serializer, heard, _ = await make_serializer()
    ledger = serializer._marks
    ledger.sent("m1")
    await serializer.deserialize(message("mark", {"name": "m1"}, sequence=1))
    ledger.sent("m2")
    ledger.sent("m3")
    clear = await serializer.serialize(pc.InterruptionFrame())
    # Twilio echoes every pending mark after a clear: those did not play.
    await serializer.deserialize(message("mark", {"name": "m2"}, sequence=2))
    await serializer.deserialize(message("mark", {"name": "m3"}, sequence=3))
    await serializer.deserialize(message("mark", {"name": "never-sent"}, sequence=4))
    ledger.sent("m4")
    waiting = asyncio.create_task(ledger.wait_all_echoed(5))
    await asyncio.sleep(0)
    assert not waiting.done()
    await serializer.deserialize(message("mark", {"name": "m4"}, sequence=5))

    assert clear == '{"event": "clear", "streamSid": "MZ1"}'
    assert heard == ["m1", "m4"]
    assert await waiting is True


async def test_stop_releases_whoever_waits_for_a_mark() -> None:
    serializer, heard, _ = await make_serializer()
    serializer._marks.sent("m1")
    waiting = asyncio.create_task(serializer._marks.wait_all_echoed(5))
    await serializer.deserialize(message("stop", {"accountSid": "AC1", "callSid": "CA1"}))
    assert await waiting is True
    assert heard == []


async def test_an_oversized_frame_closes_the_stream() -> None:
    serializer, _, violations = await make_serializer()
    assert await serializer.deserialize("x" * (64 * 1024 + 1)) is None
    assert violations.closed == [(CLOSE_TOO_BIG, "frame too large")]
