"""The one bot message type every channel receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BotMessage:
    text: str | None = None
    buttons: tuple[Mapping[str, str], ...] = ()  # each {"title", "payload"}
    image: str | None = None
    custom: Mapping[str, Any] | None = None
    attachment: Any = None
    quick_replies: Any = None
    elements: Any = None
    response: str | None = None  # the response name (utter_action) that produced it
    allow_interruptions: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_parts(
        cls, text: str | None, data: Mapping[str, Any], response: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> "BotMessage":
        """A message from a bot event's `text` and `data` (or an action's response dict)."""
        return cls(
            text=text,
            buttons=tuple(data.get("buttons") or ()),
            image=data.get("image"),
            custom=data.get("custom"),
            attachment=data.get("attachment"),
            quick_replies=data.get("quick_replies"),
            elements=data.get("elements"),
            response=response,
            metadata=dict(metadata or {}),
        )

    def data(self) -> dict[str, Any]:
        """The `data` of the bot event, shaped like Rasa's `BotUttered.data` (absent parts are None)."""
        return {
            "elements": self.elements,
            "quick_replies": self.quick_replies,
            "buttons": [dict(button) for button in self.buttons] or None,
            "attachment": self.attachment,
            "image": self.image,
            "custom": self.custom,
        }
