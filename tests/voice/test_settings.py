"""Voice channel settings read from a real project's credentials.yml and endpoints.yml."""

from __future__ import annotations

import logging
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.dialogue.conftest import BANK
from voicecalm.project import Project, load_project
from voicecalm.voice.settings import (
    BrowserAudioSettings,
    CloudAsrSettings,
    CloudTtsSettings,
    FasterWhisperSettings,
    LocalAudioSettings,
    PiperSettings,
    SileroVadSettings,
    SipSettings,
    TwilioMediaStreamsSettings,
    VoiceChannelSettings,
    VoiceSettingsError,
    WebRtcVadSettings,
    channel_settings,
    default_silence_timeout,
    require_speech_services,
)


def project_with(tmp_path: Path, credentials: str | None = None, endpoints: str | None = None) -> Project:
    root = tmp_path / "bank"
    shutil.copytree(BANK, root)
    if credentials is not None:
        (root / "credentials.yml").write_text(textwrap.dedent(credentials).lstrip("\n"))
    if endpoints is not None:
        (root / "endpoints.yml").write_text(textwrap.dedent(endpoints).lstrip("\n"))
    return load_project(root)


def settings_error(tmp_path: Path, credentials: str, channel: str) -> str:
    project = project_with(tmp_path, credentials)
    with pytest.raises(VoiceSettingsError) as raised:
        channel_settings(project, channel)
    return str(raised.value)


# --- shared keys -----------------------------------------------------------------------------


def test_a_channel_named_with_nothing_under_it_gets_every_default(tmp_path: Path) -> None:
    settings = channel_settings(project_with(tmp_path, "browser_audio:\n"), "browser_audio")
    assert isinstance(settings, BrowserAudioSettings)
    assert settings.asr == FasterWhisperSettings(
        name="faster_whisper", model="tiny.en", language="en", compute_type="int8", beam_size=1, cpu_threads=2
    )
    assert settings.tts == PiperSettings(name="piper", voice="en_US-joe-medium", volume=0.8)
    assert settings.vad == SileroVadSettings()
    assert settings.interruptions.enabled is True
    assert settings.interruptions.vad_start_secs == 0.2
    assert settings.turn_end == "smart_turn"
    assert settings.speech_timeout == 0.6
    assert settings.silence_timeout is None
    assert (settings.filler.after_ms, settings.filler.response) == (1500, "utter_voice_filler")


def test_a_channel_missing_from_credentials_has_no_settings(tmp_path: Path) -> None:
    project = project_with(tmp_path, "rest: {}\nlocal_audio: {}\n")
    assert channel_settings(project, "sip") is None
    assert channel_settings(project, "twilio_media_streams") is None
    assert isinstance(channel_settings(project, "local_audio"), LocalAudioSettings)


def test_only_voice_channels_have_voice_settings(tmp_path: Path) -> None:
    with pytest.raises(VoiceSettingsError, match="'rest' is not a voice channel"):
        channel_settings(project_with(tmp_path, "rest: {}\n"), "rest")


def test_every_shared_key_is_read(tmp_path: Path) -> None:
    credentials = """
        local_audio:
          asr: {name: faster_whisper, model: /models/whisper-base, language: de, compute_type: float32, beam_size: 3, cpu_threads: 4}
          tts: {name: piper, voice: /voices/thorsten.onnx, volume: 0.5}
          vad: {name: webrtcvad, aggressiveness: 3}
          interruptions: {enabled: false, vad_start_secs: 0.4}
          turn_end: speech_timeout
          speech_timeout: 0.9
          silence_timeout: 12
          filler: {after_ms: 800, response: utter_hold_on}
    """
    settings = channel_settings(project_with(tmp_path, credentials), "local_audio")
    assert settings is not None
    assert settings.asr == FasterWhisperSettings(
        model="/models/whisper-base", language="de", compute_type="float32", beam_size=3, cpu_threads=4
    )
    assert settings.tts == PiperSettings(voice="/voices/thorsten.onnx", volume=0.5)
    assert settings.vad == WebRtcVadSettings(name="webrtcvad", aggressiveness=3)
    assert (settings.interruptions.enabled, settings.interruptions.vad_start_secs) == (False, 0.4)
    assert (settings.turn_end, settings.speech_timeout, settings.silence_timeout) == ("speech_timeout", 0.9, 12.0)
    assert (settings.filler.after_ms, settings.filler.response) == (800, "utter_hold_on")


