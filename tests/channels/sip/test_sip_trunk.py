"""The SIP trunk channel against SIPp as the trunk, on 127.0.0.1: real SIP, RTP, RFC 4733 and
SIP INFO DTMF, REFER. The pipeline here is a small one of the test's own (transport.input() →
a scripted bot → transport.output()), so these tests check the transport and the user agent;
test_sip_voice.py runs the real voice runtime over the same wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.channels.sip.sipp import RtpSink, dominant_frequency, free_udp_port, open_rtp_sink, run_sipp, tone, voiced, write_ulaw_wav
from voicecalm.channels.sip import SipServer
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallControl, CallInfo
from voicecalm.voice.settings import SipSettings

HANDOFF_URI = "sip:human-agent@127.0.0.1:5090"
CALLER_TONE_HZ = 440
BOT_TONE_HZ = 1000


def sip_settings(port: int, **overrides: Any) -> SipSettings:
    values: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "user": "bot",
        "domain": "127.0.0.1",
        "max_calls": 2,
        "handoff": {"uri": HANDOFF_URI},
    }
    return SipSettings(**(values | overrides))


class ScriptedBot(pc.FrameProcessor):
    """Records what the caller sent; subclasses decide what the bot says."""

    def __init__(self, control: CallControl) -> None:
        super().__init__()
        self.control = control
        self.worker: pc.PipelineWorker | None = None
        self.digits: list[str] = []
        self.input_frames: set[tuple[int, int]] = set()  # (sample rate, bytes)
        self.caller_audio = bytearray()

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.InputAudioRawFrame):
            self.input_frames.add((frame.sample_rate, len(frame.audio)))
            self.caller_audio.extend(frame.audio)
            await self.on_caller_audio(frame)
        elif isinstance(frame, pc.InputDTMFFrame):
            self.digits.append(frame.button.value)
            await self.on_digit(frame.button.value)
        else:
            await self.push_frame(frame, direction)
            if isinstance(frame, pc.StartFrame):
                await self.on_start()

    async def on_start(self) -> None:
        pass

    async def on_caller_audio(self, frame: pc.InputAudioRawFrame) -> None:
        pass

    async def on_digit(self, digit: str) -> None:
        pass


class EchoBot(ScriptedBot):
    """Says back what the caller says."""

    async def on_caller_audio(self, frame: pc.InputAudioRawFrame) -> None:
        await self.push_frame(pc.OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate, num_channels=1))


class TalkingBot(ScriptedBot):
    """Greets with a long 1 kHz tone at 16 kHz; key 1 barges in, like the caller starting a DTMF
    input while the bot speaks."""

    GREETING_SECONDS = 4.0

    async def on_start(self) -> None:
        greeting = tone(BOT_TONE_HZ, self.GREETING_SECONDS, rate=16000)
        await self.push_frame(pc.OutputAudioRawFrame(audio=greeting.tobytes(), sample_rate=16000, num_channels=1))

    async def on_digit(self, digit: str) -> None:
        if digit == "1":
            await self.broadcast_interruption()


class TransferringBot(ScriptedBot):
    """Hands the caller to a human as soon as the call is up, like `action_transfer_to_human`."""

    transferred: bool | None = None

    async def on_start(self) -> None:
        self.create_task(self._transfer())

    async def _transfer(self) -> None:
        await asyncio.sleep(0.3)  # let the answer's re-INVITE settle, as a spoken line would
        self.transferred = await self.control.transfer()
        if self.transferred and self.worker is not None:
            await self.worker.cancel()


class ScriptedRuntime:
    """Stands in for `VoiceRuntime.run_call`: transport.input() → a scripted bot → transport.output()."""

    def __init__(self, bot: Callable[[CallControl], ScriptedBot]) -> None:
        self._make_bot = bot
        self.calls: list[CallInfo] = []
        self.bots: list[ScriptedBot] = []
        self.hung_up_by_caller: list[str] = []
        self.output_rates: list[int] = []
        self.finished: list[str] = []

    async def run_call(
        self, transport: pc.BaseTransport, call: CallInfo, settings: SipSettings, *, control: CallControl, audio_out_sample_rate: int
    ) -> None:
        self.calls.append(call)
        self.output_rates.append(audio_out_sample_rate)
        bot = self._make_bot(control)
        self.bots.append(bot)
        worker = pc.PipelineWorker(
            pc.Pipeline([transport.input(), bot, transport.output()]),
            params=pc.PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=audio_out_sample_rate),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )
        bot.worker = worker

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport: Any, info: CallInfo) -> None:
            self.hung_up_by_caller.append(info.call_id)
            await worker.cancel()

        runner = pc.WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
        self.finished.append(call.call_id)


@asynccontextmanager
async def sip_server(settings: SipSettings, runtime: ScriptedRuntime) -> AsyncIterator[SipServer]:
    server = SipServer(settings, runtime)  # type: ignore[arg-type]  # the scripted stand-in
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def rtp_sink() -> AsyncIterator[tuple[RtpSink, int]]:
    sink, port = await open_rtp_sink()
    yield sink, port
    sink.close()


@pytest.fixture
def caller_tone(tmp_path: Path) -> Path:
    path = tmp_path / "caller_tone_ulaw.wav"
    write_ulaw_wav(path, tone(CALLER_TONE_HZ, 2.0))
    return path


def sip_call_id(messages: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in messages.splitlines() if line.startswith("Call-ID:"))


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_trunk_call_audio_both_ways_dtmf_and_bye(tmp_path: Path, rtp_sink: tuple[RtpSink, int], caller_tone: Path) -> None:
    sink, sink_port = rtp_sink
    port = free_udp_port()
    runtime = ScriptedRuntime(EchoBot)
    async with sip_server(sip_settings(port), runtime):
        result = await run_sipp(
            "trunk_call.xml",
            tmp_path / "sipp",
            target_port=port,
            rtp_sink_port=sink_port,
            caller_audio=caller_tone,
            variables={"speech_ms": "2000", "listen_ms": "1000"},
        )
        await wait_until(lambda: runtime.finished, "the pipeline to end")

    assert result.exit_code == 0, result.output + result.errors
    # the call as the pipeline knows it: sender id = the trunk's Call-ID
    (call,) = runtime.calls
    assert call == CallInfo(call_id=sip_call_id(result.messages), channel="sip", user_phone="+15550001111", bot_phone="bot")
    assert runtime.output_rates == [8000]
    (bot,) = runtime.bots
    # caller audio reached the pipeline as 20 ms frames at 16 kHz, still the caller's tone
    assert bot.input_frames == {(16000, 640)}
    heard = np.frombuffer(bytes(bot.caller_audio), dtype=np.int16)
    assert dominant_frequency(voiced(heard, rate=16000), rate=16000) == pytest.approx(CALLER_TONE_HZ, abs=10)
    # RFC 4733 key 1, then SIP INFO key 2
    assert bot.digits == ["1", "2"]
    # the bot's audio came back as PCMU, 8 kHz, and is the echoed tone
    bot_audio = voiced(sink.pcm())
    assert len(bot_audio) > 8000  # more than a second of it
    assert dominant_frequency(bot_audio) == pytest.approx(CALLER_TONE_HZ, abs=10)
    # the caller's BYE ended the pipeline through on_client_disconnected, and got its 200
    assert runtime.hung_up_by_caller == [call.call_id]
    assert result.first_lines()[-2:] == [f"BYE sip:bot@127.0.0.1:{port} SIP/2.0", "SIP/2.0 200 OK"]


async def test_barge_in_drops_the_queued_bot_audio(tmp_path: Path, rtp_sink: tuple[RtpSink, int], caller_tone: Path) -> None:
    sink, sink_port = rtp_sink
    port = free_udp_port()
    runtime = ScriptedRuntime(TalkingBot)
    async with sip_server(sip_settings(port), runtime):
        result = await run_sipp(
            "trunk_call.xml",
            tmp_path / "sipp",
            target_port=port,
            rtp_sink_port=sink_port,
            caller_audio=caller_tone,
            variables={"speech_ms": "1000", "listen_ms": str(int(TalkingBot.GREETING_SECONDS * 1000))},
        )
        await wait_until(lambda: runtime.finished, "the pipeline to end")

    assert result.exit_code == 0, result.output + result.errors
    greeting = voiced(sink.pcm())
    assert dominant_frequency(greeting) == pytest.approx(BOT_TONE_HZ, abs=10)
    # the caller stayed on the line well past the greeting's length, yet it stopped at key 1
    assert 0 < len(greeting) / 8000 < TalkingBot.GREETING_SECONDS / 2


async def test_transfer_sends_refer_to_the_configured_uri_then_leaves_with_bye(tmp_path: Path, rtp_sink: tuple[RtpSink, int]) -> None:
    _, sink_port = rtp_sink
    port = free_udp_port()
    runtime = ScriptedRuntime(TransferringBot)
    async with sip_server(sip_settings(port), runtime):
        result = await run_sipp("refer_transfer.xml", tmp_path / "sipp", target_port=port, rtp_sink_port=sink_port)
        await wait_until(lambda: runtime.finished, "the pipeline to end")

    assert result.exit_code == 0, result.output + result.errors
    (bot,) = runtime.bots
    assert bot.transferred is True
    assert f"Refer-To: {HANDOFF_URI}" in result.messages
    lines = result.first_lines()
    from_refer = lines[next(i for i, line in enumerate(lines) if line.startswith("REFER ")) :]
    assert [line if line.startswith("SIP/2.0") else line.split()[0] for line in from_refer] == [
        "REFER",
        "SIP/2.0 202 Accepted",
        "NOTIFY",
        "SIP/2.0 200 OK",  # the NOTIFY's sipfrag: the transfer target answered
        "SIP/2.0 200 OK",  # our answer to the NOTIFY
        "BYE",
        "SIP/2.0 200 OK",
    ]
    assert runtime.hung_up_by_caller == []  # we left the call: not a caller hang-up


async def test_refused_transfer_keeps_the_call(tmp_path: Path, rtp_sink: tuple[RtpSink, int]) -> None:
    _, sink_port = rtp_sink
    port = free_udp_port()
    runtime = ScriptedRuntime(TransferringBot)
    async with sip_server(sip_settings(port), runtime):
        result = await run_sipp(
            "refer_refused.xml", tmp_path / "sipp", target_port=port, rtp_sink_port=sink_port, variables={"listen_ms": "1000"}
        )
        await wait_until(lambda: runtime.finished, "the pipeline to end")

    assert result.exit_code == 0, result.output + result.errors
    (bot,) = runtime.bots
    assert bot.transferred is False
    # still connected after the 403: the caller's own BYE ended the call later
    assert runtime.hung_up_by_caller == [runtime.calls[0].call_id]
    assert result.first_lines()[-2:] == [f"BYE sip:bot@127.0.0.1:{port} SIP/2.0", "SIP/2.0 200 OK"]


async def test_calls_beyond_the_limit_and_while_stopping_get_486(tmp_path: Path, rtp_sink: tuple[RtpSink, int], caller_tone: Path) -> None:
    _, sink_port = rtp_sink
    port = free_udp_port()
    runtime = ScriptedRuntime(EchoBot)
    server = SipServer(sip_settings(port, max_calls=2), runtime)  # type: ignore[arg-type]
    await server.start()
    try:

        def call(name: str, listen_ms: int) -> asyncio.Task:
            return asyncio.create_task(
                run_sipp(
                    "trunk_call.xml",
                    tmp_path / name,
                    target_port=port,
                    rtp_sink_port=sink_port,
                    caller_audio=caller_tone,
                    variables={"speech_ms": "500", "listen_ms": str(listen_ms)},
                )
            )

        long_call, short_call = call("long", 9000), call("short", 2000)
        await wait_until(lambda: len(runtime.calls) == 2 and server.active_calls == 2, "two calls up")
        beyond_limit = await run_sipp("busy.xml", tmp_path / "beyond", target_port=port, rtp_sink_port=sink_port)

        assert (await short_call).exit_code == 0
        stopping = asyncio.create_task(server.stop(drain_timeout=30))
        await wait_until(lambda: not server.accepting_calls, "the drain to start")
        assert server.active_calls == 1 and not long_call.done()
        while_stopping = await run_sipp("busy.xml", tmp_path / "stopping", target_port=port, rtp_sink_port=sink_port)
        assert (await long_call).exit_code == 0
        await stopping  # the drain waited for the long call's own BYE
    finally:
        await server.stop()

    for refused in (beyond_limit, while_stopping):
        assert refused.exit_code == 0, refused.output + refused.errors
        responses = [line for line in refused.first_lines() if line.startswith("SIP/2.0 ")]
        assert [line.split()[1] for line in responses if not line.startswith("SIP/2.0 1")] == ["486"], responses
    assert len(runtime.calls) == 2  # the refused calls never reached the pipeline
    assert sorted(runtime.hung_up_by_caller) == sorted(c.call_id for c in runtime.calls)
