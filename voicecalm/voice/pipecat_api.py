"""Every pipecat name voicecalm uses, in one place: pipecat 1.x renames often (voice.md §1), so an
upgrade is fixed here. Other modules import from this one, never from `pipecat` directly."""

# ruff: noqa: F401

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.frames.frames import (
    AggregatedTextFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    CancelWorkerFrame,
    EndFrame,
    EndWorkerFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    InterruptionWorkerFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    OutputAudioRawFrame,
    StartFrame,
    STTUpdateSettingsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.frames.frames import BotSpeakingFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.turns.user_mute.always_user_mute_strategy import AlwaysUserMuteStrategy
from pipecat.turns.user_mute.base_user_mute_strategy import BaseUserMuteStrategy
from pipecat.turns.user_start.transcription_user_turn_start_strategy import TranscriptionUserTurnStartStrategy
from pipecat.turns.user_start.vad_user_turn_start_strategy import VADUserTurnStartStrategy
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.text.base_text_aggregator import TextType
from pipecat.utils.time import time_now_iso8601
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.audio.utils import create_stream_resampler
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.services.piper.tts import PiperHttpTTSService
from pipecat.frames.frames import OutputTransportMessageUrgentFrame
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketOutputTransport,
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.utils.utils import obj_id
from pipecat.frames.frames import VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame

# Cloud speech services: imported only when selected, since each needs its pipecat extra.
CLOUD_STT_SERVICES = {
    "deepgram": ("pipecat.services.deepgram.stt", "DeepgramSTTService"),
    "azure": ("pipecat.services.azure.stt", "AzureSTTService"),
    "elevenlabs": ("pipecat.services.elevenlabs.stt", "ElevenLabsSTTService"),
    "cartesia": ("pipecat.services.cartesia.stt", "CartesiaSTTService"),
}
CLOUD_TTS_SERVICES = {
    "deepgram": ("pipecat.services.deepgram.tts", "DeepgramTTSService"),
    "azure": ("pipecat.services.azure.tts", "AzureTTSService"),
    "elevenlabs": ("pipecat.services.elevenlabs.tts", "ElevenLabsTTSService"),
    "cartesia": ("pipecat.services.cartesia.tts", "CartesiaTTSService"),
    "rime": ("pipecat.services.rime.tts", "RimeTTSService"),
}


def cloud_service(services: dict[str, tuple[str, str]], name: str, api_key: str, options: dict[str, object]) -> FrameProcessor:
    import importlib

    module_name, class_name = services[name]
    return getattr(importlib.import_module(module_name), class_name)(api_key=api_key, **options)
