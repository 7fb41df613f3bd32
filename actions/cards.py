"""Blocking and replacing cards (flows ``block_card``, ``replace_card``)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from ._common import verified_customer_id
from .backend import get_backend


class ActionBlockCard(Action):
    """Block the chosen card; ``card_blocked`` tells the flow whether it worked."""

    def name(self) -> str:
        return "action_block_card"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        card_type = tracker.get_slot("card_type")
        backend = get_backend()
        if customer_id is None or backend.card(customer_id, card_type) is None:
            return [SlotSet("card_blocked", False)]
        backend.block_card(customer_id, card_type, tracker.get_slot("card_block_reason"))
        return [SlotSet("card_blocked", True)]


class ActionOrderReplacementCard(Action):
    """Order a new card to the address on file and confirm it."""

    def name(self) -> str:
        return "action_order_replacement_card"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        customer_id = verified_customer_id(tracker, dispatcher)
        card_type = tracker.get_slot("card_type")
        backend = get_backend()
        if customer_id is None or backend.card(customer_id, card_type) is None:
            return [SlotSet("replacement_ordered", False)]
        order = backend.order_replacement(
            customer_id, card_type, tracker.get_slot("replacement_delivery")
        )
        dispatcher.utter_message(
            response="utter_replacement_ordered",
            street=order["address"]["street"],
            days=order["business_days"],
            reference=order["reference"],
        )
        return [SlotSet("replacement_ordered", True)]