def test_a_service_may_be_named_alone() -> None:
    settings = VoiceChannelSettings.model_validate({"asr": "faster_whisper", "tts": "piper", "vad": "webrtcvad"})
    assert settings.asr == FasterWhisperSettings()
    assert settings.tts == PiperSettings()
    assert settings.vad == WebRtcVadSettings(name="webrtcvad", aggressiveness=2)


def test_cloud_services_are_accepted_with_their_provider_options() -> None:
    settings = VoiceChannelSettings.model_validate(
        {
            "asr": {"name": "deepgram", "endpoint": "api.deepgram.com", "language_map": {"en": {"model": "nova-3"}}},
            "tts": {"name": "rime", "language_map": {"en": {"voice": "cove"}}},
        }
    )
    assert isinstance(settings.asr, CloudAsrSettings)
    assert settings.asr.name == "deepgram"
    assert settings.asr.options == {"endpoint": "api.deepgram.com", "language_map": {"en": {"model": "nova-3"}}}
    assert isinstance(settings.tts, CloudTtsSettings)
    assert settings.tts.options == {"language_map": {"en": {"voice": "cove"}}}


def test_rasa_streaming_asr_interruption_keys_are_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="voicecalm.voice.settings"):
        settings = VoiceChannelSettings.model_validate(
            {"interruptions": {"enabled": True, "min_words": 2, "backchannel_threshold": 0.5}}
        )
    assert settings.interruptions.model_dump() == {"enabled": True, "vad_start_secs": 0.2}
    assert "min_words, backchannel_threshold need a streaming ASR and are ignored" in caplog.text


@pytest.mark.parametrize(
    ("channel_yaml", "expected"),
    [
        ("speed: 2", "credentials.yml: browser_audio.speed: Extra inputs are not permitted"),
        (
            "asr: {name: whisperx}",
            "credentials.yml: browser_audio.asr: `name` must be one of: faster_whisper, deepgram, azure, elevenlabs, cartesia",
        ),
        ("asr: {beam_size: 0}", "credentials.yml: browser_audio.asr.beam_size: Input should be greater than or equal to 1"),
        ("asr: {compute_type: int4}", "credentials.yml: browser_audio.asr.compute_type: Input should be"),
        ("tts: {name: piper, speed: 2}", "credentials.yml: browser_audio.tts.speed: Extra inputs are not permitted"),
        ("tts: {volume: 1.5}", "credentials.yml: browser_audio.tts.volume: Input should be less than or equal to 1"),
        ("tts: {name: piper_http}", "credentials.yml: browser_audio.tts.url: Field required"),
        ("vad: {name: webrtcvad, aggressiveness: 4}", "credentials.yml: browser_audio.vad.aggressiveness: Input should be less than or equal to 3"),
        ("vad: cobra", "credentials.yml: browser_audio.vad: `name` must be one of: silero, webrtcvad"),
        ("turn_end: llm", "credentials.yml: browser_audio.turn_end: Input should be 'smart_turn' or 'speech_timeout'"),
        ("silence_timeout: -1", "credentials.yml: browser_audio.silence_timeout: Input should be greater than or equal to 0"),
    ],
)
def test_a_wrong_shared_key_is_named_in_the_error(tmp_path: Path, channel_yaml: str, expected: str) -> None:
    assert expected in settings_error(tmp_path, f"browser_audio:\n  {channel_yaml}\n", "browser_audio")


# --- Twilio ----------------------------------------------------------------------------------


def test_the_documented_twilio_settings_are_read_with_environment_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "s3cret-token")
    credentials = """
        twilio_media_streams:
          server_url: "bot.example.com"
          account_sid: "${TWILIO_ACCOUNT_SID}"
          auth_token: "${TWILIO_AUTH_TOKEN}"
          username: "ops"
          password: "hunter2"
          asr: {name: faster_whisper}
          tts: {name: piper}
          interruptions: {enabled: true}
          silence_timeout: 30
          handoff: {number: "+15550002222", caller_id: "+15550001111", timeout: 25}
    """
    settings = channel_settings(project_with(tmp_path, credentials), "twilio_media_streams")
    assert isinstance(settings, TwilioMediaStreamsSettings)
    assert settings.server_url == "bot.example.com"
    assert settings.account_sid == "AC0123456789abcdef0123456789abcdef"
    assert settings.auth_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(settings) and "hunter2" not in repr(settings)
    assert settings.username == "ops" and settings.password is not None
    assert settings.silence_timeout == 30.0
    assert settings.handoff is not None
    assert (settings.handoff.number, settings.handoff.sip, settings.handoff.caller_id, settings.handoff.timeout) == (
        "+15550002222",
        None,
        "+15550001111",
        25,
    )


