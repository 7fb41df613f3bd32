"""Reading the caller-audio fixtures and judging what Whisper heard in them.

Shared by `make_fixtures.py` (which measures the transcripts written into README.md) and the
voice tests (which feed the fixtures to real transports and check the transcripts), so both
judge a transcript by the same rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter

FIXTURES_DIR = Path(__file__).resolve().parent
TRANSCRIPTS_FILE = FIXTURES_DIR / "transcripts.json"
CONVERSATIONS_FILE = FIXTURES_DIR / "conversations.json"

# WAVE format tags (RIFF fmt chunk).
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_MULAW = 7

WHISPER_SAMPLE_RATE = 16000

# Words whose loss does not change what the caller asked for; everything else in the expected
# text must be heard. Numbers are compared as digit strings, so "two four six eight", "2468"
# and "2-4-6-8" all match.
FUNCTION_WORDS = frozenset(
    "a an the i i'd i'm it it's is was to of and my me some oh that that's".split()
)


@dataclass(frozen=True)
class WavAudio:
    sample_rate: int
    channels: int
    format_tag: int
    bits_per_sample: int
    data: bytes

    def pcm16(self) -> np.ndarray:
        """Mono samples as int16, decoding μ-law if needed."""
        if self.format_tag == WAVE_FORMAT_MULAW:
            return decode_mulaw(self.data)
        if self.format_tag == WAVE_FORMAT_PCM and self.bits_per_sample == 16:
            return np.frombuffer(self.data, dtype="<i2").astype(np.int16)
        raise ValueError(f"unsupported WAV encoding: tag {self.format_tag}, {self.bits_per_sample} bits")

    @property
    def duration_s(self) -> float:
        return len(self.data) / (self.channels * self.bits_per_sample // 8) / self.sample_rate


def read_wav(path: Path) -> WavAudio:
    """Parses a RIFF/WAVE file chunk by chunk (the stdlib `wave` module rejects μ-law)."""
    raw = path.read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a RIFF/WAVE file")
    fmt: bytes | None = None
    offset = 12
    while offset + 8 <= len(raw):
        chunk_id = raw[offset : offset + 4]
        size = int.from_bytes(raw[offset + 4 : offset + 8], "little")
        body = raw[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data chunk before fmt chunk")
            return WavAudio(
                format_tag=int.from_bytes(fmt[0:2], "little"),
                channels=int.from_bytes(fmt[2:4], "little"),
                sample_rate=int.from_bytes(fmt[4:8], "little"),
                bits_per_sample=int.from_bytes(fmt[14:16], "little"),
                data=body,
            )
        offset += 8 + size + (size & 1)
    raise ValueError(f"{path} has no data chunk")


def _mulaw_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


_MULAW_TO_PCM16 = _mulaw_table()


def decode_mulaw(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes to int16 samples (Python 3.13 has no audioop)."""
    return _MULAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return samples
    import soxr

    resampled = soxr.resample(samples.astype(np.float32), from_rate, to_rate)
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


def speech_16k(path: Path) -> np.ndarray:
    """A fixture as Whisper takes it: mono int16 at 16 kHz (μ-law decoded and upsampled)."""
    audio = read_wav(path)
    return resample(audio.pcm16(), audio.sample_rate, WHISPER_SAMPLE_RATE)


def load_transcripts() -> dict[str, str]:
    return TypeAdapter(dict[str, str]).validate_json(TRANSCRIPTS_FILE.read_bytes())


class ConversationTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fixture: str
    text: str
    start_s: float
    end_s: float


class ConversationTimeline(BaseModel):
    """Where each caller turn sits in a `conversation_*.wav`, and what the bot is expected to say
    before it (the text the pause before the turn was sized for)."""

    model_config = ConfigDict(extra="forbid")

    duration_s: float
    turns: list[ConversationTurn]
    bot_before_turn: list[list[str]]


def load_conversations() -> dict[str, ConversationTimeline]:
    return TypeAdapter(dict[str, ConversationTimeline]).validate_json(CONVERSATIONS_FILE.read_bytes())


def _canonical_tokens(text: str) -> tuple[set[str], str]:
    """The words and the digit string of a text, with numbers as digits."""
    from text_to_num import alpha2digit

    text = text.lower()
    text = re.sub(r"\$(\d[\d,]*(?:\.\d+)?)", r"\1 dollars", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"[^a-z0-9']+", " ", text)
    text = alpha2digit(text, "en")
    tokens = re.findall(r"[a-z']+|\d+", text)
    words = {token.strip("'") for token in tokens if not token.isdigit()}
    digits = "".join(token for token in tokens if token.isdigit())
    return words, digits


def content_words(text: str) -> set[str]:
    words, _ = _canonical_tokens(text)
    return words - FUNCTION_WORDS


def words_missing(expected: str, heard: str) -> list[str]:
    """What of the expected text the transcript lacks: content words, then the number (if any)."""
    expected_words, expected_digits = _canonical_tokens(expected)
    heard_words, heard_digits = _canonical_tokens(heard)
    missing = sorted((expected_words - FUNCTION_WORDS) - heard_words)
    if expected_digits not in heard_digits:
        missing.append(expected_digits)
    return missing


def load_whisper() -> Any:
    """Whisper tiny.en, the voice pipeline's own (sha256-checked, shared by the process)."""
    from voicecalm.voice.speech_models import whisper_model

    return whisper_model()


def transcribe(model: Any, samples_16k: np.ndarray) -> str:
    segments, _ = model.transcribe(
        samples_16k.astype(np.float32) / 32768.0,
        language="en",
        beam_size=1,
        condition_on_previous_text=False,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()
