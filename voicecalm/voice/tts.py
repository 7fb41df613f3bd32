"""Text to speech: Piper on the process-wide voice, or a pipecat cloud service by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.speech_models import piper_voice


STOP_FRAME_TIMEOUT_SECONDS = 15.0


class SharedPiperTTS(pc.TTSService):
    """Piper with a preloaded voice. Piper yields one chunk per sentence, so TTS starts on the
    first sentence while the rest is synthesised. `volume` < 1 keeps levels even: Piper
    normalises every sentence to full scale."""

    Settings = pc.TTSSettings

    def __init__(self, *, voice: str, volume: float, **kwargs: Any) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            # A busy machine can take seconds for a first sentence; pipecat's 3 s default then
            # drops the message as "completed with no audio".
            stop_frame_timeout_s=STOP_FRAME_TIMEOUT_SECONDS,
            settings=pc.TTSSettings(model=None, voice=None, language=None),
            **kwargs,
        )
        self._voice = piper_voice(voice)
        self._synthesis = _synthesis_config(volume)

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[pc.Frame, None]:
        chunks = self._voice.synthesize(text, syn_config=self._synthesis)
        await self.start_tts_usage_metrics(text)
        async for frame in self._stream_audio_frames_from_iterator(
            _in_thread(chunks), in_sample_rate=self._voice.config.sample_rate, context_id=context_id
        ):
            await self.stop_ttfb_metrics()
            yield frame


def _synthesis_config(volume: float) -> Any:
    from piper import SynthesisConfig

    return SynthesisConfig(volume=volume)


async def _in_thread(chunks: Iterator[Any]) -> AsyncIterator[bytes]:
    """Piper's synthesis generator, each step run in a worker thread."""
    done = object()
    while True:
        chunk = await asyncio.to_thread(next, chunks, done)
        if chunk is done:
            return
        yield chunk.audio_int16_bytes
