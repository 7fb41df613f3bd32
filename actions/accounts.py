"""Balances and transaction history (flows ``check_balance``, ``list_recent_transactions``)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from ._common import spoken_amount, spoken_date, verified_customer_id
from .backend import get_backend

RECENT_TRANSACTIONS_READ_OUT = 3


class ActionCheckBalance(Action):
    """Set ``account_balance``/``available_balance``; the flow reads them out."""

    def name(self) -> str:
        return "action_check_balance"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        account = None
        if customer_id is not None:
            account = get_backend().account(customer_id, tracker.get_slot("account_type"))
            if account is None:
                dispatcher.utter_message(response="utter_no_such_account")
        if account is None:
            return [SlotSet("account_balance", None), SlotSet("available_balance", None)]
        return [
            SlotSet("account_balance", account["balance"]),
            SlotSet("available_balance", account["available"]),
        ]


class ActionListRecentTransactions(Action):
    """Read out the latest transactions; ``recent_transactions_found`` drives the flow."""

    def name(self) -> str:
        return "action_list_recent_transactions"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        if customer_id is None:
            return [SlotSet("recent_transactions_found", False)]
        account_type = tracker.get_slot("account_type")
        backend = get_backend()
        if backend.account(customer_id, account_type) is None:
            dispatcher.utter_message(response="utter_no_such_account")
            return [SlotSet("recent_transactions_found", False)]
        transactions = backend.recent_transactions(
            customer_id, account_type, limit=RECENT_TRANSACTIONS_READ_OUT
        )
        if not transactions:
            dispatcher.utter_message(response="utter_no_recent_transactions")
            return [SlotSet("recent_transactions_found", False)]
        phrases = [
            f"{spoken_date(t['date'])}, {t['description']}, {spoken_amount(t['amount'])}"
            for t in transactions
        ]
        dispatcher.utter_message(
            response="utter_recent_transactions",
            count=len(transactions),
            transactions="; ".join(phrases),
        )
        return [SlotSet("recent_transactions_found", True)]
