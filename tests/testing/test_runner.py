"""Running test cases: fixtures, metadata, stubs, oracle and llm modes, the DU report."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.testing.conftest import STUBS, ScriptedGenerator, last_line, run_cli
from voicecalm.dialogue.commands import Command
from voicecalm.project import Project
from voicecalm.testing.e2e.du import evaluate
from voicecalm.testing.e2e.loader import load_tests
from voicecalm.testing.e2e.results import CaseResult
from voicecalm.testing.e2e.runner import E2ERunner
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import (
    ActionExecuted,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUttered,
)


async def run(bank: Project, folder: Path, text: str, **runner) -> list[CaseResult]:
    (folder / "e2e.yml").write_text(STUBS + textwrap.dedent(text), encoding="utf-8")
    return await E2ERunner(bank, **runner).run(load_tests(folder, bank).cases)


def texts(result: CaseResult) -> list[str]:
    return [e.text or "" for turn in result.turns for e in turn.events if isinstance(e, BotUttered)]


async def test_fixtures_are_slot_events_right_after_session_start(bank: Project, tmp_path: Path) -> None:
    (tmp_path / "conftest.yml").write_text("fixtures:\n  - shared:\n      - nickname: Jo\n")
    [result] = await run(
        bank,
        tmp_path,
        """
        fixtures:
          - logged_in:
              - logged_in: true
        test_cases:
          - test_case: vip
            fixtures: [logged_in, shared]
            steps:
              - user: "offers?"
                commands: [start flow vip_offer]
              - utter: utter_vip
        """,
        mode="oracle",
    )
    assert result.passed, result.failure
    session = result.turns[0].events
    assert isinstance(session[0], SessionStarted)
    slots = [(e.slot, e.value) for e in session if isinstance(e, SlotSet)]
    assert slots[-2:] == [("logged_in", True), ("nickname", "Jo")]


async def test_without_the_fixture_the_guarded_flow_does_not_start(bank: Project, tmp_path: Path) -> None:
    [result] = await run(
        bank,
        tmp_path,
        """
        test_cases:
          - test_case: no vip
            steps:
              - user: "offers?"
                commands: [start flow vip_offer]
              - utter: utter_vip
        """,
        mode="oracle",
    )
    assert not result.passed


async def test_test_case_and_step_metadata_are_merged_step_wins(bank: Project, tmp_path: Path) -> None:
    [result] = await run(
        bank,
        tmp_path,
        """
        metadata:
          - caller:
              phone: "+15550001111"
              language: en
          - german:
              language: de
        test_cases:
          - test_case: metadata
            metadata: caller
            steps:
              - user: "balance"
                metadata: german
                commands: [start flow check_balance]
              - user: "thanks"
                commands: [cancel flow]
        """,
        mode="oracle",
    )
    users = [e for turn in result.turns for e in turn.events if isinstance(e, UserUttered)]
    assert [dict(u.metadata) for u in users] == [
        {"phone": "+15550001111", "language": "de"},
        {"phone": "+15550001111", "language": "en"},
    ]


async def test_stubs_are_file_wide_and_a_test_case_may_override_them(bank: Project, tmp_path: Path) -> None:
    (tmp_path / "e2e.yml").write_text(
        textwrap.dedent(
            """
            stub_custom_actions:
              action_check_balance:
                events: [{event: slot, name: balance, value: 120.5}]
              low_balance::action_check_balance:
                events: [{event: slot, name: balance, value: 3}]
            test_cases:
              - test_case: normal balance
                steps:
                  - user: "balance"
                    commands: [start flow check_balance]
                  - bot: "Your balance is 120.5."
              - test_case: low balance
                steps:
                  - user: "balance"
                    commands: [start flow check_balance]
                  - bot: "Your balance is 3.0."
            """
        )
    )
    results = await E2ERunner(bank, mode="oracle").run(load_tests(tmp_path, bank).cases)
    assert [r.passed for r in results] == [True, True], [r.failure for r in results]


async def test_a_stub_reply_is_checked_like_a_server_reply(bank: Project, tmp_path: Path) -> None:
    (tmp_path / "e2e.yml").write_text(
        textwrap.dedent(
            """
            stub_custom_actions:
              action_check_balance:
                events: [{event: no_such_event}]
            test_cases:
              - test_case: broken stub
                steps:
                  - user: "balance"
                    commands: [start flow check_balance]
                  - utter: utter_internal_error_rasa
            """
        )
    )
    [result] = await E2ERunner(bank, mode="oracle").run(load_tests(tmp_path, bank).cases)
    assert result.passed, result.failure
    actions = [e for e in result.turns[1].events if isinstance(e, ActionExecuted) and e.action_name == "action_check_balance"]
    assert actions[0].metadata["error"] == "invalid_response"


async def test_each_test_case_starts_a_fresh_conversation(bank: Project, tmp_path: Path) -> None:
    case = """
          - test_case: {name}
            steps:
              - user: "send money"
                commands: [start flow transfer_money]
              - utter: utter_ask_recipient
    """
    results = await run(bank, tmp_path, "test_cases:" + case.format(name="one") + case.format(name="two"), mode="oracle")
    assert [r.passed for r in results] == [True, True]


def test_oracle_mode_fails_a_test_case_with_an_unannotated_step(write) -> None:
    path = write(
        """
        test_cases:
          - test_case: unannotated
            steps:
              - user: "send money"
                commands: [start flow transfer_money]
              - user: "to Jane please"
              - utter: utter_ask_amount
        """
    )
    result = run_cli(path, "--commands", "oracle")
    assert result.exit_code == 1
    assert (
        f"{path}:{_line(path, 'to Jane please')}: user step 'to Jane please' has no `commands:` annotation and no command generator is configured"
        in result.output
    )
    assert last_line(result.output) == "0 passed, 1 failed"


def test_llm_mode_without_a_generator_fails_every_generator_bound_step(write) -> None:
    path = write(
        """
        test_cases:
          - test_case: needs the generator
            steps:
              - user: "send money"
                commands: [start flow transfer_money]
          - test_case: payloads only
            steps:
              - user: "/SetSlots(nickname=Jo)"
        """
    )
    result = run_cli(path)
    assert result.exit_code == 1
    assert f"{path}:{_line(path, 'send money')}: user step 'send money' needs the command generator, but none is configured" in result.output
    assert last_line(result.output) == "1 passed, 1 failed"


DU_TESTS = """
test_cases:
  - test_case: transfer
    steps:
      - user: "send money to Jane Doe"
        commands: [start flow transfer_money, set slot recipient Jane Doe]
      - utter: utter_ask_amount
      - user: "fifty"
        commands: ["SetSlot(amount, 50)"]
      - utter: utter_ask_confirmed
      - user: "/SetSlots(confirmed=true)"
      - utter: utter_transfer_done
  - test_case: divergent
    steps:
      - user: "check balance"
        commands: [start flow check_balance]
      - user: "hmm"
        commands: []
      - user: "pay or balance"
        commands: [disambiguate flows]
      - user: "cancel"
        commands: [cancel flow]