def test_twilio_needs_only_the_host_and_the_auth_token(tmp_path: Path) -> None:
    credentials = "twilio_media_streams:\n  server_url: bot.example.com:8443\n  auth_token: t\n  handoff: {sip: 'sip:desk@pbx.example'}\n"
    settings = channel_settings(project_with(tmp_path, credentials), "twilio_media_streams")
    assert isinstance(settings, TwilioMediaStreamsSettings)
    assert settings.account_sid is None and settings.username is None
    assert settings.handoff is not None and settings.handoff.sip == "sip:desk@pbx.example"
    assert settings.handoff.timeout == 25


@pytest.mark.parametrize(
    ("channel_yaml", "expected"),
    [
        ("server_url: bot.example.com", "credentials.yml: twilio_media_streams.auth_token: Field required"),
        ("auth_token: t", "credentials.yml: twilio_media_streams.server_url: Field required"),
        (
            "server_url: https://bot.example.com\n  auth_token: t",
            "credentials.yml: twilio_media_streams.server_url: `server_url` is the public host name, like bot.example.com",
        ),
        (
            "server_url: bot.example.com\n  auth_token: t\n  account_sid: f00",
            "credentials.yml: twilio_media_streams.account_sid: `account_sid` starts with AC",
        ),
        (
            "server_url: bot.example.com\n  auth_token: t\n  username: ops",
            "credentials.yml: twilio_media_streams: `username` and `password` go together",
        ),
        (
            "server_url: bot.example.com\n  auth_token: t\n  handoff: {number: '+15550002222', sip: 'sip:a@b'}",
            "credentials.yml: twilio_media_streams.handoff: `handoff` needs exactly one of `number` or `sip`",
        ),
        (
            "server_url: bot.example.com\n  auth_token: t\n  handoff: {number: '555-0100'}",
            "credentials.yml: twilio_media_streams.handoff: `handoff.number` '555-0100' is not an E.164 number",
        ),
        (
            "server_url: bot.example.com\n  auth_token: t\n  handoff: {number: '+15550002222', timeout: 2}",
            "credentials.yml: twilio_media_streams.handoff.timeout: Input should be greater than or equal to 5",
        ),
    ],
)
def test_a_wrong_twilio_key_is_named_in_the_error(tmp_path: Path, channel_yaml: str, expected: str) -> None:
    assert expected in settings_error(tmp_path, f"twilio_media_streams:\n  {channel_yaml}\n", "twilio_media_streams")


def test_every_error_of_a_channel_is_reported_at_once(tmp_path: Path) -> None:
    message = settings_error(tmp_path, "twilio_media_streams:\n  asr: {beam_size: 0}\n", "twilio_media_streams")
    assert message.splitlines() == [
        "credentials.yml: twilio_media_streams.asr.beam_size: Input should be greater than or equal to 1",
        "credentials.yml: twilio_media_streams.server_url: Field required",
        "credentials.yml: twilio_media_streams.auth_token: Field required",
    ]


# --- SIP -------------------------------------------------------------------------------------


def test_the_documented_sip_settings_are_read(tmp_path: Path) -> None:
    credentials = """
        sip:
          listen: 127.0.0.1:5070
          user: bot
          domain: trunk.example
          password: pw
          reg_interval: 600
          registrar: sip:trunk.example
          auth_user: bot-auth
          max_calls: 8
          handoff: {uri: "sip:desk@pbx.example"}
          vad: webrtcvad
    """
    settings = channel_settings(project_with(tmp_path, credentials), "sip")
    assert isinstance(settings, SipSettings)
    assert settings.listen_address == ("127.0.0.1", 5070)
    assert (settings.user, settings.domain, settings.password.get_secret_value()) == ("bot", "trunk.example", "pw")
    assert (settings.reg_interval, settings.registrar, settings.auth_user) == (600, "sip:trunk.example", "bot-auth")
    assert settings.max_calls == 8
    assert settings.handoff is not None and settings.handoff.uri == "sip:desk@pbx.example"
    assert isinstance(settings.vad, WebRtcVadSettings)


