"""Voice activity detection for a channel's `vad` setting (voice.md §2).

`silero` (default) is pipecat's Silero analyzer. `webrtcvad` is Google's WebRTC VAD from the
`webrtcvad-wheels` package: 30–50× cheaper, but it takes low noise after speech for speech more
often (models.md). pipecat's own `WebRTCVADAnalyzer` needs Daily's native library, hence ours.
"""

from __future__ import annotations

import webrtcvad

from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.settings import VoiceChannelSettings, WebRtcVadSettings

WEBRTC_FRAME_MS = 20  # webrtcvad judges 10, 20 or 30 ms frames
WEBRTC_SAMPLE_RATES = (8000, 16000, 32000, 48000)


class WebRtcVadAnalyzer(pc.VADAnalyzer):
    """A yes/no per 20 ms frame, as confidence 1.0 or 0.0. Give it `VADParams(min_volume=0.0)`:
    webrtcvad judges speech itself, and pipecat's volume gate would hide quiet callers."""

    def __init__(self, *, aggressiveness: int = 2, sample_rate: int | None = None, params: pc.VADParams | None = None) -> None:
        super().__init__(sample_rate=sample_rate, params=params or pc.VADParams(min_volume=0.0))
        self._vad = webrtcvad.Vad(aggressiveness)

    def set_sample_rate(self, sample_rate: int) -> None:
        rate = self._init_sample_rate or sample_rate
        if rate not in WEBRTC_SAMPLE_RATES:
            raise ValueError(f"webrtcvad takes {', '.join(map(str, WEBRTC_SAMPLE_RATES))} Hz audio, not {rate}")
        super().set_sample_rate(sample_rate)

    def num_frames_required(self) -> int:
        return self.sample_rate * WEBRTC_FRAME_MS // 1000

    def voice_confidence(self, buffer: bytes) -> float:
        return 1.0 if self._vad.is_speech(buffer, self.sample_rate) else 0.0


def create_vad_analyzer(settings: VoiceChannelSettings, sample_rate: int = 16000) -> pc.VADAnalyzer:
    """The analyzer a channel's settings select; `interruptions.vad_start_secs` is the speech
    needed before the caller counts as speaking (and so before a barge-in); `vad_stop_secs` the
    silence that ends a segment."""
    start_secs, stop_secs = settings.interruptions.vad_start_secs, settings.vad_stop_secs
    if isinstance(settings.vad, WebRtcVadSettings):
        return WebRtcVadAnalyzer(
            aggressiveness=settings.vad.aggressiveness,
            sample_rate=sample_rate,
            params=pc.VADParams(start_secs=start_secs, stop_secs=stop_secs, min_volume=0.0),
        )
    return pc.SileroVADAnalyzer(sample_rate=sample_rate, params=pc.VADParams(start_secs=start_secs, stop_secs=stop_secs))
