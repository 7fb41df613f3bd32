"""Conversation-style test cases: steps checked per turn, failures shown as a transcript diff."""

from __future__ import annotations

from tests.testing.conftest import last_line, run_cli

TRANSFER = """
test_cases:
  - test_case: transfer
    steps:
      - utter: utter_loop
      - user: "send money"
        commands: [start flow transfer_money]
      - utter: utter_ask_recipient
      - user: "to Jane"
        commands: ["set slot recipient Jane"]
      - slot_was_set:
          - recipient: Jane
      - slot_was_not_set:
          - amount
      - bot: "How much should I send to Jane?"
      - user: "50"
        commands: ["set slot amount 50"]
      - slot_was_set:
          - amount: 50
      - user: "/SetSlots(confirmed=true)"
      - bot: "Transferring now."
      - utter: utter_transfer_done
"""


def test_a_conversation_that_matches_passes(write) -> None:
    result = run_cli(write(TRANSFER.replace("      - utter: utter_loop\n", "")), "--commands", "oracle")
    assert result.exit_code == 0, result.output
    assert last_line(result.output) == "1 passed, 0 failed"


def test_a_failing_conversation_prints_the_failing_step_and_a_transcript_diff(write) -> None:
    path = write(
        TRANSFER.replace("- recipient: Jane", "- recipient: Joe").replace("      - utter: utter_loop\n", "")
    )
    result = run_cli(path, "--commands", "oracle")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    start = lines.index(f"--- transfer in {path}:{_line(path, '- test_case: transfer')} failed ---")
    assert lines[start + 1] == f"{path}:{_line(path, '- recipient: Joe') - 1}: slot_was_set: recipient: Joe"
    assert "slot 'recipient' was set to Jane, not Joe" in lines[start + 2]
    diff = lines[start + 4 :]
    assert diff[:6] == [
        "    user: send money",
        '    bot: utter_ask_recipient "Who should get the money?"',
        "    user: to Jane",
        "  - slot_was_set: recipient: Joe",
        "  + slot_was_set: recipient: Jane",
        '    bot: utter_ask_amount "How much should I send to Jane?"',
    ]
    assert last_line(result.output) == "0 passed, 1 failed"


def test_bot_steps_before_the_first_user_step_check_the_session_start(write) -> None:
    result = run_cli(write(TRANSFER), "--commands", "oracle")
    assert result.exit_code == 1
    assert "utter: utter_loop" in result.output
    assert "'utter_loop' was not uttered in this turn" in result.output


def test_yaml_types_matter_for_slot_values(write) -> None:
    steps = """
test_cases:
  - test_case: types
    steps:
      - user: "send money"
        commands: [start flow transfer_money]
      - user: "to Jane"
        commands: ["set slot recipient Jane", "set slot amount 50"]
      - slot_was_set:
          - amount: {value}
"""
    assert run_cli(write(steps.format(value="50.0")), "--commands", "oracle").exit_code == 0
    assert run_cli(write(steps.format(value='"50"')), "--commands", "oracle").exit_code == 1


def _line(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
