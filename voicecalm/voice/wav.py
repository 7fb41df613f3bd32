"""WAV files and G.711 μ-law, read and coded in one place for the runtime, its tests and benchmarks.

`read_wav_pcm` is what the pipeline takes from a file (`voicecalm voice --input-wav`, spoken tests,
benchmarks): any WAV libsndfile reads, as mono s16 at the pipeline's rate. `read_wav` parses the
RIFF container itself, for callers that need the file as stored: its format fields (the fixture
checks) or the μ-law bytes a phone line carries (the Twilio fake sends them unchanged). libsndfile
only hands out decoded samples, and the stdlib `wave` module rejects μ-law.

μ-law is coded with numpy rather than `audioop` (what pipecat uses): `audioop` is deprecated on
3.11-3.12 and left the stdlib in 3.13, and its encoder puts some negative samples one code away from
where sox and libsndfile (which made the fixtures) put them. This codec matches libsndfile both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

PIPELINE_RATE = 16_000  # what the voice pipeline (VAD, Whisper) takes

# WAVE format tags (RIFF fmt chunk).
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_MULAW = 7

TELEPHONE_RATE = 8000

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635  # the largest magnitude that still fits the top segment once biased


def _ulaw_decode_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF  # codes are stored inverted
    exponent = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


_ULAW_TO_PCM16 = _ulaw_decode_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes as int16 samples."""
    return _ULAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """Integer samples (int16 range) as G.711 μ-law bytes."""
    clipped = np.clip(samples.astype(np.int32), -_ULAW_CLIP, _ULAW_CLIP)
    sign = (clipped < 0).astype(np.int32) << 7
    magnitude = np.abs(clipped) + _ULAW_BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


@dataclass(frozen=True)
class WavAudio:
    """A WAV file as stored: its fmt fields and the bytes of its data chunk."""

    path: Path
    sample_rate: int
    channels: int
    format_tag: int
    bits_per_sample: int
    data: bytes

    def pcm16(self) -> np.ndarray:
        """The samples as int16 (interleaved if not mono), decoding μ-law if needed."""
        if self.format_tag == WAVE_FORMAT_MULAW:
            return ulaw_decode(self.data)
        if self.format_tag == WAVE_FORMAT_PCM and self.bits_per_sample == 16:
            return np.frombuffer(self.data, dtype="<i2").astype(np.int16)
        raise ValueError(f"{self.path}: unsupported WAV encoding (format tag {self.format_tag}, {self.bits_per_sample} bits)")

    def telephone_ulaw(self) -> bytes:
        """The μ-law bytes of an 8 kHz mono μ-law file, as a phone line carries them."""
        layout = (self.format_tag, self.channels, self.sample_rate)
        if layout != (WAVE_FORMAT_MULAW, 1, TELEPHONE_RATE):
            raise ValueError(f"{self.path} is not 8 kHz mono μ-law (format tag, channels, rate = {layout})")
        return self.data

    @property
    def duration_s(self) -> float:
        return len(self.data) / (self.channels * self.bits_per_sample // 8) / self.sample_rate


def read_wav(path: Path | str) -> WavAudio:
    """Parses a RIFF/WAVE file chunk by chunk, up to its data chunk."""
    path = Path(path)
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
            if len(body) < 16:
                raise ValueError(f"{path}: fmt chunk of {len(body)} bytes, a WAV's has at least 16")
            fmt = body
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data chunk before fmt chunk")
            return WavAudio(
                path=path,
                format_tag=int.from_bytes(fmt[0:2], "little"),
                channels=int.from_bytes(fmt[2:4], "little"),
                sample_rate=int.from_bytes(fmt[4:8], "little"),
                bits_per_sample=int.from_bytes(fmt[14:16], "little"),
                data=body,
            )
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    raise ValueError(f"{path} has no data chunk")


def read_wav_pcm(path: Path | str, rate: int = PIPELINE_RATE) -> bytes:
    """A WAV file (PCM s16 or μ-law/A-law, any rate, mono or stereo) as mono s16 PCM at `rate`."""
    import soundfile

    samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if source_rate != rate:
        mono = soxr.resample(mono, source_rate, rate)
    return (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
