"""Assertion-style test cases: every assertion type, passing and failing, and assertion order."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pytest

from tests.model_server import ModelServer
from tests.testing.conftest import last_line, run_cli
from voicecalm.project import Project
from voicecalm.testing.e2e.loader import load_tests
from voicecalm.testing.e2e.runner import E2ERunner

PASSING = """
test_cases:
  - test_case: balance
    steps:
      - user: "what is my balance"
        commands: [start flow check_balance]
        assertions:
          - flow_started: check_balance
          - flow_started:
              flow_ids: [transfer_money, check_balance]
              operator: any
          - action_executed: action_check_balance
          - slot_was_set:
              - name: balance
                value: 120.5
              - name: balance
          - slot_was_not_set:
              - name: recipient
              - name: balance
                value: 3
          - bot_uttered:
              utter_name: utter_balance
              text_matches: "balance is 120\\\\.5"
          - bot_did_not_utter:
              utter_name: utter_ask_recipient
          - flow_completed:
              flow_id: check_balance
              flow_step_id: check_balance_1_utter_balance
  - test_case: transfer then cancel
    steps:
      - user: "send 50 to Jane"
        commands: [start flow transfer_money, set slot recipient Jane, set slot amount 50]
        assertions:
          - slot_was_not_set:
              - name: confirmed
          - bot_uttered:
              utter_name: utter_ask_confirmed
              buttons:
                - title: "Yes"
                  payload: /SetSlots(confirmed=true)
                - title: "No"
                  payload: /SetSlots(confirmed=false)
      - user: "stop"
        commands: [cancel flow]
        assertions:
          - flow_cancelled:
              flow_id: transfer_money
  - test_case: clarification
    steps:
      - user: "pay or balance"
        commands: [disambiguate flows pay_bill check_balance]
        assertions:
          - pattern_clarification_contains: [pay bill, check balance]
          - pattern_clarification_contains:
              flow_ids: [pay_bill, transfer_money]
              operator: any
          - pattern_clarification_contains:
              flow_ids: [pay_bill, check_balance]
              operator: all
"""


def test_every_assertion_type_can_pass(write) -> None:
    result = run_cli(write(PASSING), "--commands", "oracle")
    assert result.exit_code == 0, result.output
    for kind in ("flow_started", "flow_completed", "flow_cancelled", "pattern_clarification_contains",
                 "action_executed", "slot_was_set", "slot_was_not_set", "bot_uttered", "bot_did_not_utter"):
        assert kind in result.output
    assert last_line(result.output) == "3 passed, 0 failed"


BALANCE_TURN = """
test_cases:
  - test_case: failing
    steps:
      - user: "what is my balance"
        commands: [start flow check_balance]
        assertions:
          - action_executed: action_check_balance
{assertion}
      - user: "never sent"
        commands: [cancel flow]
"""

FAILING = [
    ("flow_started: transfer_money", "flow 'transfer_money' was not started"),
    ("flow_started: {flow_ids: [transfer_money, pay_bill]}", "none of the flows ['transfer_money', 'pay_bill'] was started"),
    ("flow_completed: {flow_id: check_balance, flow_step_id: nope}", "flow 'check_balance' was not completed at step 'nope'"),
    ("flow_cancelled: {flow_id: check_balance}", "flow 'check_balance' was not cancelled"),
    ("pattern_clarification_contains: [pay bill]", "pattern_clarification was not started"),
    ("action_executed: action_send_money", "action 'action_send_money' was not executed"),
    ("slot_was_set: [{name: balance, value: 3}]", "slot 'balance' was set to [120.5], not 3"),
    ("slot_was_set: [{name: recipient}]", "slot 'recipient' was not set"),
    ("slot_was_not_set: [{name: balance}]", "slot 'balance' was set to 120.5"),
    ("bot_uttered: {utter_name: utter_thanks}", "no bot message matches utter_name='utter_thanks'"),
    ("bot_uttered: {text_matches: '^Balance'}", "no bot message matches text_matches='^Balance'"),
    ("bot_did_not_utter: {utter_name: utter_balance}", "the bot uttered utter_name='utter_balance'"),
    # Scored by the offline embedding model.
    ("generative_response_is_relevant: {threshold: 0.99}", "embedding judge: score 0."),
    ("generative_response_is_grounded: {threshold: 0.99, ground_truth: 'the sky is blue'}", "embedding judge: score 0."),
]


@pytest.mark.parametrize(("assertion", "message"), FAILING, ids=[a.split(":")[0] for a, _ in FAILING])
def test_a_failing_assertion_names_its_type_line_and_message_then_the_turn_events(write, assertion, message) -> None:
    path = write(BALANCE_TURN.format(assertion=f"          - {assertion}"))
    result = run_cli(path, "--commands", "oracle")
    assert result.exit_code == 1
    kind = assertion.split(":")[0]
    line = [i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(f"- {kind}")][-1]
    assert any(out.startswith(f"  {kind} at {path}:{line}: {message}") for out in result.output.splitlines())
    assert "  events of this turn:" in result.output
    assert '    bot: utter_balance "Your balance is 120.5."' in result.output
    # The first failing assertion ends the test case: the next user message is never sent.
    assert "never sent" not in result.output.split("events of this turn:")[1]
    assert last_line(result.output) == "0 passed, 1 failed"


ORDERED = """
test_cases:
  - test_case: ordered
    steps:
      - user: "what is my balance"
        commands: [start flow check_balance]
        assertion_order_enabled: {enabled}
        assertions:
          - {first}
          - {second}
