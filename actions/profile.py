"""Customer profile changes (flow ``update_address``)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from ._common import verified_customer_id
from .backend import BankError, get_backend, normalise_digits


class ValidateNewZipCode(Action):
    """Accept a five-digit ZIP code ("6 2 7 0 4" → "62704"), else ask again."""

    def name(self) -> str:
        return "validate_new_zip_code"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        value = tracker.get_slot("new_zip_code")
        if value is None:
            return []
        digits = normalise_digits(value)
        if len(digits) != 5:
            dispatcher.utter_message(response="utter_invalid_zip_code")
            return [SlotSet("new_zip_code", None)]
        if digits != value:
            return [SlotSet("new_zip_code", digits)]
        return []


class ActionUpdateAddress(Action):
    """Store the confirmed address; ``address_updated`` tells the flow whether it worked."""

    def name(self) -> str:
        return "action_update_address"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        if customer_id is None:
            return [SlotSet("address_updated", False)]
        try:
            get_backend().update_address(
                customer_id,
                tracker.get_slot("new_street_address"),
                tracker.get_slot("new_zip_code"),
            )
        except BankError:
            return [SlotSet("address_updated", False)]
        return [SlotSet("address_updated", True)]
