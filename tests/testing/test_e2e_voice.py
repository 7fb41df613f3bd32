"""`voicecalm test e2e --voice`: the example assistant's test cases spoken by the test caller into
the real voice pipeline (Silero VAD, smart-turn, Whisper tiny.en, Piper, the engine).

The command generator is the loopback model server of tests/voice (it answers by simple rules
on the words it gets), so with `--commands llm` a case passes only when the ASR heard the words
the rules need; with `--commands oracle` the annotations stand in for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.voice.conftest import voice_model, voice_project  # noqa: F401  (shared fixtures)
from voicecalm.actions import create_action_runner
from voicecalm.cli import app
from voicecalm.project import load_project
from voicecalm.testing.e2e.loader import load_tests
from voicecalm.testing.e2e.spoken import SpokenE2ERunner
from voicecalm.tracker.events import FlowStarted, UserUttered
from voicecalm.voice.settings import LocalAudioSettings

# Two cases from the example's e2e_tests/ (check_balance.yml, pattern_cancel_flow.yml) in the
# words of the audio fixtures, the account chosen with its button's payload (typed: a call
# cannot say a payload), plus a one-word request that tiny.en mishears ("Rowans.").
SPOKEN_TESTS = """
fixtures:
  - verified_maria:
      - authenticated: true
      - customer_id: cust_001
      - customer_name: Maria
metadata:
  - caller:
      line: test bench
test_cases:
  - test_case: check a balance by voice
    steps:
      - utter: utter_greet
      - user: "I'd like to check my account balance, please."
        commands: [start flow check_balance]
      - utter: utter_ask_auth_customer_number
      - user: "My customer number is one, two, three, four, five, six, seven, eight."
        commands: [set slot auth_customer_number 12345678]
      - slot_was_set:
          - auth_customer_number: "12345678"
      - utter: utter_ask_auth_passcode
      - user: "Two four six eight."
        commands: [set slot auth_passcode 2468]
      - slot_was_set:
          - authenticated: true
          - customer_name: Maria
      - utter: utter_authentication_successful
      - utter: utter_ask_account_type
      - user: "/SetSlots(account_type=checking)"
      - slot_was_set:
          - account_balance: 2450.75
      - utter: utter_account_balance

  - test_case: cancel a transfer by voice
    fixtures: [verified_maria]
    steps:
      - user: "I want to transfer some money."
        commands: [start flow transfer_money]
        assertions:
          - flow_started: transfer_money
          - bot_uttered:
              utter_name: utter_ask_transfer_from_account
      - user: "Actually, forget it."
        commands: [cancel flow]
        assertions:
          - flow_cancelled:
              flow_id: transfer_money
          - bot_uttered:
              utter_name: utter_flow_cancelled_rasa

  - test_case: a one-word request
    metadata: caller
    steps:
      - user: "Balance."
        commands: [start flow check_balance]
        assertions:
          - flow_started: check_balance
"""


@pytest.fixture
def spoken_tests(tmp_path: Path) -> Path:
    path = tmp_path / "spoken.yml"
    path.write_text(SPOKEN_TESTS, encoding="utf-8")
    return path


def test_a_bad_speech_setting_is_a_load_error_before_anything_is_spoken(
    spoken_tests: Path, voice_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "bank"
    shutil.copytree(voice_project, project)
    (project / "credentials.yml").write_text("local_audio:\n  tts: {name: piper, speed: 2}\n")
    result = CliRunner().invoke(app, ["test", "e2e", str(spoken_tests), "--project", str(project), "--voice"])
    assert result.exit_code == 2
    assert "credentials.yml:" in result.output and "speed" in result.output


@pytest.mark.slow
def test_spoken_cases_pass_and_a_misheard_line_fails_showing_written_and_heard(
    spoken_tests: Path, voice_project: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    cli = ["test", "e2e", str(spoken_tests), "--project", str(voice_project), "--voice", "-o", str(results)]
    result = CliRunner().invoke(app, cli)
    output = result.output

    assert result.exit_code == 1, output
    assert output.rstrip().splitlines()[-1] == "2 passed, 1 failed"
    # The failing case: its assertion, then the line as written and as Whisper heard it.
    failure = output[output.index("--- a one-word request") :]
    assert "flow 'check_balance' was not started" in failure
    written = failure.index("written: Balance.")
    heard = failure[written:].splitlines()[1]
    assert "heard:" in heard and "<- heard differently" in heard
    assert "balance" not in heard.split("heard:")[1].lower()
    # The rules generator got the misheard words: the DU report shows the mismatch.
    assert "Mismatching steps" in output
    assert "spoken lines: 6, heard as written: " in output and "caller voice: Piper joe" in output

    # Every spoken line is recorded with what was heard; the typed payload is not.
    passed = yaml.safe_load((results / "e2e_results_passed.yml").read_text())["test_results"]
    spoken = {case["name"]: case["spoken_lines"] for case in passed}
    balance = spoken["check a balance by voice"]
    assert [line["written"] for line in balance] == [
        "I'd like to check my account balance, please.",
        "My customer number is one, two, three, four, five, six, seven, eight.",
        "Two four six eight.",
    ]
    heard = [" ".join(line["heard"]).lower() for line in balance]
    assert "balance" in heard[0] and "12345678" in heard[1] and "2468" in heard[2]
    assert [line["written"] for line in spoken["cancel a transfer by voice"]] == [
        "I want to transfer some money.",
        "Actually, forget it.",
    ]
    failed = yaml.safe_load((results / "e2e_results_failed.yml").read_text())["test_results"]
    assert failed[0]["spoken_lines"][0]["written"] == "Balance."


@pytest.mark.slow
async def test_with_oracle_commands_the_misheard_line_passes_and_its_hearing_is_still_recorded(
    spoken_tests: Path, voice_project: Path
) -> None:
    """Oracle mode tests turn-taking, the engine and the spoken answers: the annotation is used
    whatever the ASR heard, and the report still shows what that was."""
    project = load_project(voice_project)
    cases = [case for case in load_tests(spoken_tests, project).cases if case.name == "a one-word request"]
    runner = SpokenE2ERunner(project, settings=LocalAudioSettings(), mode="oracle", actions=create_action_runner(project))
    [result] = await runner.run(cases)

    assert result.passed, result.failure
    turn = result.turns[1]
    assert turn.heard and "balance" not in " ".join(turn.heard).lower()
    assert not turn.heard_as_written
    user = next(e for e in turn.events if isinstance(e, UserUttered))
    assert user.text == turn.heard[0]
    assert user.commands == [{"command": "start flow", "flow": "check_balance"}]
    assert user.metadata["channel"] == "local_audio"  # the call's own metadata, and the test case's
    assert user.metadata["line"] == "test bench"
    assert [e.flow_id for e in turn.events if isinstance(e, FlowStarted)][0] == "check_balance"
