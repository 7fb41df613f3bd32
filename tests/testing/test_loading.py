"""Load errors point at file:line:col and exit with 2; ignored annotations and steps warn."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.testing.conftest import run_cli

ANNOTATED = """
test_cases:
  - test_case: annotated
    steps:
      - user: "send money"
        commands:
          - start flow transfer_money
          - {line}
"""


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fly me to the moon", "`fly me to the moon` is not a command (DSL v2 or v1)"),
        ("start flow to_the_moon", "unknown flow 'to_the_moon'"),
        ("set slot colour red", "unknown slot 'colour'"),
        ("disambiguate flows pay_bill moon", "unknown flow 'moon'"),
        ("SetSlot(flow_name, moon)", "unknown flow 'moon'"),
    ],
)
def test_a_bad_annotation_is_a_load_error_at_its_line(write, line: str, message: str) -> None:
    path = write(ANNOTATED.format(line=line))
    result = run_cli(path, "--commands", "oracle")
    assert result.exit_code == 2
    assert f"{path}:{_line_of(path, line)}:13: {message}" in result.output


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        ("flow_begun: transfer_money", "unknown assertion 'flow_begun'"),
        ("skill_started: transfer_money", "'skill_started' is a Rasa Mantle assertion; voicecalm does not support it"),
        ("memory_slot_was_set: {name: x}", "'memory_slot_was_set' is a Rasa Mantle assertion"),
        ("tool_called: search", "'tool_called' is a Rasa Mantle assertion"),
        ("ordered_block_started: x", "'ordered_block_started' is a Rasa Mantle assertion"),
        ("bot_uttered: {}", "give at least one of `utter_name`, `buttons`, `text_matches`"),
        ("bot_uttered: {text_matches: '('}", "not a regular expression"),
        ("flow_completed: {flow: x}", "unknown key 'flow'"),
    ],
)
def test_an_invalid_assertion_is_a_load_error_at_its_line(write, assertion: str, message: str) -> None:
    path = write(
        f"""
test_cases:
  - test_case: asserting
    steps:
      - user: "send money"
        commands: [start flow transfer_money]
        assertions:
          - {assertion}
"""
    )
    result = run_cli(path)
    assert result.exit_code == 2
    line = _line_of(path, assertion.split(":")[0])
    assert any(out.startswith(f"{path}:{line}:") and message in out for out in result.output.splitlines()), result.output


@pytest.mark.parametrize(
    ("text", "located", "message"),
    [
        ("test_cases:\n  - test_case: x\n    step:\n      - user: hi\n", "    step:", "unknown key 'step'"),
        ("test_cases:\n  - test_case: x\n    fixtures: [nope]\n    steps:\n      - user: hi\n", "fixtures", "unknown fixture 'nope'"),
        ("test_cases:\n  - test_case: x\n    steps:\n      - user: hi\n        metadata: nope\n", "metadata", "unknown metadata 'nope'"),
        ("test_cases:\n  - test_case: x\n    steps:\n      - usr: hi\n", "usr", "a step needs exactly one of"),
        ("test_cases:\n  - test_case: x\n    steps:\n      - user: [hi\n", "test_case", "YAML syntax error"),
    ],
)
def test_file_problems_are_load_errors(write, text: str, located: str, message: str) -> None:
    path = write(text, stubs=False)
    result = run_cli(path)
    assert result.exit_code == 2
    assert any(out.startswith(f"{path}:") and message in out for out in result.output.splitlines()), result.output


def test_annotations_on_payload_empty_or_long_messages_are_ignored_with_a_warning(write) -> None:
    path = write(
        f"""
test_cases:
  - test_case: payloads
    steps:
      - user: "/SetSlots(nickname=Jo)"
        commands: [set slot nickname Jo]
      - user: "{'x' * 421}"
        commands: [cancel flow]
"""
    )
    result = run_cli(path, "--commands", "oracle")
    assert result.exit_code == 0, result.output
    warning = "warning: `commands:` ignored: this message never reaches the command generator"
    assert f"{path}:{_line_of(path, 'set slot nickname')}:9: {warning}" in result.output
    assert f"{path}:{_line_of(path, 'cancel flow')}:9: {warning}" in result.output


def test_bot_steps_of_an_assertion_style_case_are_ignored_with_a_warning(write) -> None:
    path = write(
        """
test_cases:
  - test_case: mixed
    steps:
      - user: "send money"
        commands: [start flow transfer_money]
        assertions:
          - flow_started: transfer_money
      - utter: utter_does_not_exist
"""
    )
    result = run_cli(path, "--commands", "oracle")
    assert result.exit_code == 0, result.output
    line = _line_of(path, "utter_does_not_exist")
    assert f"{path}:{line}:9: warning: ignored: bot and slot steps have no effect in an assertion-style test case" in result.output
