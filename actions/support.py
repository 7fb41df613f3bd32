"""Fraud reports, human handoff and the branch finder."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from ._common import spoken_list, verified_customer_id
from .backend import get_backend


class ActionCreateFraudCase(Action):
    """Open a fraud case with the customer's description; sets ``fraud_case_id``."""

    def name(self) -> str:
        return "action_create_fraud_case"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        if customer_id is None:
            return [SlotSet("fraud_case_id", None)]
        case_id = get_backend().create_fraud_case(
            customer_id, tracker.get_slot("fraud_description")
        )
        return [SlotSet("fraud_case_id", case_id)]


class ActionCheckAgentAvailability(Action):
    """Sets ``agents_available`` from the contact-centre hours."""

    def name(self) -> str:
        return "action_check_agent_availability"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        return [SlotSet("agents_available", get_backend().agents_available())]


class ActionFindBranch(Action):
    """Tell the customer about the branch in ``branch_city``, or where branches are."""

    def name(self) -> str:
        return "action_find_branch"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        backend = get_backend()
        branch = backend.find_branch(tracker.get_slot("branch_city"))
        if branch is None:
            dispatcher.utter_message(
                response="utter_branch_not_found", cities=spoken_list(backend.branch_cities())
            )
            return []
        dispatcher.utter_message(
            response="utter_branch_details",
            branch_name=branch["name"],
            address=branch["address"],
            hours=branch["hours"],
            atm_note="There's a 24-hour ATM outside." if branch["atm"] else "There's no ATM there.",
        )
        return []