def test_a_trunk_without_registration_needs_only_user_and_domain(tmp_path: Path) -> None:
    settings = channel_settings(project_with(tmp_path, "sip: {user: bot, domain: 127.0.0.1}\n"), "sip")
    assert isinstance(settings, SipSettings)
    assert settings.listen_address == ("0.0.0.0", 5060)
    assert (settings.password.get_secret_value(), settings.reg_interval, settings.registrar) == ("", 0, None)
    assert settings.max_calls == 2 and settings.handoff is None


@pytest.mark.parametrize(
    ("channel_yaml", "expected"),
    [
        ("{domain: d}", "credentials.yml: sip.user: Field required"),
        ("{user: u}", "credentials.yml: sip.domain: Field required"),
        ("{user: u, domain: d, listen: '5060'}", "credentials.yml: sip.listen: `listen` '5060' is not host:port"),
        ("{user: u, domain: d, listen: 'host:70000'}", "credentials.yml: sip.listen: `listen` 'host:70000' is not host:port"),
        ("{user: u, domain: d, reg_interval: 60}", "credentials.yml: sip: `reg_interval` > 0 registers with a `registrar`"),
        ("{user: u, domain: d, max_calls: 0}", "credentials.yml: sip.max_calls: Input should be greater than or equal to 1"),
        ("{user: u, domain: d, handoff: {uri: desk}}", "credentials.yml: sip.handoff.uri: 'desk' is not a SIP URI"),
        ("{user: u, domain: d, handoff: {number: '+15550002222'}}", "credentials.yml: sip.handoff.number: Extra inputs"),
    ],
)
def test_a_wrong_sip_key_is_named_in_the_error(tmp_path: Path, channel_yaml: str, expected: str) -> None:
    assert expected in settings_error(tmp_path, f"sip: {channel_yaml}\n", "sip")


def test_an_ipv6_listen_address_is_split_on_its_port() -> None:
    assert SipSettings(user="u", domain="d", listen="[::1]:5070").listen_address == ("::1", 5070)


# --- silence timeout default -----------------------------------------------------------------


def test_the_channel_silence_timeout_wins_over_the_endpoints_one(tmp_path: Path) -> None:
    project = project_with(
        tmp_path, "browser_audio: {silence_timeout: 7}\nlocal_audio: {}\n", "interaction_handling:\n  global_silence_timeout: 12\n"
    )
    assert default_silence_timeout(channel_settings(project, "browser_audio"), project.endpoints) == 7.0
    assert default_silence_timeout(channel_settings(project, "local_audio"), project.endpoints) == 12.0
    assert default_silence_timeout(None, project.endpoints) == 12.0


def test_without_any_setting_the_silence_timeout_is_thirty_seconds(tmp_path: Path) -> None:
    project = project_with(tmp_path, "browser_audio: {}\n")
    assert default_silence_timeout(channel_settings(project, "browser_audio"), project.endpoints) == 30.0


def test_a_wrong_global_silence_timeout_is_named(tmp_path: Path) -> None:
    project = project_with(tmp_path, endpoints="interaction_handling: {global_silence_timeout: soon}\n")
    with pytest.raises(VoiceSettingsError, match=r"endpoints.yml: interaction_handling.global_silence_timeout: 'soon'"):
        default_silence_timeout(None, project.endpoints)


# --- can the selected services run? ----------------------------------------------------------


def test_the_embedded_services_need_no_key() -> None:
    require_speech_services(VoiceChannelSettings())


def test_a_cloud_service_without_its_package_and_key_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_SPEECH_API_KEY", raising=False)
    settings = VoiceChannelSettings.model_validate({"asr": {"name": "deepgram"}, "tts": {"name": "azure"}})
    with pytest.raises(VoiceSettingsError) as raised:
        require_speech_services(settings)
    assert str(raised.value).splitlines() == [
        "asr `deepgram` needs the package deepgram-sdk: pip install 'pipecat-ai[deepgram]'",
        "asr `deepgram` needs its API key in the environment variable DEEPGRAM_API_KEY",
        "tts `azure` needs the package azure-cognitiveservices-speech: pip install 'pipecat-ai[azure]'",
        "tts `azure` needs its API key in the environment variable AZURE_SPEECH_API_KEY",
    ]


def test_a_cloud_service_whose_package_is_installed_needs_only_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = VoiceChannelSettings.model_validate({"tts": {"name": "cartesia"}})
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(VoiceSettingsError, match="^tts `cartesia` needs its API key in the environment variable CARTESIA_API_KEY$"):
        require_speech_services(settings)
    monkeypatch.setenv("CARTESIA_API_KEY", "key")
    require_speech_services(settings)
