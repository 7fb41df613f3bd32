"""`VoiceRuntime`: one per process; runs each call's pipeline (voice.md §3).

    transport.input() → ASR → user aggregator (VAD, turn end, barge-in) → EngineProcessor
        → TTS → transport.output() → DeliveryTracker

Speech models are loaded once (`warm_up`) and shared by every call; per call only the light
pipecat processors are built.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from voicecalm.assistant import Assistant
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.asr import SharedWhisperSTT
from voicecalm.voice.call import CallControl, CallInfo, NoCallControl
from voicecalm.voice.delivery import DeliveryTracker, Playback
from voicecalm.voice.engine_processor import EngineProcessor
from voicecalm.voice.settings import (
    ASR_REQUIREMENTS,
    TTS_REQUIREMENTS,
    FasterWhisperSettings,
    PiperHttpSettings,
    PiperSettings,
    VoiceChannelSettings,
    require_speech_services,
)
from voicecalm.voice.speech_models import piper_voice, whisper_model
from voicecalm.voice.tts import SharedPiperTTS
from voicecalm.voice.vad import create_vad_analyzer

logger = logging.getLogger(__name__)

PIPELINE_RATE = 16_000
TURN_STOP_FALLBACK_SECONDS = 10.0
MIN_IDLE_TIMEOUT = 300.0  # pipecat cancels a call with no speech either way for this long


class ProtectedPlaybackMute(pc.BaseUserMuteStrategy):
    """Mutes the caller while a message with `allow_interruptions: false` plays; a transcript
    that arrives meanwhile is recorded as suppressed (voice.md §4)."""

    def __init__(self, playback: Playback, engine: EngineProcessor) -> None:
        super().__init__()
        self._playback = playback
        self._engine = engine

    async def process_frame(self, frame: pc.Frame) -> bool:
        muted = self._playback.protects_playback()
        if muted and isinstance(frame, pc.TranscriptionFrame) and frame.text.strip():
            self._engine.suppressed(frame.text.strip(), "not_interruptible")
        return muted


@dataclass(slots=True)
class ActiveCall:
    engine: EngineProcessor
    playback: Playback
    worker: pc.PipelineWorker

    async def run(self) -> None:
        runner = pc.WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        await runner.run()

    async def settled(self, timeout: float) -> None:
        """Wait until the engine has nothing to do and every bot message has played."""
        await asyncio.wait_for(self.engine.idle.wait(), timeout)
        if not await self.playback.wait_drained(timeout):
            raise TimeoutError("bot audio still playing")


class VoiceRuntime:
    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self._http: aiohttp.ClientSession | None = None  # for `tts: piper_http`, shared by calls
        self._assistant_warm = False

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def warm_up(self, settings: VoiceChannelSettings) -> None:
        """Load the channel's speech models (and the assistant's) now rather than on a call."""
        require_speech_services(settings)
        if not self._assistant_warm:
            await self.assistant.warm_up()
            self._assistant_warm = True
        if isinstance(settings.asr, FasterWhisperSettings):
            await asyncio.to_thread(whisper_model, settings.asr.model, settings.asr.compute_type, settings.asr.cpu_threads)
        if isinstance(settings.tts, PiperSettings):
            await asyncio.to_thread(piper_voice, settings.tts.voice)

    async def run_call(self, transport: pc.BaseTransport, call: CallInfo, settings: VoiceChannelSettings, **options: Any) -> None:
        """Run one call until it ends: the caller hangs up, the bot hangs up or transfers.
        `options` are `start_call`'s."""
        await (await self.start_call(transport, call, settings, **options)).run()

    async def start_call(
        self,
        transport: pc.BaseTransport,
        call: CallInfo,
        settings: VoiceChannelSettings,
        *,
        control: CallControl | None = None,
        audio_out_sample_rate: int,
        playback: Playback | None = None,
        observers: list[Any] | None = None,
    ) -> ActiveCall:
        """Build a call's pipeline (speech models loaded first, in a thread); `run()` runs it."""
        await self.warm_up(settings)
        playback = playback or Playback()
        engine = EngineProcessor(self.assistant, call, control or NoCallControl(), playback, settings)
        user_aggregator = pc.LLMContextAggregatorPair(pc.LLMContext(), user_params=_user_params(settings, playback, engine)).user()

        @user_aggregator.event_handler("on_user_turn_stopped")
        async def on_user_turn_stopped(_aggregator: Any, _strategy: Any, message: Any) -> None:
            engine.user_turn_ended(message.content)

        pipeline = pc.Pipeline(
            [
                transport.input(),
                create_stt(settings),
                user_aggregator,
                engine,
                create_tts(settings, self._http_session),
                transport.output(),
                DeliveryTracker(playback),
            ]
        )
        worker = pc.PipelineWorker(
            pipeline,
            params=pc.PipelineParams(
                audio_in_sample_rate=PIPELINE_RATE, audio_out_sample_rate=audio_out_sample_rate, enable_metrics=True
            ),
            enable_rtvi=False,
            idle_timeout_secs=max(MIN_IDLE_TIMEOUT, 4 * (settings.silence_timeout or 0) + 60),
            observers=observers or [],
        )

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(*_args: Any) -> None:
            engine.caller_hung_up()

        return ActiveCall(engine, playback, worker)

    def _http_session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http


