"""The caller-audio fixtures in audio_fixtures/: each file is in the format its consumer needs
(pipeline and Twilio 16 kHz/μ-law, SIPp μ-law WAV, Chromium 48 kHz, ALSA raw, `--input-wav`),
has silence where the VAD and Whisper need it, and holds the words transcripts.json promises, as
heard by the same Whisper tiny.en the pipeline runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio_fixtures.fixture_audio import (
    FIXTURES_DIR,
    WHISPER_SAMPLE_RATE,
    load_conversations,
    load_transcripts,
    load_whisper,
    speech_16k,
    transcribe,
    words_missing,
)
from voicecalm.voice.files import split_utterances
from voicecalm.voice.wav import WAVE_FORMAT_MULAW, WAVE_FORMAT_PCM, WavAudio, read_wav

TRANSCRIPTS = load_transcripts()
CONVERSATIONS = load_conversations()
TURNS = [name for name, text in TRANSCRIPTS.items() if text and name not in CONVERSATIONS]
NON_SPEECH = [name for name, text in TRANSCRIPTS.items() if not text]
BROWSER_CAPTURES = sorted(path.name for path in FIXTURES_DIR.glob("*.48k.wav"))
RAW_MICROPHONE = sorted(path.name for path in FIXTURES_DIR.glob("*.16k.raw"))

MIN_LEADING_SILENCE_S = 0.3
MIN_TRAILING_SILENCE_S = 1.0
MIN_PAUSE_BETWEEN_TURNS_S = 2.5
# |sample| at or below this counts as silence: -50 dBFS, far under speech, above μ-law's smallest steps.
SILENCE_PEAK = 100


def at(seconds: float) -> int:
    return round(seconds * WHISPER_SAMPLE_RATE)


def silent_edges(audio: WavAudio) -> tuple[float, float]:
    """Seconds of silence before the first and after the last audible sample."""
    loud = np.flatnonzero(np.abs(audio.pcm16().astype(np.int32)) > SILENCE_PEAK)
    assert loud.size, "no audible sample at all"
    total = len(audio.pcm16())
    return loud[0] / audio.sample_rate, (total - 1 - loud[-1]) / audio.sample_rate


def assert_format(audio: WavAudio, rate: int, format_tag: int, bits: int) -> None:
    layout = (audio.sample_rate, audio.channels, audio.format_tag, audio.bits_per_sample)
    assert layout == (rate, 1, format_tag, bits)


def assert_silence_around_speech(audio: WavAudio) -> None:
    leading, trailing = silent_edges(audio)
    assert leading >= MIN_LEADING_SILENCE_S, f"only {leading:.2f} s before the speech"
    assert trailing >= MIN_TRAILING_SILENCE_S, f"only {trailing:.2f} s after the speech"


def test_the_catalogue_lists_turns_non_speech_and_conversations() -> None:
    assert len(TURNS) >= 12
    assert set(NON_SPEECH) == {"silence_5s", "noise_4s"}
    assert set(CONVERSATIONS) == {"conversation_balance", "conversation_transfer"}
    assert BROWSER_CAPTURES == ["transfer_money.48k.wav"]
    assert RAW_MICROPHONE == ["check_balance.16k.raw"]


@pytest.mark.parametrize("name", TURNS)
def test_pipeline_version_is_16k_mono_s16_with_silence_around_the_speech(name: str) -> None:
    audio = read_wav(FIXTURES_DIR / f"{name}.wav")
    assert_format(audio, WHISPER_SAMPLE_RATE, WAVE_FORMAT_PCM, 16)
    assert_silence_around_speech(audio)


@pytest.mark.parametrize("name", TURNS + NON_SPEECH)
def test_telephone_version_is_8k_mono_mulaw_wav(name: str) -> None:
    ulaw = read_wav(FIXTURES_DIR / f"{name}.ulaw.wav")
    assert_format(ulaw, 8000, WAVE_FORMAT_MULAW, 8)
    assert ulaw.duration_s == pytest.approx(read_wav(FIXTURES_DIR / f"{name}.wav").duration_s, abs=0.01)
    if name in TURNS:
        assert_silence_around_speech(ulaw)


@pytest.mark.parametrize("file_name", BROWSER_CAPTURES)
def test_browser_capture_is_48k_mono_s16_of_the_same_turn(file_name: str) -> None:
    capture = read_wav(FIXTURES_DIR / file_name)
    assert_format(capture, 48000, WAVE_FORMAT_PCM, 16)
    assert_silence_around_speech(capture)
    turn = file_name.removesuffix(".48k.wav")
    assert capture.duration_s == pytest.approx(read_wav(FIXTURES_DIR / f"{turn}.wav").duration_s, abs=0.01)


@pytest.mark.parametrize("file_name", RAW_MICROPHONE)
def test_alsa_microphone_file_is_the_turn_as_headerless_s16le(file_name: str) -> None:
    turn = read_wav(FIXTURES_DIR / file_name.replace(".16k.raw", ".wav"))
    assert (FIXTURES_DIR / file_name).read_bytes() == turn.data


def test_silence_is_digital_silence() -> None:
    for file_name in ("silence_5s.wav", "silence_5s.ulaw.wav"):
        audio = read_wav(FIXTURES_DIR / file_name)
        assert audio.duration_s == pytest.approx(5.0)
        assert not np.any(audio.pcm16())


def test_noise_is_quiet_but_not_silent() -> None:
    for file_name in ("noise_4s.wav", "noise_4s.ulaw.wav"):
        audio = read_wav(FIXTURES_DIR / file_name)
        samples = audio.pcm16().astype(np.float64) / 32768.0
        rms_db = 20 * np.log10(np.sqrt(np.mean(samples**2)))
        assert audio.duration_s == pytest.approx(4.0)
        assert -70 < rms_db < -40


@pytest.mark.parametrize("name", NON_SPEECH)
@pytest.mark.parametrize("suffix", [".wav", ".ulaw.wav"])
def test_silero_finds_no_speech_in_the_non_speech_fixtures(name: str, suffix: str) -> None:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = speech_16k(FIXTURES_DIR / f"{name}{suffix}").astype(np.float32) / 32768.0
    assert get_speech_timestamps(samples, VadOptions()) == []


@pytest.mark.parametrize("name", TURNS)
def test_silero_finds_the_speech_of_every_turn(name: str) -> None:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = speech_16k(FIXTURES_DIR / f"{name}.ulaw.wav").astype(np.float32) / 32768.0
    assert get_speech_timestamps(samples, VadOptions(speech_pad_ms=0)) != []


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_conversation_holds_its_turns_where_the_timeline_says(name: str) -> None:
    timeline = CONVERSATIONS[name]
    audio = read_wav(FIXTURES_DIR / f"{name}.wav")
    assert_format(audio, WHISPER_SAMPLE_RATE, WAVE_FORMAT_PCM, 16)
    assert audio.duration_s == pytest.approx(timeline.duration_s, abs=0.001)
    assert_silence_around_speech(audio)
    samples = audio.pcm16()
    assert TRANSCRIPTS[name] == " ".join(turn.text for turn in timeline.turns)
    for turn in timeline.turns:
        own_file = speech_16k(FIXTURES_DIR / f"{turn.fixture}.wav")
        # The timeline is rounded to 1 ms; the silence around a turn makes a wider window safe.
        span = samples[at(turn.start_s - 0.01) : at(turn.end_s + 0.01)]
        assert turn.text == TRANSCRIPTS[turn.fixture]
        # The same samples as the turn's own file, so Whisper's check of that file covers this span.
        assert np.array_equal(span[np.abs(span) > SILENCE_PEAK], own_file[np.abs(own_file) > SILENCE_PEAK])
    for before, after in zip(timeline.turns, timeline.turns[1:]):
        assert after.start_s - before.end_s >= MIN_PAUSE_BETWEEN_TURNS_S - 0.002  # 1 ms rounding each side
        gap = samples[at(before.end_s + 0.01) : at(after.start_s - 0.01)]
        assert not np.any(gap)
    assert len(timeline.bot_before_turn) == len(timeline.turns)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_input_wav_splitter_cuts_a_conversation_into_its_turns(name: str) -> None:
    pcm = speech_16k(FIXTURES_DIR / f"{name}.wav").tobytes()
    assert len(split_utterances(pcm)) == len(CONVERSATIONS[name].turns)


@pytest.mark.parametrize(
    ("expected", "heard"),
    [
        ("My customer number is one, two, three, four, five, six, seven, eight.", "My customer number is 1-2-3-4-5-6-7-8."),
        ("Two four six eight.", "2 4 6 8"),
        ("Two four six eight.", "2468."),
        ("Two hundred and fifty dollars.", "$250."),
        ("Sorry, I mean three hundred dollars.", "sorry i mean 300 dollars"),
        ("Checking, please.", "checking please"),
    ],
)
def test_a_transcript_matches_with_numbers_as_words_or_digits(expected: str, heard: str) -> None:
    assert words_missing(expected, heard) == []


@pytest.mark.parametrize(
    ("expected", "heard", "missing"),
    [
        ("Sorry, I meant three hundred dollars.", "Sorry, I met $300.", ["meant"]),
        ("Two four six eight.", "2 4 6 9", ["2468"]),
        ("Send it to David Lee, please.", "Send it today, but Lee, please.", ["david"]),
    ],
)
def test_a_transcript_that_misses_a_content_word_or_digit_does_not_match(
    expected: str, heard: str, missing: list[str]
) -> None:
    assert words_missing(expected, heard) == missing


@pytest.fixture(scope="module")
def whisper() -> Any:
    return load_whisper()


def _heard(whisper: Any, path: Path) -> str:
    return transcribe(whisper, speech_16k(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", TURNS)
@pytest.mark.parametrize("suffix", [".wav", ".ulaw.wav"])
def test_whisper_hears_every_content_word(whisper: Any, name: str, suffix: str) -> None:
    heard = _heard(whisper, FIXTURES_DIR / f"{name}{suffix}")
    assert words_missing(TRANSCRIPTS[name], heard) == [], heard


@pytest.mark.slow
@pytest.mark.parametrize("file_name", BROWSER_CAPTURES)
def test_whisper_hears_the_browser_capture(whisper: Any, file_name: str) -> None:
    heard = _heard(whisper, FIXTURES_DIR / file_name)
    assert words_missing(TRANSCRIPTS[file_name.removesuffix(".48k.wav")], heard) == [], heard
