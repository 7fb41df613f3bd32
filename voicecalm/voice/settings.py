"""One voice channel's settings in `credentials.yml` (voice.md §3–§5, telephony.md §1.1, §2.2).

Every voice channel shares `VoiceChannelSettings` (speech services, VAD, barge-in, turn end,
silence, filler); Twilio and SIP add their own keys. Unknown keys are errors, except inside a
cloud speech service, whose provider options (Rasa's `language_map`, `endpoint`, ...) belong to
that provider and are passed through. Cloud packages are never imported here:
`require_speech_services` only looks them up.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from voicecalm.project import Project
from voicecalm.project.schema import EndpointsFileModel

logger = logging.getLogger(__name__)

DEFAULT_SILENCE_TIMEOUT = 30.0
CLOUD_ASR_NAMES = ("deepgram", "azure", "elevenlabs", "cartesia")
CLOUD_TTS_NAMES = ("deepgram", "azure", "elevenlabs", "cartesia", "rime")
# Rasa keys that need a streaming ASR (voice.md §4): accepted so Rasa files load, then ignored.
IGNORED_INTERRUPTION_KEYS = ("min_words", "backchannel_threshold")


class VoiceSettingsError(ValueError):
    """A voice channel's settings are invalid, or a selected speech service cannot run here."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ProviderOptions(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def options(self) -> dict[str, Any]:
        """The provider's own keys, for its pipecat service."""
        return dict(self.model_extra or {})


def _by_name(default: str, tags: dict[str, str]) -> Discriminator:
    """A union discriminated by `name`, where a missing name means `default`."""

    def tag(value: Any) -> str | None:
        name = value.get("name", default) if isinstance(value, dict) else getattr(value, "name", None)
        return tags.get(name) if isinstance(name, str) else None

    names = ", ".join(tags)
    return Discriminator(tag, custom_error_type="unknown_name", custom_error_message=f"`name` must be one of: {names}")


# --- speech services -------------------------------------------------------------------------


class FasterWhisperSettings(_Settings):
    name: Literal["faster_whisper"] = "faster_whisper"
    model: str = "tiny.en"  # a packaged model name or a local CTranslate2 folder
    language: str = "en"
    compute_type: Literal["int8", "int8_float32", "int16", "float32", "default", "auto"] = "int8"
    beam_size: int = Field(default=1, ge=1, le=10)
    cpu_threads: int = Field(default=2, ge=1)


class CloudAsrSettings(_ProviderOptions):
    name: Literal["deepgram", "azure", "elevenlabs", "cartesia"]


class PiperSettings(_Settings):
    name: Literal["piper"] = "piper"
    voice: str = "en_US-joe-medium"  # a packaged voice name or a local .onnx file
    volume: float = Field(default=0.8, gt=0, le=1)  # Piper normalises each sentence to full scale


class PiperHttpSettings(_Settings):
    name: Literal["piper_http"]
    url: str
    voice: str | None = None


class CloudTtsSettings(_ProviderOptions):
    name: Literal["deepgram", "azure", "elevenlabs", "cartesia", "rime"]


AsrSettings = Annotated[
    Annotated[FasterWhisperSettings, Tag("local")] | Annotated[CloudAsrSettings, Tag("cloud")],
    _by_name("faster_whisper", {"faster_whisper": "local", **{name: "cloud" for name in CLOUD_ASR_NAMES}}),
]
TtsSettings = Annotated[
    Annotated[PiperSettings, Tag("local")]
    | Annotated[PiperHttpSettings, Tag("http")]
    | Annotated[CloudTtsSettings, Tag("cloud")],
    _by_name("piper", {"piper": "local", "piper_http": "http", **{name: "cloud" for name in CLOUD_TTS_NAMES}}),
]


# --- listening -------------------------------------------------------------------------------


class SileroVadSettings(_Settings):
    name: Literal["silero"] = "silero"


class WebRtcVadSettings(_Settings):
    name: Literal["webrtcvad"]
    aggressiveness: int = Field(default=2, ge=0, le=3)  # webrtcvad's mode: 3 filters the most non-speech


VadSettings = Annotated[
    Annotated[SileroVadSettings, Tag("silero")] | Annotated[WebRtcVadSettings, Tag("webrtcvad")],
    _by_name("silero", {"silero": "silero", "webrtcvad": "webrtcvad"}),
]


