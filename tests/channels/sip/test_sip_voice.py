"""A phone call over the SIP trunk into the real voice runtime and the example assistant: SIPp
speaks a recorded caller (μ-law over RTP), Whisper transcribes it, the command generator (the
voice tests' rule-based loopback model) starts the flow, Piper's answer comes back as PCMU, and
the customer number typed on the keypad (RFC 4733) reaches the engine while its DTMF collect is
asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio_fixtures.fixture_audio import FIXTURES_DIR
from tests.channels.sip.sipp import RtpSink, free_udp_port, open_rtp_sink, run_sipp, voiced, write_ulaw_wav
from tests.voice.conftest import runtime, voice_model, voice_project  # noqa: F401  (the voice tests' assistant)
from voicecalm.channels.sip import SipServer
from voicecalm.tracker.events import BotUttered, FlowStarted, UserUttered
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallInfo
from voicecalm.voice.engine_processor import EngineProcessor
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import SipSettings
from voicecalm.voice.wav import read_wav

pytestmark = pytest.mark.slow  # Whisper, Piper, Silero and smart-turn, loaded for real

GREETING_WAIT_SECONDS = 6.0  # the caller listens to the greeting before speaking
# From the end of the caller's sentence to the first key: the turn must end, be transcribed and
# understood, and the bot must have started asking for the customer number.
ANSWER_WAIT_MS = 7000
LISTEN_AFTER_KEYS_MS = 6000
CALL_END_TIMEOUT_SECONDS = 30


class KeysReachingTheEngine(pc.BaseObserver):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def on_push_frame(self, data: pc.FramePushed) -> None:
        if isinstance(data.frame, pc.InputDTMFFrame) and isinstance(data.destination, EngineProcessor):
            self.keys.append(data.frame.button.value)


class ObservedRuntime:
    """The voice runtime, with an observer on each call's pipeline."""

    def __init__(self, runtime: VoiceRuntime, observer: pc.BaseObserver) -> None:
        self.runtime = runtime
        self.observer = observer

    async def run_call(self, transport: pc.BaseTransport, call: CallInfo, settings: SipSettings, **kwargs: Any) -> None:
        await self.runtime.run_call(transport, call, settings, observers=[self.observer], **kwargs)


@pytest.fixture
async def rtp_sink() -> AsyncIterator[tuple[RtpSink, int]]:
    sink, port = await open_rtp_sink()
    yield sink, port
    sink.close()


@pytest.fixture
def caller_audio(tmp_path: Path) -> tuple[Path, float]:
    """check_balance.ulaw.wav after the greeting's worth of line silence; and its length."""
    speech = read_wav(FIXTURES_DIR / "check_balance.ulaw.wav").pcm16()
    audio = np.concatenate([np.zeros(int(GREETING_WAIT_SECONDS * 8000), dtype=np.int16), speech])
    path = tmp_path / "check_balance_after_greeting.ulaw.wav"
    write_ulaw_wav(path, audio)
    return path, len(audio) / 8000


async def test_spoken_request_starts_the_flow_and_keypad_digits_reach_the_engine(
    tmp_path: Path, runtime: VoiceRuntime, rtp_sink: tuple[RtpSink, int], caller_audio: tuple[Path, float]  # noqa: F811
) -> None:
    sink, sink_port = rtp_sink
    caller, caller_seconds = caller_audio
    port = free_udp_port()
    settings = SipSettings(listen=f"127.0.0.1:{port}", user="bot", domain="127.0.0.1", max_calls=1)
    await runtime.warm_up(settings)  # models load before calls arrive, as at `voicecalm run` start-up
    keys = KeysReachingTheEngine()
    server = SipServer(settings, ObservedRuntime(runtime, keys))  # type: ignore[arg-type]
    await server.start()
    try:
        result = await run_sipp(
            "keypad_call.xml",
            tmp_path / "sipp",
            target_port=port,
            rtp_sink_port=sink_port,
            caller_audio=caller,
            variables={"speech_ms": str(int(caller_seconds * 1000) + ANSWER_WAIT_MS), "listen_ms": str(LISTEN_AFTER_KEYS_MS)},
        )
        async with asyncio.timeout(CALL_END_TIMEOUT_SECONDS):
            while server.active_calls:
                await asyncio.sleep(0.1)
    finally:
        await server.stop()

    assert result.exit_code == 0, result.output + result.errors
    call_id = next(line.split(":", 1)[1].strip() for line in result.messages.splitlines() if line.startswith("Call-ID:"))
    conversation = await runtime.assistant.conversation(call_id)
    events = conversation.events

    said = [e for e in events if isinstance(e, UserUttered)]
    assert said[0].text == "/session_start"
    assert said[0].metadata["channel"] == "sip" and said[0].metadata["user_phone"] == "+15550001111"
    # what the caller said, as Whisper heard it through μ-law, RTP and the 8 → 16 kHz resampling
    assert "balance" in said[1].text.lower()
    # understood: the flow started and asked for the customer number
    assert [e.flow_id for e in events if isinstance(e, FlowStarted)][1:4] == [
        "check_balance", "authenticate_user", "pattern_collect_information",
    ]  # fmt: skip
    asked = [e.utter_action for e in events if isinstance(e, BotUttered)]
    assert asked[:2] == ["utter_greet", "utter_ask_auth_customer_number"]
    # the number typed on the keypad (RFC 4733) reached the engine, key by key
    assert keys.keys == list("12345678")
    # the caller's BYE ended the session on the tracker
    assert said[-1].text == "/session_end"
    # the bot's speech came back over RTP as PCMU: the greeting alone is seconds long
    assert len(voiced(sink.pcm())) > 2 * 8000
