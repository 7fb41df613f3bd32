from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from voicecalm.dialogue.commands import (
    CANNOT_HANDLE_INVALID_INTENT,
    PAYLOAD,
    CannotHandle,
    Command,
    Restart,
    SessionEnd,
    SessionStart,
    SetSlot,
    StartFlow,
    UserSilence,
)
from voicecalm.project import Project, load_project
from voicecalm.understanding.payloads import button_pairs, parse_payload

DOMAIN = """
intents:
  - greet
  - check_balance
responses:
  utter_ask_amount:
    - text: How much?
  utter_balance:
    - text: Your balance is fine.
slots:
  amount:
    type: float
    min_value: 0
    max_value: 10000
  account:
    type: categorical
    values: [checking, savings]
  confirmed:
    type: bool
  recipient:
    type: text
  tags:
    type: list
  s1: {type: text}
  s2: {type: text}
  s3: {type: text}
  s4: {type: text}
  s5: {type: text}
  s6: {type: text}
  s7: {type: text}
  s8: {type: text}
  s9: {type: text}
  s10: {type: text}
  s11: {type: text}
  authenticated:
    type: bool
    mappings:
      - type: controlled
  tier:
    type: text
    mappings:
      - type: custom
        action: action_tier
  mood:
    type: text
    mappings:
      - type: from_llm
      - type: controlled
"""

