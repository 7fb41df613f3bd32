"""Money transfers to saved payees (flow ``transfer_money``)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from ._common import spoken_list, verified_customer_id
from .backend import BankError, format_money, get_backend


class ActionAskTransferRecipient(Action):
    """Runs after ``utter_ask_transfer_recipient``: lists the saved payees as buttons."""

    def name(self) -> str:
        return "action_ask_transfer_recipient"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = tracker.get_slot("customer_id")
        if not customer_id:
            return []
        payees = get_backend().payees(customer_id)
        if not payees:
            return []
        dispatcher.utter_message(
            response="utter_saved_payees",
            payees=spoken_list(payees, "or"),
            buttons=[
                {"title": payee, "payload": f"/SetSlots(transfer_recipient={payee})"}
                for payee in payees
            ],
        )
        return []


class ValidateTransferRecipient(Action):
    """Accept only saved payees, normalised to their stored spelling."""

    def name(self) -> str:
        return "validate_transfer_recipient"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        recipient = tracker.get_slot("transfer_recipient")
        customer_id = tracker.get_slot("customer_id")
        if recipient is None or not customer_id:
            return []
        backend = get_backend()
        payee = backend.find_payee(customer_id, recipient)
        if payee is None:
            dispatcher.utter_message(
                response="utter_unknown_payee",
                recipient=recipient,
                payees=spoken_list(backend.payees(customer_id), "or"),
            )
            return [SlotSet("transfer_recipient", None)]
        if payee != recipient:
            return [SlotSet("transfer_recipient", payee)]
        return []


class ValidateTransferAmount(Action):
    """Reject an amount above the available balance of the source account.

    Runs after the collect step's own rejections (amount > 0, daily limit)."""

    def name(self) -> str:
        return "validate_transfer_amount"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        amount = tracker.get_slot("transfer_amount")
        customer_id = tracker.get_slot("customer_id")
        if amount is None or not customer_id:
            return []
        try:
            value = float(amount)
        except (TypeError, ValueError):
            return [SlotSet("transfer_amount", None)]
        account = get_backend().account(customer_id, tracker.get_slot("transfer_from_account"))
        if account is None:  # unknown source account: action_execute_transfer reports it
            return []
        if value > account["available"]:
            dispatcher.utter_message(
                response="utter_amount_exceeds_available",
                available=format_money(max(account["available"], 0.0)),
            )
            return [SlotSet("transfer_amount", None)]
        return []


class ActionExecuteTransfer(Action):
    """Make the transfer; sets ``transfer_status`` (completed/insufficient_funds/failed)."""

    def name(self) -> str:
        return "action_execute_transfer"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        if customer_id is None:
            return [SlotSet("transfer_status", "failed"), SlotSet("transfer_reference", None)]
        try:
            result = get_backend().transfer(
                customer_id,
                tracker.get_slot("transfer_from_account"),
                tracker.get_slot("transfer_recipient"),
                tracker.get_slot("transfer_amount"),
            )
        except BankError as error:
            status = "insufficient_funds" if error.code == "insufficient_funds" else "failed"
            return [SlotSet("transfer_status", status), SlotSet("transfer_reference", None)]
        return [
            SlotSet("transfer_status", "completed"),
            SlotSet("transfer_reference", result.reference),
        ]
