"""The event log: every change to a conversation is one of these (JSON shapes as in Rasa)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of the event family; `name` is the JSON `event` value."""

    name: ClassVar[str]
    timestamp: float = field(default_factory=_now)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.name}
        for item in fields(self):
            value = getattr(self, item.name)
            data[item.name] = dict(value) if isinstance(value, Mapping) else value
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class UserUttered(Event):
    name: ClassVar[str] = "user"
    text: str | None = None
    parse_data: Mapping[str, Any] = field(default_factory=dict)
    input_channel: str | None = None
    message_id: str | None = None

    @property
    def commands(self) -> list[dict[str, Any]]:
        return list(self.parse_data.get("commands", []))


@dataclass(frozen=True, slots=True, kw_only=True)
class BotUttered(Event):
    name: ClassVar[str] = "bot"
    text: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def utter_action(self) -> str | None:
        return self.metadata.get("utter_action")


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionExecuted(Event):
    name: ClassVar[str] = "action"
    action_name: str
    policy: str | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = Event.to_dict(self)
        data["name"] = data.pop("action_name")
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionExecutionRejected(Event):
    """A custom action declined to run; the flow went on as if it returned nothing."""

    name: ClassVar[str] = "action_execution_rejected"
    action_name: str

    def to_dict(self) -> dict[str, Any]:
        data = Event.to_dict(self)
        data["name"] = data.pop("action_name")
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotSet(Event):
    name: ClassVar[str] = "slot"
    slot: str
    value: Any = None
    filled_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = Event.to_dict(self)
        data["name"] = data.pop("slot")
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class StackUpdated(Event):
    """The dialogue stack changed; `update` is a JSON-patch string against the previous stack."""

    name: ClassVar[str] = "stack"
    update: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowStarted(Event):
    name: ClassVar[str] = "flow_started"
    flow_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowCompleted(Event):
    name: ClassVar[str] = "flow_completed"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowCancelled(Event):
    name: ClassVar[str] = "flow_cancelled"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowInterrupted(Event):
    name: ClassVar[str] = "flow_interrupted"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowResumed(Event):
    name: ClassVar[str] = "flow_resumed"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(Event):
    name: ClassVar[str] = "session_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(Event):
    name: ClassVar[str] = "session_ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class Restarted(Event):
    name: ClassVar[str] = "restart"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationPaused(Event):
    """The bot ignores user messages until the conversation is resumed (an action decided so)."""

    name: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationResumed(Event):
    name: ClassVar[str] = "resume"


# --- voice channels (voice.md §4–§6) ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UserBargeIn(Event):
    """The caller spoke over the bot. `metadata.playback` = {heard: [message ids], interrupted:
    id | None, unheard: [ids], played_ms: audio played of the interrupted message}."""

    name: ClassVar[str] = "user_barge_in"

    @property
    def interrupted(self) -> str | None:
        return self.metadata.get("playback", {}).get("interrupted")

    @property
    def unheard(self) -> list[str]:
        return list(self.metadata.get("playback", {}).get("unheard", ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSilenceTimeout(Event):
    name: ClassVar[str] = "user_silence_timeout"
    timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInputSuppressed(Event):
    """A transcript that was not processed: the playing message allowed no interruption, or the
    active collect takes DTMF only."""

    name: ClassVar[str] = "user_input_suppressed"
    text: str
    modality: str = "voice"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStatusChanged(Event):
    """The phone network reported a call's status (Twilio's status callback: `completed`, `busy`,
    `no-answer`, `failed`, `canceled`, ...); `metadata` names the channel and the call's duration."""

    name: ClassVar[str] = "call_status"
    status: str


EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.name: cls
    for cls in (
        UserUttered,
        BotUttered,
        ActionExecuted,
        ActionExecutionRejected,
        SlotSet,
        StackUpdated,
        FlowStarted,
        FlowCompleted,
        FlowCancelled,
        FlowInterrupted,
        FlowResumed,
        SessionStarted,
        SessionEnded,
        Restarted,
        ConversationPaused,
        ConversationResumed,
        UserBargeIn,
        UserSilenceTimeout,
        UserInputSuppressed,
        CallStatusChanged,
    )
}

# JSON keys that differ from the dataclass field names.
_RENAMED = {
    ActionExecuted: {"name": "action_name"},
    ActionExecutionRejected: {"name": "action_name"},
    SlotSet: {"name": "slot"},
}


class UnknownEventError(ValueError):
    pass


def event_from_dict(data: Mapping[str, Any]) -> Event:
    kind = data.get("event")
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise UnknownEventError(f"unknown event type {kind!r}")
    renamed = _RENAMED.get(cls, {})
    known = {f.name for f in fields(cls)}
    arguments = {}
    for key, value in data.items():
        key = renamed.get(key, key)
        if key in known and not (value is None and key in ("timestamp", "metadata")):
            arguments[key] = value
    return cls(**arguments)
