"""The one WAV reader and μ-law codec (voicecalm/voice/wav.py) the runtime, fixtures and fakes share."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voicecalm.voice.wav import WAVE_FORMAT_MULAW, read_wav, read_wav_pcm, ulaw_decode, ulaw_encode

ALL_INT16 = np.arange(-32768, 32768).astype(np.int16)
ALL_CODES = bytes(range(256))


def wav_bytes(format_tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_ulaw_round_trip_stays_within_g711_quantisation() -> None:
    decoded = ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int32)
    magnitude = np.abs(ALL_INT16.astype(np.int32))
    in_range = magnitude <= 32635
    # Half a step of the sample's segment: under 1/16 of the sample, 8 at the quietest.
    assert np.all(np.abs(decoded - ALL_INT16)[in_range] <= magnitude[in_range] / 16 + 8)
    assert decoded.max() == 32124 and decoded.min() == -32124  # louder samples clip to the loudest code
    # Every code survives decode → encode, but 0x7f: "-0" decodes to 0, which encodes as 0xff.
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == ALL_CODES.replace(b"\x7f", b"\xff")


def test_ulaw_codes_as_libsndfile_does_both_ways() -> None:
    encoded = io.BytesIO()
    soundfile.write(encoded, ALL_INT16, 8000, format="RAW", subtype="ULAW")
    assert ulaw_encode(ALL_INT16) == encoded.getvalue()
    decoded, _ = soundfile.read(io.BytesIO(ALL_CODES), format="RAW", subtype="ULAW", samplerate=8000, channels=1, dtype="int16")
    assert np.array_equal(ulaw_decode(ALL_CODES), decoded)


def test_a_ulaw_wav_reads_as_stored_and_as_16k_pcm(tmp_path: Path) -> None:
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)
    ulaw = ulaw_encode(tone)
    path = tmp_path / "tone.ulaw.wav"
    path.write_bytes(wav_bytes(WAVE_FORMAT_MULAW, 1, 8000, 8, ulaw))

    audio = read_wav(path)
    assert (audio.format_tag, audio.channels, audio.sample_rate, audio.duration_s) == (WAVE_FORMAT_MULAW, 1, 8000, 1.0)
    assert audio.telephone_ulaw() == ulaw
    assert np.array_equal(audio.pcm16(), ulaw_decode(ulaw))

    pcm_16k = np.frombuffer(read_wav_pcm(path), dtype=np.int16)
    assert len(pcm_16k) == 16000
    spectrum = np.abs(np.fft.rfft(pcm_16k.astype(np.float64)))
    assert np.fft.rfftfreq(len(pcm_16k), 1 / 16000)[int(np.argmax(spectrum))] == pytest.approx(440, abs=2)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"ID3\x04not a wav at all", "is not a RIFF/WAVE file"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt \x04\x00\x00\x00\x01\x00\x01\x00", "fmt chunk of 4 bytes"),
        (b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk before fmt chunk"),
        (wav_bytes(1, 1, 8000, 16, b"")[:36], "has no data chunk"),
    ],
)
def test_a_malformed_wav_is_refused_naming_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "caller.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem) as refused:
        read_wav(path)
    assert str(path) in str(refused.value)


def test_an_unsupported_encoding_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "studio.wav"
    path.write_bytes(wav_bytes(1, 2, 48000, 24, bytes(6 * 10)))
    audio = read_wav(path)
    with pytest.raises(ValueError, match=r"studio\.wav: unsupported WAV encoding \(format tag 1, 24 bits\)"):
        audio.pcm16()
    with pytest.raises(ValueError, match=r"studio\.wav is not 8 kHz mono μ-law"):
        audio.telephone_ulaw()
