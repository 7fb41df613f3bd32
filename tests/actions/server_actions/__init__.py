"""Actions served by a real rasa-sdk action server in the action-server tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection


class ActionSendMoney(Action):
    def name(self) -> str:
        return "action_send_money"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        amount = tracker.get_slot("amount")
        dispatcher.utter_message(text=f"Transferring {amount}.")
        return []


class ActionCheckBalance(Action):
    """Synchronous on purpose: sync actions must work too."""

    def name(self) -> str:
        return "action_check_balance"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        time.sleep(0.01)
        if "slots" not in domain:
            raise RuntimeError("the domain did not arrive")
        return [SlotSet("balance", 120.5)]


class ActionSlow(Action):
    def name(self) -> str:
        return "action_slow"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        await asyncio.sleep(3)
        return []


class ActionBroken(Action):
    def name(self) -> str:
        return "action_broken"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        raise ValueError("the backend is down")


class ActionRefuse(Action):
    def name(self) -> str:
        return "action_refuse"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        raise ActionExecutionRejection("action_refuse", "not today")
