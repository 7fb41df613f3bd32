"""Identity verification (flow ``authenticate_user``)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from .backend import get_backend, normalise_digits


class ValidateAuthCustomerNumber(Action):
    """Normalise a spoken or typed customer number to 8 digits, or reject it."""

    def name(self) -> str:
        return "validate_auth_customer_number"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        value = tracker.get_slot("auth_customer_number")
        if value is None:
            return []
        digits = normalise_digits(value)
        if len(digits) != 8:
            dispatcher.utter_message(response="utter_invalid_customer_number")
            return [SlotSet("auth_customer_number", None)]
        if digits != value:
            return [SlotSet("auth_customer_number", digits)]
        return []


class ActionAuthenticateUser(Action):
    """Check customer number and passcode; count failures (the flow locks out after 3)."""

    def name(self) -> str:
        return "action_authenticate_user"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer = get_backend().authenticate(
            tracker.get_slot("auth_customer_number"), tracker.get_slot("auth_passcode")
        )
        if customer is not None:
            return [
                SlotSet("authenticated", True),
                SlotSet("customer_id", customer["id"]),
                SlotSet("customer_name", customer["first_name"]),
                SlotSet("auth_failed_attempts", 0.0),
            ]
        failures = float(tracker.get_slot("auth_failed_attempts") or 0.0) + 1.0
        # Clear both answers so the flow asks for them again.
        return [
            SlotSet("authenticated", False),
            SlotSet("auth_failed_attempts", failures),
            SlotSet("auth_customer_number", None),
            SlotSet("auth_passcode", None),
        ]