"""
SCRIPT = {
    "send money to Jane Doe": ["start flow transfer_money", "set slot recipient Jane   Doe"],
    "fifty": ["set slot amount 50.0"],
    "check balance": ["start flow transfer_money"],
    "hmm": [],
    "pay or balance": ["disambiguate flows pay_bill check_balance"],
    "cancel": ["cancel flow", "offtopic reply"],
}


async def test_llm_mode_scores_the_generator_against_the_annotations(bank: Project, tmp_path: Path) -> None:
    generator = ScriptedGenerator(SCRIPT)
    results = await run(bank, tmp_path, DU_TESTS, mode="llm", generator=generator)
    assert [r.passed for r in results] == [True, True], [r.failure for r in results]
    assert generator.calls == list(SCRIPT)  # payload steps never reach the generator
    report = evaluate([s for r in results for s in r.du_steps], bank.domain.slots)
    assert [s.match for s in report.steps] == [True, True, False, True, True, False]
    assert report.accuracy == pytest.approx(4 / 6)
    counts = {name: (c.tp, c.fp, c.fn, c.precision, c.recall) for name, c in report.per_command.items()}
    assert counts == {
        "cancel flow": (1, 0, 0, 1.0, 1.0),
        "chitchat": (0, 1, 0, 0.0, None),
        "clarify": (1, 0, 0, 1.0, 1.0),
        "set slot": (2, 0, 0, 1.0, 1.0),
        "start flow": (1, 1, 1, 0.5, 0.5),
    }
    assert report.per_command["chitchat"].f1 is None
    assert (report.micro.tp, report.micro.fp, report.micro.fn) == (5, 2, 1)
    assert report.micro.precision == pytest.approx(5 / 7)
    assert report.micro.recall == pytest.approx(5 / 6)
    assert [s.step.text for s in report.first_divergent] == ["check balance"]


class StateRecordingGenerator(ScriptedGenerator):
    """Also records the flows on the stack when each message was predicted."""

    def __init__(self, script: dict[str, Sequence[str]]) -> None:
        super().__init__(script)
        self.stacks: list[list[str]] = []

    async def predict(self, text: str, conversation: Conversation, project: Project) -> list[Command]:
        self.stacks.append([frame.get("flow_id", "") for frame in conversation.stack])
        return await super().predict(text, conversation, project)


async def test_du_mode_judges_each_step_in_the_conversation_as_written(bank: Project, tmp_path: Path) -> None:
    # "check balance" is mispredicted as a transfer; in llm mode the case goes on in the wrong
    # flow, in du mode it goes on as annotated.
    generator = StateRecordingGenerator(SCRIPT)
    results = await run(bank, tmp_path, DU_TESTS, mode="du", generator=generator)
    assert [r.passed for r in results] == [True, True], [r.failure for r in results]
    assert generator.calls == list(SCRIPT)
    report = evaluate([s for r in results for s in r.du_steps], bank.domain.slots)
    assert [s.match for s in report.steps] == [True, True, False, True, True, False]
    # Each step was predicted before it ran, on the stack the annotations built.
    assert generator.stacks[0] == [] and generator.stacks[1] == ["transfer_money", "pattern_collect_information"]
    assert generator.stacks[3][0] == "pattern_completed"  # check_balance ran and ended
    llm = StateRecordingGenerator(SCRIPT)
    await run(bank, tmp_path, DU_TESTS, mode="llm", generator=llm)
    assert llm.stacks[3][0] == "transfer_money"


def test_du_mode_is_refused_for_spoken_tests(write) -> None:
    result = run_cli(write(DU_TESTS), "--commands", "du", "--voice")
    assert result.exit_code == 2 and "--voice runs --commands oracle or llm" in result.output


def _with_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("voicecalm.testing.cli.create_generator", lambda project: ScriptedGenerator(SCRIPT))


def test_du_report_json_and_minimum_accuracy(write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_generator(monkeypatch)
    path = write(DU_TESTS)
    report_file = tmp_path / "du.json"
    result = run_cli(path, "--du-report", report_file, "--min-du-accuracy", "0.6")
    assert result.exit_code == 0, result.output
    assert "Mismatching steps" in result.output and "EXPECTED" in result.output and "PREDICTED" in result.output
    assert "first divergent step of divergent:" in result.output
    assert last_line(result.output) == "2 passed, 0 failed"

    report = json.loads(report_file.read_text())
    assert set(report) >= {"steps", "per_command", "accuracy", "micro"}
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["steps"][2] == {
        "test": "divergent",
        "file": str(path),
        "line": _line(path, '"check balance"'),
        "text": "check balance",
        "expected": ["start flow check_balance"],
        "predicted": ["start flow transfer_money"],
        "match": False,
    }
    assert report["per_command"]["start flow"] == {
        "tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5,
    }
    assert set(report["micro"]) == {"tp", "fp", "fn", "precision", "recall", "f1"}

    below = run_cli(path, "--min-du-accuracy", "0.7")
    assert below.exit_code == 1
    assert "DU accuracy 0.67 is below the minimum 0.7" in below.output
    assert last_line(below.output) == "2 passed, 0 failed"


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
