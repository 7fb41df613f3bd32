"""The test caller's voice: Piper's joe made slower and deeper, so a recording tells the caller
from the bot (plain joe) by ear and the ASR never hears the bot's own voice read back.

One recipe for everything that speaks as a caller: `audio_fixtures/make_fixtures.py` (the WAV
fixtures of the voice tests) and `voicecalm test e2e --voice` (each user line of a test file).

The pitch shift is Debian's `sox` when it is on PATH (what the fixtures were made with, and what
`make_fixtures.py` insists on, so its files come out byte-identical on every run); elsewhere a
pure-Python stand-in: Piper speaks faster by the shift factor and the audio is slowed down by
resampling, which lowers pitch and formants together as sox's `pitch` does. Same pitch, about
15% slower (Piper's durations do not scale exactly with `length_scale`); not the same bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import soxr
from pydantic import BaseModel, ConfigDict

from voicecalm.models.packaged import locate_packaged
from voicecalm.voice.speech_models import PIPER_JOE_MEDIUM, SpeechModelError

# Piper's own lead-in/tail is cut at this level; the speech is then normalised to this peak.
TRIM_THRESHOLD_DB = -55
PEAK_DB = -3
TRIM_MIN_SECONDS = 0.02  # sox `silence`: this much audio above the threshold starts the speech

PitchShifter = Literal["sox", "resample"]


class CallerVoice(BaseModel):
    """Piper's SynthesisConfig, onnxruntime's seed and the pitch shift. The defaults are the
    caller of the audio fixtures (`audio_fixtures/fixtures.yml`): noise below Piper's defaults
    (0.667/0.8), with which Whisper tiny.en misheard more words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    length_scale: float = 1.1
    noise_scale: float = 0.4
    noise_w_scale: float = 0.5
    seed: int = 7
    pitch_cents: int = -350


@dataclass(frozen=True, slots=True)
class CallerSpeech:
    """Spoken words, trimmed of silence and peak-normalised: mono int16 at `rate` (Piper's 22,050 Hz)."""

    samples: np.ndarray
    rate: int
    shifter: PitchShifter

    def pcm(self, rate: int, lead_s: float = 0.0, tail_s: float = 0.0) -> bytes:
        """As s16 PCM at `rate`, with digital silence before and after."""
        audio = soxr.resample(self.samples.astype(np.float32) / 32768.0, self.rate, rate, quality="VHQ")
        speech = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
        silence = [np.zeros(round(seconds * rate), dtype="<i2") for seconds in (lead_s, tail_s)]
        return np.concatenate([silence[0], speech, silence[1]]).tobytes()


def default_shifter() -> PitchShifter:
    return "sox" if shutil.which("sox") else "resample"


def caller_speech(text: str, voice: CallerVoice | None = None, shifter: PitchShifter | None = None) -> CallerSpeech:
    """`text` as the caller says it. The same text, voice and shifter give the same samples.
    Blocking (about a second: the voice is loaded afresh, see `_piper`): call from a thread."""
    voice = voice or CallerVoice()
    shifter = shifter or default_shifter()
    if shifter == "sox":
        samples, rate = _piper(text, voice, voice.length_scale)
        return CallerSpeech(_sox_shift(samples, rate, voice.pitch_cents), rate, shifter)
    factor = 2.0 ** (voice.pitch_cents / 1200)
    samples, rate = _piper(text, voice, voice.length_scale * factor)
    # Played at `factor` of its speed: `pitch_cents` lower, and slower again by about as much
    # as Piper was made faster.
    slowed = soxr.resample(samples.astype(np.float32) / 32768.0, rate, rate / factor, quality="VHQ")
    return CallerSpeech(_normalise(_trim(slowed)), rate, shifter)


def _piper(text: str, voice: CallerVoice, length_scale: float) -> tuple[np.ndarray, int]:
    import onnxruntime

    try:
        from piper import PiperVoice, SynthesisConfig  # GPL: imported only here, when a caller speaks
    except ImportError as error:
        raise SpeechModelError("the caller's voice needs piper-tts, installed with voicecalm[embedded]") from error
    model = _joe_model()
    # Piper's noise comes from onnxruntime random ops, seeded when the session is created: a
    # fresh session per text keeps each line independent of what was spoken before it.
    onnxruntime.set_seed(voice.seed)
    piper = PiperVoice.load(model, model.with_suffix(".onnx.json"))
    config = SynthesisConfig(length_scale=length_scale, noise_scale=voice.noise_scale, noise_w_scale=voice.noise_w_scale)
    chunks = list(piper.synthesize(text, config))
    if not chunks:
        raise ValueError(f"Piper says nothing for {text!r}")
    samples = np.frombuffer(b"".join(chunk.audio_int16_bytes for chunk in chunks), dtype=np.int16)
    return samples, chunks[0].sample_rate


@cache
def _joe_model() -> Path:
    return locate_packaged(PIPER_JOE_MEDIUM, error=SpeechModelError) / "en_US-joe-medium.onnx"  # sha256 once


def run_sox(*args: str | int | float | Path) -> None:
    # -D: no dither, so padded silences stay digital zero and reruns are byte-identical.
    subprocess.run(["sox", "-D", *map(str, args)], check=True)


def _sox_shift(samples: np.ndarray, rate: int, pitch_cents: int) -> np.ndarray:
    trim = ["silence", "1", TRIM_MIN_SECONDS, f"{TRIM_THRESHOLD_DB}d"]
    with tempfile.TemporaryDirectory() as tmp:
        spoken, shifted = Path(tmp) / "spoken.wav", Path(tmp) / "shifted.wav"
        with wave.open(str(spoken), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(samples.astype("<i2").tobytes())
        run_sox(spoken, shifted, "pitch", pitch_cents, *trim, "reverse", *trim, "reverse", "norm", PEAK_DB)
        with wave.open(str(shifted), "rb") as result:
            return np.frombuffer(result.readframes(result.getnframes()), dtype="<i2").astype(np.int16)


def _trim(audio: np.ndarray) -> np.ndarray:
    """Without the quiet before the first and after the last loud sample (sox `silence`, roughly)."""
    loud = np.flatnonzero(np.abs(audio) > 10 ** (TRIM_THRESHOLD_DB / 20))
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio[:0]


def _normalise(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    scaled = audio * (10 ** (PEAK_DB / 20) / peak) if peak > 0 else audio
    return np.clip(np.round(scaled * 32768.0), -32768, 32767).astype(np.int16)
