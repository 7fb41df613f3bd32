"""`voicecalm voice` from the command line: a recorded conversation through the real pipeline
(Silero VAD, smart-turn, Whisper tiny.en, Piper; the command generator is the rule-based loopback
model of conftest.py), and the clear message when there is no sound card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures.fixture_audio import load_conversations, words_missing
from tests.voice.conftest import FIXTURES, REPO
from voicecalm.channels.microphone import EXIT_CODE, NO_MICROPHONE

CLI = "from voicecalm.cli import app; app(prog_name='voicecalm')"


def voicecalm(*args: str, home: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    if home is not None:
        environment["HOME"] = str(home)  # no .asoundrc: PortAudio finds no device in this container
    return subprocess.run(
        [sys.executable, "-c", CLI, "voice", *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout
    )


def test_without_a_microphone_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    done = voicecalm(str(REPO), home=tmp_path, timeout=120)
    assert done.returncode == EXIT_CODE
    assert done.stderr.strip() == NO_MICROPHONE
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_recorded_conversation_runs_turn_by_turn_and_leaves_the_bot_audio_and_a_timeline(
    voice_project: Path, tmp_path: Path
) -> None:
    output = tmp_path / "bot.wav"
    done = voicecalm(str(voice_project), "--input-wav", str(FIXTURES / "conversation_balance.wav"), "--output-wav", str(output))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "first audio" in done.stdout  # the summary table

    timeline = json.loads(output.with_suffix(".json").read_text())  # the default: next to the bot audio
    expected = load_conversations()["conversation_balance"]
    assert "How can I help you" in " ".join(timeline["greeting"])
    turns = timeline["turns"]
    # Each recorded turn was heard as one caller turn, in order, and reached the engine.
    assert len(turns) == len(expected.turns)
    for turn, said in zip(turns, expected.turns):
        assert not words_missing(said.text, turn["transcript"]), (said.text, turn["transcript"])
        assert turn["text"] and turn["barge_in"] is None  # each turn waited for the bot's answer
    # What the tracker shows for each turn: the flow it started, the slot it filled, the answer.
    assert turns[0]["flows_started"][:3] == ["check_balance", "authenticate_user", "pattern_collect_information"]
    assert {"command": "start flow", "flow": "check_balance"}.items() <= turns[0]["commands"][0].items()
    assert "12345678" in turns[1]["text"]  # spoken digits normalised before the command generator
    assert "customer number" in turns[0]["bot"][-1] and "passcode" in turns[1]["bot"][-1]
    assert any("balance is" in text for text in turns[3]["bot"])
    # Every answered turn has each stage, in the order the pipeline runs them.
    stages = ["speech_ended", "vad_stopped", "turn_ended", "understood", "first_message", "tts_audio", "bot_audio"]
    for turn in turns:
        assert turn["latency_ms"] is not None
        moments = [turn["at"][stage] for stage in stages]
        assert moments == sorted(moments)
    assert timeline["totals"]["turns"] == timeline["totals"]["answered"] == len(turns)

    # The bot's side: speech, on the call's timeline, as long as the call.
    with wave.open(str(output)) as recorded:
        rate = recorded.getframerate()
        samples = np.frombuffer(recorded.readframes(recorded.getnframes()), dtype=np.int16)
    assert samples.size / rate >= timeline["duration_s"]
    last_answer = turns[-1]["at"]["bot_audio"]
    assert np.abs(samples[int(last_answer * rate) :]).max() > 1000  # the last answer is where the timeline says
    assert np.count_nonzero(np.abs(samples) > 1000) > 10 * rate  # many seconds of speech, not clicks