FLOWS = """
flows:
  transfer_money:
    description: Send money to someone.
    steps:
      - collect: amount
  check_balance:
    description: Check the balance.
    nlu_trigger:
      - intent: check_balance
    steps:
      - action: utter_balance
  greet_user:
    description: Greet the user.
    nlu_trigger:
      - intent:
          name: hello
          confidence_threshold: 0.5
    steps:
      - action: utter_balance
  pattern_chitchat:
    description: Chit chat.
    nlu_trigger:
      - intent: chat
    steps:
      - action: utter_balance
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root: Path = tmp_path_factory.mktemp("payloads")
    (root / "config.yml").write_text("recipe: default.v1\n")
    (root / "domain.yml").write_text(textwrap.dedent(DOMAIN))
    (root / "data").mkdir()
    (root / "data" / "flows.yml").write_text(textwrap.dedent(FLOWS))
    return load_project(root)


def parse(project: Project, text: str, offered: tuple[tuple[tuple[str, Any], ...], ...] = ()) -> list[Command] | None:
    return parse_payload(text, project.domain, project.flows, offered)


@pytest.mark.parametrize("text", ["hello", "", "  ", "SetSlots(amount=5)", "a /restart", "set slot amount 5"])
def test_not_a_payload(project: Project, text: str) -> None:
    assert parse(project, text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/SetSlots(amount=50)", [SetSlot("amount", 50.0, PAYLOAD)]),
        ("/SetSlots( amount = 50 )", [SetSlot("amount", 50.0, PAYLOAD)]),
        ("  /SetSlots(amount=50)\n", [SetSlot("amount", 50.0, PAYLOAD)]),
        ("/SetSlots(recipient=Jane Foo)", [SetSlot("recipient", "Jane Foo", PAYLOAD)]),
        (
            "/SetSlots(amount=1, recipient=hello)",
            [SetSlot("amount", 1.0, PAYLOAD), SetSlot("recipient", "hello", PAYLOAD)],
        ),
        ("/SetSlots(confirmed=true)", [SetSlot("confirmed", True, PAYLOAD)]),
        ("/SetSlots(confirmed=No)", [SetSlot("confirmed", False, PAYLOAD)]),
        ("/SetSlots(account=SAVINGS)", [SetSlot("account", "savings", PAYLOAD)]),
        ("/SetSlots(tags=[a, b])", [SetSlot("tags", ["a", "b"], PAYLOAD)]),
        ("/SetSlots(tags=[])", [SetSlot("tags", [], PAYLOAD)]),
        ("/SetSlots(tags=a)", [SetSlot("tags", ["a"], PAYLOAD)]),
        ("/SetSlots(recipient=none)", [SetSlot("recipient", None, PAYLOAD)]),
        ("/SetSlots(recipient=NULL)", [SetSlot("recipient", None, PAYLOAD)]),
        ("/SetSlots(amount=Undefined)", [SetSlot("amount", None, PAYLOAD)]),
        ("/SetSlots(mood=happy)", []),  # from_llm plus controlled is not plain from_llm
        ("/SetSlots()", []),
    ],
)
def test_set_slots(project: Project, text: str, expected: list[Command]) -> None:
    assert parse(project, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/SetSlots(amount=lots)", []),
        ("/SetSlots(amount=20000)", []),
        ("/SetSlots(confirmed=maybe, recipient=Jo)", [SetSlot("recipient", "Jo", PAYLOAD)]),
        ("/SetSlots(account=credit)", []),
    ],
)
def test_set_slots_drops_invalid_values(project: Project, text: str, expected: list[Command], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse(project, text) == expected
    assert "dropped" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        "/SetSlots(unknown=1)",
        "/SetSlots(amount=1, unknown=1)",
        "/SetSlots(amount=5",
        "/SetSlots amount=5",
        "/SetSlots(" + ", ".join(f"s{i}=x" for i in range(1, 12)) + ")",
    ],
)
def test_set_slots_void_payload_cannot_be_handled(project: Project, text: str) -> None:
    assert parse(project, text) == [CannotHandle()]


def test_ten_pairs_are_allowed(project: Project) -> None:
    text = "/SetSlots(" + ", ".join(f"s{i}=x" for i in range(1, 11)) + ")"
    assert parse(project, text) == [SetSlot(f"s{i}", "x", PAYLOAD) for i in range(1, 11)]


@pytest.mark.parametrize("slot", ["authenticated", "tier", "mood"])
def test_typed_payload_cannot_set_a_non_llm_slot(project: Project, slot: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse(project, f"/SetSlots({slot}=true, recipient=Jo)") == [SetSlot("recipient", "Jo", PAYLOAD)]
    assert slot in caplog.text
    assert "true" not in caplog.text  # the value is not logged


def test_offered_button_may_set_a_non_llm_slot(project: Project) -> None:
    offered = button_pairs("/SetSlots(authenticated=True, recipient=Jo)", project.domain)
    assert offered == (("authenticated", True), ("recipient", "Jo"))
    # The typed spelling differs, the parsed pairs are the same.
    assert parse(project, "/SetSlots(authenticated = true, recipient = Jo)", (offered,)) == [
        SetSlot("authenticated", True, PAYLOAD),
        SetSlot("recipient", "Jo", PAYLOAD),
    ]


@pytest.mark.parametrize(
    ("offered_payload", "typed"),
    [
        ("/SetSlots(authenticated=false)", "/SetSlots(authenticated=true)"),
        ("/SetSlots(authenticated=true)", "/SetSlots(authenticated=true, recipient=Jo)"),
        ("/SetSlots(authenticated=true, recipient=Jo)", "/SetSlots(authenticated=true)"),
        ("/SetSlots(tier=gold)", "/SetSlots(tier=platinum)"),
    ],
)
def test_offered_button_must_match_the_whole_payload(project: Project, offered_payload: str, typed: str) -> None:
    offered = button_pairs(offered_payload, project.domain)
    assert offered is not None
    commands = parse(project, typed, (offered,))
    assert commands is not None
    assert not any(isinstance(c, SetSlot) and c.name in {"authenticated", "tier"} for c in commands)


def test_offered_buttons_may_be_a_set_holding_list_values(project: Project) -> None:
    offered = {button_pairs("/SetSlots(tier=gold)", project.domain)}
    tags_button = button_pairs("/SetSlots(tags=[a], tier=gold)", project.domain)
    assert tags_button == (("tags", ["a"]), ("tier", "gold"))
    assert parse(project, "/SetSlots(tier=gold)", offered) == [SetSlot("tier", "gold", PAYLOAD)]  # type: ignore[arg-type]
    assert parse(project, "/SetSlots(tags=[a], tier=gold)", [tags_button]) == [  # type: ignore[list-item]
        SetSlot("tags", ["a"], PAYLOAD),
        SetSlot("tier", "gold", PAYLOAD),
    ]


@pytest.mark.parametrize("payload", ["/check_balance", "/restart", "/SetSlots(unknown=1)", "hello", "/SetSlots(amount=5"])
def test_button_pairs_is_none_for_other_payloads(project: Project, payload: str) -> None:
    assert button_pairs(payload, project.domain) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/session_start", [SessionStart()]),
        ("/session_end", [SessionEnd()]),
        ("/silence_timeout", [UserSilence()]),
        ("/restart", [Restart()]),
        ("/check_balance", [StartFlow("check_balance")]),
        ('/check_balance{"account": "savings"}', [StartFlow("check_balance")]),
        ("/hello", [StartFlow("greet_user")]),
        ("/chat", [StartFlow("pattern_chitchat")]),
        ("/greet", []),
        ("/greet{}", []),
        ("/nonsense", [CannotHandle(reason=CANNOT_HANDLE_INVALID_INTENT)]),
        ("/", [CannotHandle(reason=CANNOT_HANDLE_INVALID_INTENT)]),
    ],
)
def test_intent_payloads(project: Project, text: str, expected: list[Command]) -> None:
    assert parse(project, text) == expected