def _user_params(settings: VoiceChannelSettings, playback: Playback, engine: EngineProcessor) -> pc.LLMUserAggregatorParams:
    interruptions = settings.interruptions.enabled
    if settings.turn_end == "speech_timeout":
        stop = [pc.SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=settings.speech_timeout)]
    else:
        stop = [pc.TurnAnalyzerUserTurnStopStrategy(turn_analyzer=pc.LocalSmartTurnAnalyzerV3())]
    start = [
        pc.VADUserTurnStartStrategy(enable_interruptions=interruptions),
        pc.TranscriptionUserTurnStartStrategy(enable_interruptions=interruptions),
    ]
    mute: list[pc.BaseUserMuteStrategy] = [ProtectedPlaybackMute(playback, engine)]
    if not interruptions:
        mute.append(pc.AlwaysUserMuteStrategy())
    return pc.LLMUserAggregatorParams(
        vad_analyzer=create_vad_analyzer(settings, sample_rate=PIPELINE_RATE),
        user_turn_strategies=pc.UserTurnStrategies(start=start, stop=stop),
        user_mute_strategies=mute,
        user_idle_timeout=0,  # the engine owns the silence timer (voice.md §5)
        # A turn nobody judged complete ends this long after speech stopped. Generous, so a slow
        # transcription on a busy machine is waited for instead of leaving an empty turn.
        user_turn_stop_timeout=TURN_STOP_FALLBACK_SECONDS,
        empty_user_turn=None,
    )


def create_stt(settings: VoiceChannelSettings) -> pc.FrameProcessor:
    asr = settings.asr
    if isinstance(asr, FasterWhisperSettings):
        return SharedWhisperSTT(
            model=asr.model,
            language=asr.language,
            compute_type=asr.compute_type,
            cpu_threads=asr.cpu_threads,
            beam_size=asr.beam_size,
        )
    return pc.cloud_service(pc.CLOUD_STT_SERVICES, asr.name, _api_key(ASR_REQUIREMENTS[asr.name]), asr.options)


def create_tts(settings: VoiceChannelSettings, http: Callable[[], aiohttp.ClientSession]) -> pc.FrameProcessor:
    tts = settings.tts
    if isinstance(tts, PiperSettings):
        return SharedPiperTTS(voice=tts.voice, volume=tts.volume)
    if isinstance(tts, PiperHttpSettings):
        # piper-tts is GPL: this runs it out of process, behind an HTTP server.
        return pc.PiperHttpTTSService(base_url=tts.url.rstrip("/"), aiohttp_session=http(), voice_id=tts.voice)
    return pc.cloud_service(pc.CLOUD_TTS_SERVICES, tts.name, _api_key(TTS_REQUIREMENTS[tts.name]), tts.options)


def _api_key(requirement: Any) -> str:
    return os.environ[requirement.api_key]  # require_speech_services checked it is set
