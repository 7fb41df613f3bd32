"""Reading the caller-audio fixtures and judging what Whisper heard in them.

Shared by `make_fixtures.py` (which measures the transcripts written into README.md) and the
voice tests (which feed the fixtures to real transports and check the transcripts), so both
judge a transcript by the same rule.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter

from voicecalm.voice.wav import read_wav

FIXTURES_DIR = Path(__file__).resolve().parent
TRANSCRIPTS_FILE = FIXTURES_DIR / "transcripts.json"
CONVERSATIONS_FILE = FIXTURES_DIR / "conversations.json"

WHISPER_SAMPLE_RATE = 16000

# Words whose loss does not change what the caller asked for; everything else in the expected
# text must be heard. Numbers are compared as digit strings, so "two four six eight", "2468"
# and "2-4-6-8" all match.
FUNCTION_WORDS = frozenset(
    "a an the i i'd i'm it it's is was to of and my me some oh that that's".split()
)


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