class InterruptionSettings(_Settings):
    enabled: bool = True  # false: half duplex, the caller cannot interrupt the bot
    vad_start_secs: float = Field(default=0.2, gt=0, le=5)  # speech needed before a barge-in

    @model_validator(mode="before")
    @classmethod
    def _drop_streaming_asr_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        ignored = [key for key in IGNORED_INTERRUPTION_KEYS if key in data]
        if ignored:
            logger.warning("interruptions: %s need a streaming ASR and are ignored", ", ".join(ignored))
        return {key: value for key, value in data.items() if key not in ignored}


class FillerSettings(_Settings):
    after_ms: int = Field(default=1500, ge=0)  # a custom action slower than this gets a filler line
    response: str = "utter_voice_filler"


class VoiceChannelSettings(_Settings):
    """The keys every voice channel has."""

    asr: AsrSettings = Field(default_factory=FasterWhisperSettings)
    tts: TtsSettings = Field(default_factory=PiperSettings)
    vad: VadSettings = Field(default_factory=SileroVadSettings)
    interruptions: InterruptionSettings = Field(default_factory=InterruptionSettings)
    turn_end: Literal["smart_turn", "speech_timeout"] = "smart_turn"
    # Silence that ends a speech segment. Whisper transcribes each segment alone, so pauses
    # inside a sentence ("one, two, three") must not cut it into clips too short to hear well;
    # pipecat's 0.2 s did, 0.5 s keeps a spoken number whole.
    vad_stop_secs: float = Field(default=0.5, gt=0, le=3)
    speech_timeout: float = Field(default=0.6, gt=0, le=10)  # seconds of silence, for `turn_end: speech_timeout`
    silence_timeout: float | None = Field(default=None, ge=0)  # the channel default (voice.md §5)
    filler: FillerSettings = Field(default_factory=FillerSettings)

    @field_validator("asr", "tts", "vad", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value  # `vad: webrtcvad`


# --- channels --------------------------------------------------------------------------------

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SIP_URI = re.compile(r"^sips?:\S+$")


class TwilioHandoff(_Settings):
    number: str | None = None  # E.164, dialled with <Dial><Number>
    sip: str | None = None  # dialled with <Dial><Sip>
    caller_id: str | None = None
    timeout: int = Field(default=25, ge=5, le=600)  # Twilio's <Dial timeout> range

    @model_validator(mode="after")
    def _one_target(self) -> "TwilioHandoff":
        if (self.number is None) == (self.sip is None):
            raise ValueError("`handoff` needs exactly one of `number` or `sip`")
        if self.number is not None and not _E164.match(self.number):
            raise ValueError(f"`handoff.number` {self.number!r} is not an E.164 number like +15550002222")
        if self.sip is not None and not _SIP_URI.match(self.sip):
            raise ValueError(f"`handoff.sip` {self.sip!r} is not a SIP URI like sip:desk@pbx.example")
        return self


class TwilioMediaStreamsSettings(VoiceChannelSettings):
    server_url: str  # public host (and port): builds the wss:// and signature URLs
    auth_token: SecretStr = Field(min_length=1)  # webhook signatures, REST hang-up and transfer
    account_sid: str | None = None  # without it: hang up and transfer by closing the stream
    username: str | None = None  # HTTP basic auth on the webhook, with `password`
    password: SecretStr | None = None
    handoff: TwilioHandoff | None = None

    @field_validator("server_url")
    @classmethod
    def _host_only(cls, value: str) -> str:
        if "://" in value or "/" in value or not value:
            raise ValueError("`server_url` is the public host name, like bot.example.com (no scheme, no path)")
        return value

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("AC"):
            raise ValueError("`account_sid` starts with AC (is it the auth token?)")
        return value

    @model_validator(mode="after")
    def _basic_auth_pair(self) -> "TwilioMediaStreamsSettings":
        if (self.username is None) != (self.password is None):
            raise ValueError("`username` and `password` go together")
        return self


class SipHandoff(_Settings):
    uri: str

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, value: str) -> str:
        if not _SIP_URI.match(value) and not value.startswith("tel:"):
            raise ValueError(f"{value!r} is not a SIP URI like sip:desk@pbx.example")
        return value


class SipSettings(VoiceChannelSettings):
    listen: str = "0.0.0.0:5060"  # host:port of the SIP socket
    user: str
    domain: str
    password: SecretStr = SecretStr("")
    reg_interval: int = Field(default=0, ge=0)  # seconds; 0: a trunk that sends calls without registration
    registrar: str | None = None
    auth_user: str | None = None
    max_calls: int = Field(default=2, ge=1)  # more concurrent calls are refused with 486 Busy Here
    handoff: SipHandoff | None = None

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"`listen` {value!r} is not host:port, like 0.0.0.0:5060")
        return value

    @model_validator(mode="after")
    def _registration(self) -> "SipSettings":
        if self.reg_interval > 0 and self.registrar is None:
            raise ValueError("`reg_interval` > 0 registers with a `registrar`: set one")
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class BrowserAudioSettings(VoiceChannelSettings):
    """`browser_audio`: the shared keys only."""


