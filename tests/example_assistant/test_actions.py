"""Unit tests for the example assistant's custom actions (the repository root is the project).

Each test runs an action's ``run`` directly with a ``CollectingDispatcher`` and a tracker built
with ``Tracker.from_dict``, against a fresh in-memory copy of ``actions/bank_data.json``.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from rasa_sdk import Tracker  # noqa: E402
from rasa_sdk.events import SlotSet  # noqa: E402
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher  # noqa: E402

from actions import backend  # noqa: E402
from actions.accounts import ActionCheckBalance, ActionListRecentTransactions  # noqa: E402
from actions.authentication import (  # noqa: E402
    ActionAuthenticateUser,
    ValidateAuthCustomerNumber,
)
from actions.cards import ActionBlockCard, ActionOrderReplacementCard  # noqa: E402
from actions.profile import ActionUpdateAddress, ValidateNewZipCode  # noqa: E402
from actions.support import (  # noqa: E402
    ActionCheckAgentAvailability,
    ActionCreateFraudCase,
    ActionFindBranch,
)
from actions.transfers import (  # noqa: E402
    ActionAskTransferRecipient,
    ActionExecuteTransfer,
    ValidateTransferAmount,
    ValidateTransferRecipient,
)

MARIA = {"authenticated": True, "customer_id": "cust_001", "customer_name": "Maria"}
JAMES = {"authenticated": True, "customer_id": "cust_002", "customer_name": "James"}
PRIYA = {"authenticated": True, "customer_id": "cust_003", "customer_name": "Priya"}


@pytest.fixture(autouse=True)
def fresh_bank(monkeypatch: pytest.MonkeyPatch):
    """Every test starts from the shipped data, in memory only."""
    monkeypatch.delenv(backend.DATA_ENV, raising=False)
    monkeypatch.delenv(backend.AGENTS_ENV, raising=False)
    backend.reset_backend()
    yield
    backend.reset_backend()


def make_tracker(**slots: Any) -> Tracker:
    return Tracker.from_dict(
        {
            "sender_id": "test-conversation",
            "slots": slots,
            "latest_message": {"text": "", "intent": {}, "entities": [], "commands": []},
            "events": [],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
            "stack": [],
        }
    )


def run(action: Any, **slots: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = action.run(dispatcher, make_tracker(**slots), {})
    return events, dispatcher.messages


def slot_values(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert all(e["event"] == "slot" for e in events), events
    return {e["name"]: e["value"] for e in events}


def response_names(messages: list[dict[str, Any]]) -> list[str]:
    return [m["response"] for m in messages]


# --------------------------------------------------------------------- project wiring


def test_every_action_is_registered_and_declared_in_the_domain():
    executor = ActionExecutor()
    executor.register_package("actions")
    registered = set(executor.actions)
    declared: set[str] = set()
    for path in sorted((PROJECT / "domain").rglob("*.yml")):
        declared.update(yaml.safe_load(path.read_text(encoding="utf-8")).get("actions", []))
    assert registered == declared


def test_every_response_an_action_sends_exists_in_the_domain():
    responses: set[str] = set()
    for path in sorted((PROJECT / "domain").rglob("*.yml")):
        responses.update((yaml.safe_load(path.read_text(encoding="utf-8")).get("responses") or {}))
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (PROJECT / "actions").glob("*.py"))
    used = set(re.findall(r'response="(utter_[a-z0-9_]+)"', sources))
    assert used, "no responses found in the actions"
    assert used <= responses, used - responses


# --------------------------------------------------------------------- authentication


def test_validate_customer_number_normalises_spoken_digits():
    events, messages = run(ValidateAuthCustomerNumber(), auth_customer_number="1234 5678")
    assert events == [SlotSet("auth_customer_number", "12345678")]
    assert messages == []


def test_validate_customer_number_accepts_clean_value_silently():
    assert run(ValidateAuthCustomerNumber(), auth_customer_number="12345678") == ([], [])


def test_validate_customer_number_rejects_wrong_length():
    events, messages = run(ValidateAuthCustomerNumber(), auth_customer_number="12345")
    assert events == [SlotSet("auth_customer_number", None)]
    assert response_names(messages) == ["utter_invalid_customer_number"]


def test_validate_customer_number_ignores_empty_slot():
    assert run(ValidateAuthCustomerNumber(), auth_customer_number=None) == ([], [])


def test_authenticate_success_sets_customer():
    events, messages = run(
        ActionAuthenticateUser(),
        auth_customer_number="12345678",
        auth_passcode="2468",
        auth_failed_attempts=1.0,
    )
    assert slot_values(events) == {
        "authenticated": True,
        "customer_id": "cust_001",
        "customer_name": "Maria",
        "auth_failed_attempts": 0.0,
    }
    assert messages == []


def test_authenticate_wrong_passcode_counts_failure_and_clears_answers():
    events, messages = run(
        ActionAuthenticateUser(),
        auth_customer_number="12345678",
        auth_passcode="1111",
        auth_failed_attempts=2.0,
    )
    assert slot_values(events) == {
        "authenticated": False,
        "auth_failed_attempts": 3.0,
        "auth_customer_number": None,
        "auth_passcode": None,
    }
    assert messages == []


def test_authenticate_unknown_customer_fails():
    events, _ = run(ActionAuthenticateUser(), auth_customer_number="99999999", auth_passcode="2468")
    assert slot_values(events)["authenticated"] is False
    assert slot_values(events)["auth_failed_attempts"] == 1.0


# --------------------------------------------------------------------- accounts


def test_check_balance_sets_balances():
    events, messages = run(ActionCheckBalance(), account_type="checking", **MARIA)
    assert slot_values(events) == {"account_balance": 2450.75, "available_balance": 2380.75}
    assert messages == []


def test_check_balance_overdrawn_account():
    events, _ = run(ActionCheckBalance(), account_type="checking", **JAMES)
    assert slot_values(events) == {"account_balance": -120.40, "available_balance": 379.60}


def test_check_balance_missing_account():
    events, messages = run(ActionCheckBalance(), account_type="savings", **PRIYA)
    assert slot_values(events) == {"account_balance": None, "available_balance": None}
    assert response_names(messages) == ["utter_no_such_account"]


def test_check_balance_requires_verification():
    events, messages = run(
        ActionCheckBalance(), account_type="checking", authenticated=False, customer_id="cust_001"
    )
    assert slot_values(events) == {"account_balance": None, "available_balance": None}
    assert response_names(messages) == ["utter_not_verified"]


def test_recent_transactions_reads_latest_three():
    events, messages = run(ActionListRecentTransactions(), account_type="checking", **MARIA)
    assert events == [SlotSet("recent_transactions_found", True)]
    assert response_names(messages) == ["utter_recent_transactions"]
    message = messages[0]
    assert message["count"] == 3
    assert message["transactions"] == (
        "June 12, Green Grocer, minus $42.10; "
        "June 11, Salary, Acme Logistics, plus $3,150.00; "
        "June 10, Springfield Utilities, minus $89.60"
    )


def test_recent_transactions_empty_account():
    events, messages = run(ActionListRecentTransactions(), account_type="savings", **JAMES)
    assert events == [SlotSet("recent_transactions_found", False)]
    assert response_names(messages) == ["utter_no_recent_transactions"]


def test_recent_transactions_missing_account():
    events, messages = run(ActionListRecentTransactions(), account_type="savings", **PRIYA)
    assert events == [SlotSet("recent_transactions_found", False)]
    assert response_names(messages) == ["utter_no_such_account"]


# --------------------------------------------------------------------- transfers


def test_ask_transfer_recipient_offers_saved_payees_as_buttons():
    events, messages = run(ActionAskTransferRecipient(), **MARIA)
    assert events == []
    assert response_names(messages) == ["utter_saved_payees"]
    assert messages[0]["payees"] == "Anna Schmidt, David Lee or Springfield Utilities"
    assert messages[0]["buttons"] == [
        {"title": "Anna Schmidt", "payload": "/SetSlots(transfer_recipient=Anna Schmidt)"},
        {"title": "David Lee", "payload": "/SetSlots(transfer_recipient=David Lee)"},
        {
            "title": "Springfield Utilities",
            "payload": "/SetSlots(transfer_recipient=Springfield Utilities)",
        },
    ]


def test_validate_recipient_normalises_spelling():
    events, messages = run(ValidateTransferRecipient(), transfer_recipient="anna", **MARIA)
    assert events == [SlotSet("transfer_recipient", "Anna Schmidt")]
    assert messages == []


def test_validate_recipient_rejects_unknown_payee():
    events, messages = run(ValidateTransferRecipient(), transfer_recipient="Bob Builder", **MARIA)
    assert events == [SlotSet("transfer_recipient", None)]
    assert response_names(messages) == ["utter_unknown_payee"]
    assert messages[0]["recipient"] == "Bob Builder"
    assert messages[0]["payees"] == "Anna Schmidt, David Lee or Springfield Utilities"


def test_validate_amount_within_available_balance():
    events, messages = run(
        ValidateTransferAmount(), transfer_amount=250.0, transfer_from_account="checking", **MARIA
    )
    assert (events, messages) == ([], [])


def test_validate_amount_above_available_balance():
    events, messages = run(
        ValidateTransferAmount(), transfer_amount=400.0, transfer_from_account="savings", **JAMES
    )
    assert events == [SlotSet("transfer_amount", None)]
    assert response_names(messages) == ["utter_amount_exceeds_available"]
    assert messages[0]["available"] == "$350.00"


def test_execute_transfer_updates_memory_only():
    shipped_before = backend.SHIPPED_DATA.read_bytes()
    slots = dict(
        transfer_from_account="checking",
        transfer_recipient="Anna Schmidt",
        transfer_amount=250.0,
        **MARIA,
    )
    events, messages = run(ActionExecuteTransfer(), **slots)
    assert slot_values(events) == {"transfer_status": "completed", "transfer_reference": "TR100231"}
    assert messages == []
    account = backend.get_backend().account("cust_001", "checking")
    assert account["balance"] == 2200.75
    assert account["transactions"][0]["description"] == "Transfer to Anna Schmidt"
    events, _ = run(ActionExecuteTransfer(), **slots)
    assert slot_values(events)["transfer_reference"] == "TR100232"
    assert backend.SHIPPED_DATA.read_bytes() == shipped_before


def test_execute_transfer_insufficient_funds():
    events, _ = run(
        ActionExecuteTransfer(),
        transfer_from_account="checking",
        transfer_recipient="Ravi Patel",
        transfer_amount=100.0,
        **PRIYA,
    )
    assert slot_values(events) == {"transfer_status": "insufficient_funds", "transfer_reference": None}


def test_execute_transfer_unknown_payee_fails():
    events, _ = run(
        ActionExecuteTransfer(),
        transfer_from_account="checking",
        transfer_recipient="Mallory",
        transfer_amount=10.0,
        **MARIA,
    )
    assert slot_values(events) == {"transfer_status": "failed", "transfer_reference": None}


def test_execute_transfer_over_daily_limit_fails():
    events, _ = run(
        ActionExecuteTransfer(),
        transfer_from_account="savings",
        transfer_recipient="Anna Schmidt",
        transfer_amount=6000.0,
        **MARIA,
    )
    assert slot_values(events)["transfer_status"] == "failed"


def test_execute_transfer_requires_verification():
    events, messages = run(
        ActionExecuteTransfer(),
        transfer_from_account="checking",
        transfer_recipient="Anna Schmidt",
        transfer_amount=10.0,
    )
    assert slot_values(events) == {"transfer_status": "failed", "transfer_reference": None}
    assert response_names(messages) == ["utter_not_verified"]


def test_persistent_copy_when_env_var_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data_file = tmp_path / "bank.json"
    monkeypatch.setenv(backend.DATA_ENV, str(data_file))
    backend.reset_backend()
    events, _ = run(
        ActionExecuteTransfer(),
        transfer_from_account="savings",
        transfer_recipient="David Lee",
        transfer_amount=800.0,
        **MARIA,
    )
    assert slot_values(events)["transfer_status"] == "completed"
    saved = json.loads(data_file.read_text(encoding="utf-8"))
    savings = [a for a in saved["customers"][0]["accounts"] if a["type"] == "savings"][0]
    assert savings["balance"] == 12000.0
    backend.reset_backend()  # a new process sees the change
    assert backend.get_backend().account("cust_001", "savings")["balance"] == 12000.0
    shipped = json.loads(backend.SHIPPED_DATA.read_text(encoding="utf-8"))
    assert shipped["customers"][0]["accounts"][1]["balance"] == 12800.0


# --------------------------------------------------------------------- cards


def test_block_card():
    events, messages = run(
        ActionBlockCard(), card_type="credit", card_block_reason="stolen", **MARIA
    )
    assert events == [SlotSet("card_blocked", True)]
    assert messages == []
    card = backend.get_backend().card("cust_001", "credit")
    assert (card["status"], card["block_reason"]) == ("blocked", "stolen")


def test_block_card_that_does_not_exist():
    events, messages = run(ActionBlockCard(), card_type="credit", card_block_reason="lost", **JAMES)
    assert events == [SlotSet("card_blocked", False)]
    assert messages == []


def test_order_replacement_card_express():
    events, messages = run(
        ActionOrderReplacementCard(), card_type="debit", replacement_delivery="express", **MARIA
    )
    assert events == [SlotSet("replacement_ordered", True)]
    assert response_names(messages) == ["utter_replacement_ordered"]
    assert messages[0]["street"] == "42 Maple Avenue, Springfield"
    assert messages[0]["days"] == 2
    assert messages[0]["reference"] == "CO100231"
    assert backend.get_backend().card("cust_001", "debit")["status"] == "blocked"


def test_order_replacement_card_standard_default():
    _, messages = run(
        ActionOrderReplacementCard(), card_type="debit", replacement_delivery=None, **JAMES
    )
    assert messages[0]["days"] == 7


def test_order_replacement_for_missing_card():
    events, messages = run(
        ActionOrderReplacementCard(), card_type="credit", replacement_delivery="standard", **PRIYA
    )
    assert events == [SlotSet("replacement_ordered", False)]
    assert messages == []


# --------------------------------------------------------------------- profile


@pytest.mark.parametrize(
    ("spoken", "expected"),
    [("6 2 7 0 4", [SlotSet("new_zip_code", "62704")]), ("62704", [])],
)
def test_validate_zip_code_accepts_five_digits(spoken: str, expected: list[dict[str, Any]]):
    assert run(ValidateNewZipCode(), new_zip_code=spoken) == (expected, [])


def test_validate_zip_code_rejects_other_lengths():
    events, messages = run(ValidateNewZipCode(), new_zip_code="1234")
    assert events == [SlotSet("new_zip_code", None)]
    assert response_names(messages) == ["utter_invalid_zip_code"]


def test_update_address():
    events, messages = run(
        ActionUpdateAddress(),
        new_street_address="12  Elm Street, Springfield",
        new_zip_code="62701",
        **MARIA,
    )
    assert events == [SlotSet("address_updated", True)]
    assert messages == []
    address = backend.get_backend().customer("cust_001")["address"]
    assert address == {"street": "12 Elm Street, Springfield", "zip_code": "62701"}


def test_update_address_rejects_incomplete_address():
    events, _ = run(ActionUpdateAddress(), new_street_address="", new_zip_code="62701", **MARIA)
    assert events == [SlotSet("address_updated", False)]


# --------------------------------------------------------------------- support


def test_create_fraud_case():
    events, messages = run(
        ActionCreateFraudCase(), fraud_description="Unknown 349.99 payment to QuickBuy", **JAMES
    )
    assert events == [SlotSet("fraud_case_id", "FR100231")]
    assert messages == []
    case = backend.get_backend().snapshot()["fraud_cases"][0]
    assert case == {
        "id": "FR100231",
        "customer_id": "cust_002",
        "description": "Unknown 349.99 payment to QuickBuy",
    }


@pytest.mark.parametrize(("forced", "expected"), [("true", True), ("false", False)])
def test_agent_availability_env_override(monkeypatch: pytest.MonkeyPatch, forced: str, expected: bool):
    monkeypatch.setenv(backend.AGENTS_ENV, forced)
    assert run(ActionCheckAgentAvailability()) == ([SlotSet("agents_available", expected)], [])


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2025, 6, 10, 9, 30), True),  # Tuesday morning
        (datetime(2025, 6, 10, 20, 0), False),  # Tuesday, just closed
        (datetime(2025, 6, 14, 16, 59), True),  # Saturday afternoon
        (datetime(2025, 6, 15, 12, 0), False),  # Sunday
    ],
)
def test_agent_hours(moment: datetime, expected: bool):
    assert backend.BankBackend.agents_available(moment) is expected


def test_find_branch():
    events, messages = run(ActionFindBranch(), branch_city="  riverside ")
    assert events == []
    assert response_names(messages) == ["utter_branch_details"]
    assert messages[0]["branch_name"] == "Riverside branch"
    assert messages[0]["address"] == "27 River Road, Riverside"
    assert messages[0]["atm_note"] == "There's a 24-hour ATM outside."


def test_find_branch_unknown_city():
    events, messages = run(ActionFindBranch(), branch_city="Atlantis")
    assert events == []
    assert response_names(messages) == ["utter_branch_not_found"]
    assert messages[0]["cities"] == "Springfield, Riverside and Lakewood"
