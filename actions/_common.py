"""Helpers shared by the action modules (no Action classes here)."""

from __future__ import annotations

from datetime import date
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher


def verified_customer_id(tracker: Tracker, dispatcher: CollectingDispatcher) -> Optional[str]:
    """The verified customer's id, or None after telling the user to verify first."""
    customer_id = tracker.get_slot("customer_id")
    if tracker.get_slot("authenticated") is True and customer_id:
        return str(customer_id)
    dispatcher.utter_message(response="utter_not_verified")
    return None


def spoken_list(items: list[str], conjunction: str = "and") -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def spoken_date(iso_date: str) -> str:
    """``2025-06-03`` → ``June 3``."""
    try:
        day = date.fromisoformat(iso_date)
    except (TypeError, ValueError):
        return str(iso_date)
    return f"{day:%B} {day.day}"


def spoken_amount(amount: Any) -> str:
    """Signed money for reading out: ``-42.1`` → ``minus $42.10``, ``3150`` → ``plus $3,150.00``."""
    value = float(amount)
    sign = "minus" if value < 0 else "plus"
    return f"{sign} ${abs(value):,.2f}"
