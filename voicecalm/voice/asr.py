"""Speech to text: faster-whisper on the process-wide model, one transcript per utterance."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.speech_models import whisper_model

logger = logging.getLogger(__name__)

MAX_NEW_TOKENS = 96  # a caller's turn is a sentence or two; caps a hallucinating decode
# Speech end → final transcript, p99, on 2 CPU cores (models.md: 0.36–0.5 s per utterance, more
# when calls share the cores); the turn-end strategy waits this long for a transcript.
TTFS_P99_SECONDS = 1.5


class SharedWhisperSTT(pc.WhisperSTTService):
    """pipecat's segmented Whisper service on the shared model, decoded the way models.md found
    fast and safe: beam 1 (configurable), no conditioning on previous text, bounded output."""

    def __init__(self, *, model: str, language: str, compute_type: str, cpu_threads: int, beam_size: int, **kwargs: Any) -> None:
        self._shared = (model, compute_type, cpu_threads)
        self._beam_size = beam_size
        super().__init__(
            compute_type=compute_type,
            device="cpu",
            settings=pc.WhisperSTTService.Settings(model=model, language=language),
            ttfs_p99_latency=TTFS_P99_SECONDS,
            **kwargs,
        )

    def _load(self) -> None:
        # Called by the base __init__: take the process-wide model (loaded at start-up) instead
        # of building one per call, which would also try the model hub.
        self._model = whisper_model(*self._shared)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[pc.Frame, None]:
        await self.start_processing_metrics()
        samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32) / 32768.0
        settings = self._settings
        language = settings.language
        hotwords = settings.hotwords or None
        initial_prompt = settings.initial_prompt or None
        threshold = settings.no_speech_prob

        def transcribe() -> list[Any]:
            segments, _ = self._model.transcribe(
                samples,
                language=language,
                beam_size=self._beam_size,
                condition_on_previous_text=False,
                max_new_tokens=MAX_NEW_TOKENS,
                hotwords=hotwords,
                initial_prompt=initial_prompt,
                without_timestamps=True,
            )
            return list(segments)

        segments = await asyncio.to_thread(transcribe)
        text = " ".join(s.text.strip() for s in segments if threshold is None or s.no_speech_prob < threshold).strip()
        await self.stop_processing_metrics()
        if text:
            yield pc.TranscriptionFrame(text, self._user_id, pc.time_now_iso8601(), language)
