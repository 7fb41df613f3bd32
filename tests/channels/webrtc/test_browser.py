"""A real browser calls the assistant: Debian's Chromium, headless, whose microphone is a caller
fixture, talks WebRTC to the server, both inside a private network namespace with only `lo`, so
no packet can leave loopback (telephony.md §3). The call runs in `browser_call.py`; this test
asserts on what it saw. A screenshot of the page is kept in tests/artifacts/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures.fixture_audio import FIXTURES_DIR, load_transcripts, words_missing
from tests.channels.webrtc.example_call import CUSTOMER_NUMBER, EXPECTED_FLOW, PASSCODE
from voicecalm.voice.wav import read_wav

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "tests" / "artifacts"
CALLER_FIXTURE = FIXTURES_DIR / "transfer_money.48k.wav"
CALLER_TEXT = load_transcripts()["transfer_money"]
# Chromium loops its fake microphone: the request comes after the greeting, then a long silence.
SILENCE_BEFORE_S = 12.0
SILENCE_AFTER_S = 30.0


def fake_microphone(path: Path) -> Path:
    """The fixture with the silences around it, as Chromium's fake capture wants it: 48 kHz mono s16."""
    fixture = read_wav(CALLER_FIXTURE)
    assert (fixture.sample_rate, fixture.channels, fixture.bits_per_sample) == (48000, 1, 16)
    before = np.zeros(round(SILENCE_BEFORE_S * fixture.sample_rate), np.int16)
    after = np.zeros(round(SILENCE_AFTER_S * fixture.sample_rate), np.int16)
    samples = np.concatenate([before, fixture.pcm16(), after])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(fixture.sample_rate)
        out.writeframes(samples.tobytes())
    return path


def test_a_browser_call_starts_the_flow_and_the_bot_is_heard(tmp_path: Path) -> None:
    microphone = fake_microphone(tmp_path / "microphone.wav")
    out = tmp_path / "browser"
    in_namespace = 'ip link set lo up && exec "$@"'
    call = [sys.executable, "-m", "tests.channels.webrtc.browser_call", str(microphone), str(out)]
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", in_namespace, "sh", *call], cwd=REPO, capture_output=True, text=True, timeout=420
    )
    if (out / "page.png").exists():
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(out / "page.png", ARTIFACTS / "browser_call.png")
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    spoken, keyed, typed, events = result["spoken"], result["keyed"], result["typed"], result["events"]
    assert not result["console"], result["console"]  # the page logged no error

    # Spoken: what the caller said reached the command generator's prompt, and the flow started.
    heard = [message for message in result["latest_messages"] if not words_missing(CALLER_TEXT, message)]
    assert heard, result["latest_messages"]
    assert EXPECTED_FLOW in [event["flow_id"] for event in events if event["event"] == "flow_started"]
    request = next(event for event in events if event["event"] == "user" and event["text"] in heard)
    # The call's sender id is the WebRTC peer connection id, its channel `browser_audio`.
    assert request["input_channel"] == "browser_audio"
    assert request["metadata"]["call_id"] == typed["sender"]
    # The page showed the transcript, the bot's lines as the tracker has them, and the flow;
    # and the browser received the bot's audio.
    assert spoken["flow"] == EXPECTED_FLOW
    assert any(kind == "user" and text in heard for kind, text in spoken["log"])
    # (A line can show twice: a message cut off by the caller is said again if they said nothing.)
    tracker_bot_lines = [event["text"] for event in events if event["event"] == "bot"]
    page_bot_lines = [text for kind, text in spoken["log"] if kind == "bot"]
    assert set(page_bot_lines) <= set(tracker_bot_lines)
    assert any("customer number" in line for line in page_bot_lines), page_bot_lines
    assert spoken["audio_energy"] > 0

    # Keyed: the page's keypad reached the pipeline as DTMF and filled the customer number.
    keyed_turn = next(event for event in events if event["event"] == "user" and event["text"] == CUSTOMER_NUMBER)
    assert keyed_turn["input_channel"] == "browser_audio" and keyed_turn["metadata"]["source"] == "dtmf"
    assert keyed["slots"]["auth_customer_number"] == CUSTOMER_NUMBER
    assert ["user keys", CUSTOMER_NUMBER] in keyed["log"]
    assert any(kind == "bot" and "passcode" in text for kind, text in keyed["log"])

    # Typed: the text box continued the same conversation through the REST channel.
    typed_turn = next(event for event in events if event["event"] == "user" and event["text"] == PASSCODE)
    assert typed_turn["input_channel"] == "rest"
    assert ["user typed", PASSCODE] in typed["log"]
    assert any(kind == "bot typed" and "verified" in text for kind, text in typed["log"])
    assert typed["slots"]["authenticated"] == "true"

    # Hanging up in the page ended the session on the server.
    assert "session_ended" in [event["event"] for event in events]
    assert (out / "page.png").stat().st_size > 0