class LocalAudioSettings(VoiceChannelSettings):
    """`local_audio` (microphone and speakers): the shared keys only."""


CHANNEL_SETTINGS: dict[str, type[VoiceChannelSettings]] = {
    "twilio_media_streams": TwilioMediaStreamsSettings,
    "sip": SipSettings,
    "browser_audio": BrowserAudioSettings,
    "local_audio": LocalAudioSettings,
}

# Tags of the unions above: they appear in pydantic's error paths but are not keys of the file.
_UNION_TAGS = frozenset({"local", "cloud", "http", "silero", "webrtcvad"})


def channel_settings(project: Project, channel_name: str) -> VoiceChannelSettings | None:
    """The settings of voice channel `channel_name`, or None when credentials.yml does not
    name it (`browser_audio:` with nothing under it means all defaults)."""
    model = CHANNEL_SETTINGS.get(channel_name)
    if model is None:
        raise VoiceSettingsError(f"'{channel_name}' is not a voice channel; voice channels: {', '.join(CHANNEL_SETTINGS)}")
    credentials = project.credentials
    if channel_name not in credentials.model_fields_set:
        return None
    try:
        return model.model_validate(getattr(credentials, channel_name) or {})
    except ValidationError as error:
        raise VoiceSettingsError(_describe(error, channel_name)) from None


def _describe(error: ValidationError, channel_name: str) -> str:
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in (channel_name, *problem["loc"]) if part not in _UNION_TAGS)
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"credentials.yml: {path}: {message}")
    return "\n".join(lines)


def default_silence_timeout(settings: VoiceChannelSettings | None, endpoints: EndpointsFileModel) -> float:
    """The channel default (voice.md §5): the channel's `silence_timeout`, else endpoints.yml
    `interaction_handling.global_silence_timeout`, else 30 s."""
    if settings is not None and settings.silence_timeout is not None:
        return settings.silence_timeout
    value = endpoints.interaction_handling.get("global_silence_timeout")
    if value is None:
        return DEFAULT_SILENCE_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise VoiceSettingsError(
            f"endpoints.yml: interaction_handling.global_silence_timeout: {value!r} is not a number of seconds ≥ 0"
        )
    return float(value)


# --- can the selected services run here? -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Requirement:
    module: str  # looked up, never imported
    package: str
    install: str
    api_key: str | None = None


ASR_REQUIREMENTS = {
    "faster_whisper": _Requirement("faster_whisper", "faster-whisper", "voicecalm"),
    "deepgram": _Requirement("deepgram", "deepgram-sdk", "pipecat-ai[deepgram]", "DEEPGRAM_API_KEY"),
    "azure": _Requirement(
        "azure.cognitiveservices.speech", "azure-cognitiveservices-speech", "pipecat-ai[azure]", "AZURE_SPEECH_API_KEY"
    ),
    "elevenlabs": _Requirement("websockets", "websockets", "pipecat-ai[elevenlabs]", "ELEVENLABS_API_KEY"),
    "cartesia": _Requirement("websockets", "websockets", "pipecat-ai[cartesia]", "CARTESIA_API_KEY"),
}
TTS_REQUIREMENTS = {
    "piper": _Requirement("piper", "piper-tts", "voicecalm[embedded]"),
    **{name: requirement for name, requirement in ASR_REQUIREMENTS.items() if name in CLOUD_TTS_NAMES},
    "rime": _Requirement("websockets", "websockets", "pipecat-ai[rime]", "RIME_API_KEY"),
}


def require_speech_services(settings: VoiceChannelSettings) -> None:
    """Raise `VoiceSettingsError` naming every missing package or API key of the selected ASR
    and TTS (a start-up error rather than a failure on the first call)."""
    missing = []
    for kind, name, requirement in (
        ("asr", settings.asr.name, ASR_REQUIREMENTS.get(settings.asr.name)),
        ("tts", settings.tts.name, TTS_REQUIREMENTS.get(settings.tts.name)),
    ):
        if requirement is None:
            continue
        if not _importable(requirement.module):
            missing.append(f"{kind} `{name}` needs the package {requirement.package}: pip install '{requirement.install}'")
        if requirement.api_key is not None and not os.environ.get(requirement.api_key):
            missing.append(f"{kind} `{name}` needs its API key in the environment variable {requirement.api_key}")
    if missing:
        raise VoiceSettingsError("\n".join(missing))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package of a dotted name
        return False