"""
BOT = "bot_uttered: {utter_name: utter_balance}"
ACTION = "action_executed: action_check_balance"


@pytest.mark.parametrize(
    ("enabled", "first", "second", "exit_code"),
    [("true", ACTION, BOT, 0), ("true", BOT, ACTION, 1), ("false", BOT, ACTION, 0)],
)
def test_assertion_order(write, enabled, first, second, exit_code) -> None:
    result = run_cli(write(ORDERED.format(enabled=enabled, first=first, second=second)), "--commands", "oracle")
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "(after the event matched by the previous assertion)" in result.output


class WordCounts:
    """A tiny bag-of-words embedder: enough to exercise the judges' scoring exactly."""

    name = "word-counts"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        words = [text.lower().replace(".", " ").replace("?", " ").split() for text in texts]
        vocabulary = sorted({w for ws in words for w in ws})
        counts = np.array([[float(ws.count(v)) for v in vocabulary] for ws in words], dtype=np.float32)
        return counts / np.linalg.norm(counts, axis=1, keepdims=True)


GENERATIVE = """
stub_custom_actions:
  action_check_balance:
    events: [{{event: slot, name: balance, value: 120.5}}]
test_cases:
  - test_case: judged
    steps:
      - user: "what is my balance"
        commands: [start flow check_balance]
        assertions:
          - {assertion}
"""


@pytest.mark.parametrize(
    ("assertion", "passes"),
    [
        ("generative_response_is_relevant: {threshold: 0.3, utter_name: utter_balance}", True),
        ("generative_response_is_relevant: {threshold: 0.99, utter_name: utter_balance}", False),
        ("generative_response_is_grounded: {threshold: 0.9, ground_truth: 'your balance is 120.5'}", True),
        ("generative_response_is_grounded: {threshold: 0.9, ground_truth: 'the sky is blue'}", False),
        ("generative_response_is_grounded: {threshold: 0.1}", False),
    ],
)
async def test_the_embedding_judge_scores_with_an_embedding_model(
    bank: Project, tmp_path, assertion: str, passes: bool
) -> None:
    (tmp_path / "e2e.yml").write_text(textwrap.dedent(GENERATIVE.format(assertion=assertion)))
    case = load_tests(tmp_path, bank).cases[0]
    result = await E2ERunner(bank, mode="oracle", embedder=WordCounts()).run_case(case)
    assert result.passed is passes
    if not passes:
        assert result.failure is not None and result.failure.message.startswith("embedding judge: ")


def llm_judge_conftest(model: ModelServer) -> str:
    return (
        "llm_judge:\n  llm: {provider: openai, model: judge, "
        f"api_base: 'http://127.0.0.1:{model.port}/v1', api_key: none, timeout: 2}}\n"
    )


@pytest.mark.parametrize(
    ("assertion", "reply", "failure"),
    [
        # The questions the answer answers, compared with "what is my balance": 1.0, 0.22 and 0.75.
        ("generative_response_is_relevant: {threshold: 0.6, utter_name: utter_balance}", "1. What is my balance?\n2. How much money is there?\n3. What is the balance?", None),
        ("generative_response_is_relevant: {threshold: 0.7, utter_name: utter_balance}", "What is my balance?\nHow much money is there?\nWhat is the balance?", "llm judge: score 0.66 is below the threshold 0.7"),
        ("generative_response_is_grounded: {threshold: 0.9, utter_name: utter_balance, ground_truth: 'The balance is 120.5.'}", "SUPPORTED: Your balance is 120.5.", None),
        ("generative_response_is_grounded: {threshold: 0.9, utter_name: utter_balance, ground_truth: 'The balance is 120.5.'}", "- SUPPORTED: balance is 120.5\n- UNSUPPORTED: it is in euros", "llm judge: score 0.50 is below the threshold 0.9"),
        ("generative_response_is_grounded: {threshold: 0.9, utter_name: utter_balance, ground_truth: 'x'}", "It looks fine to me.", "llm judge: the judge model gave no verdicts: 'It looks fine to me.'"),
    ],
)
async def test_the_llm_judge_from_conftest_scores_with_its_model(
    bank: Project, tmp_path, fake_model: ModelServer, assertion: str, reply: str, failure: str | None
) -> None:
    (tmp_path / "conftest.yml").write_text(llm_judge_conftest(fake_model))
    (tmp_path / "e2e.yml").write_text(textwrap.dedent(GENERATIVE.format(assertion=assertion)))
    fake_model.completions.append(reply)
    case = load_tests(tmp_path, bank).cases[0]
    result = await E2ERunner(bank, mode="oracle", embedder=WordCounts()).run_case(case)
    assert (result.failure.message if result.failure else None) == failure
    assert "Your balance is 120.5." in fake_model.prompts[-1]


async def test_an_llm_judge_that_fails_fails_the_assertion_by_name(bank: Project, tmp_path, fake_model: ModelServer) -> None:
    (tmp_path / "conftest.yml").write_text(llm_judge_conftest(fake_model))
    (tmp_path / "e2e.yml").write_text(
        textwrap.dedent(GENERATIVE.format(assertion="generative_response_is_relevant: {threshold: 0.1}"))
    )
    fake_model.status = 500
    case = load_tests(tmp_path, bank).cases[0]
    result = await E2ERunner(bank, mode="oracle", embedder=WordCounts()).run_case(case)
    assert result.failure is not None
    assert result.failure.message.startswith("llm judge: the judge model failed: InternalServerError from openai/judge")
