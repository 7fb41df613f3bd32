"""The test caller's voice (`voicecalm.voice.caller_voice`), shared by the audio fixtures and
spoken e2e: the same caller in both, and the stand-in for machines without sox sounds as low and
is heard as well."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from audio_fixtures.fixture_audio import FIXTURES_DIR, WHISPER_SAMPLE_RATE, transcribe, words_missing
from voicecalm.voice.caller_voice import CallerSpeech, CallerVoice, caller_speech
from voicecalm.voice.speech_models import whisper_model

LINE = "I'd like to check my account balance, please."


def median_pitch_hz(speech: CallerSpeech) -> float:
    """Median F0 of the voiced 40 ms frames, by autocorrelation between 60 and 300 Hz."""
    samples = speech.samples.astype(np.float32) / 32768.0
    size = int(0.04 * speech.rate)
    shortest, longest = speech.rate // 300, speech.rate // 60
    pitches = []
    for start in range(0, len(samples) - size, size // 2):
        frame = samples[start : start + size] - samples[start : start + size].mean()
        if np.sqrt(np.mean(frame**2)) < 0.05:
            continue
        correlation = np.correlate(frame, frame, "full")[size - 1 :]
        lag = shortest + int(np.argmax(correlation[shortest:longest]))
        if correlation[lag] > 0.5 * correlation[0]:
            pitches.append(speech.rate / lag)
    return float(np.median(pitches))


def test_spoken_e2e_speaks_with_the_caller_of_the_audio_fixtures() -> None:
    spec = yaml.safe_load((FIXTURES_DIR / "fixtures.yml").read_text(encoding="utf-8"))
    assert CallerVoice.model_validate(spec["caller_voice"]) == CallerVoice()


@pytest.mark.slow
def test_without_sox_the_caller_is_as_much_lower_and_whisper_still_hears_every_word() -> None:
    voice = CallerVoice()
    plain = caller_speech(LINE, voice.model_copy(update={"pitch_cents": 0}), shifter="resample")
    lowered = caller_speech(LINE, voice, shifter="resample")

    assert median_pitch_hz(lowered) / median_pitch_hz(plain) == pytest.approx(2 ** (voice.pitch_cents / 1200), rel=0.05)
    pcm = np.frombuffer(lowered.pcm(WHISPER_SAMPLE_RATE, lead_s=0.4, tail_s=1.2), dtype=np.int16)
    assert words_missing(LINE, transcribe(whisper_model(), pcm)) == []
    # Trimmed and peak-normalised like the fixtures: speech from the first sample to the last, peak -3 dBFS.
    assert lowered.samples[0] != 0 and lowered.samples[-1] != 0
    assert np.abs(lowered.samples).max() == pytest.approx(32768 * 10 ** (-3 / 20), rel=0.01)
