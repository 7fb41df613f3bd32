"""The command family: what a user turn asks the dialogue manager to do (commands.md §1).

Every command has a JSON form (stored in the user event's `parse_data.commands`) and, where
the LLM can produce it, a DSL v2 line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Who produced a `set slot` (commands.md §1).
LLM = "LLM"
PAYLOAD = "CommandPayloadReader"
NLU = "NLU"
CUSTOM = "CUSTOM"

CANNOT_HANDLE_DEFAULT = "cannot_handle_default"
CANNOT_HANDLE_CHITCHAT = "cannot_handle_chitchat"
CANNOT_HANDLE_NOT_SUPPORTED = "cannot_handle_not_supported"
CANNOT_HANDLE_NO_RELEVANT_ANSWER = "cannot_handle_no_relevant_answer"
CANNOT_HANDLE_INVALID_INTENT = "cannot_handle_invalid_intent"

ERROR_DEFAULT = "rasa_internal_error_default"
ERROR_USER_INPUT_EMPTY = "rasa_internal_error_user_input_empty"
ERROR_USER_INPUT_TOO_LONG = "rasa_internal_error_user_input_too_long"


@dataclass(frozen=True, slots=True)
class Command:
    command: ClassVar[str]
    dsl: ClassVar[str | None] = None  # the argument-free DSL v2 line, when there is one

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command}

    def to_dsl(self) -> str | None:
        return self.dsl


@dataclass(frozen=True, slots=True)
class StartFlow(Command):
    command: ClassVar[str] = "start flow"
    flow: str

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "flow": self.flow}

    def to_dsl(self) -> str:
        return f"start flow {self.flow}"


@dataclass(frozen=True, slots=True)
class SetSlot(Command):
    command: ClassVar[str] = "set slot"
    name: str
    value: Any
    extractor: str = LLM

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "name": self.name, "value": self.value, "extractor": self.extractor}

    def to_dsl(self) -> str:
        return f"set slot {self.name} {self.value}"


@dataclass(frozen=True, slots=True)
class CorrectedSlot:
    name: str
    value: Any
    filled_by: str = LLM


@dataclass(frozen=True, slots=True)
class CorrectSlots(Command):
    command: ClassVar[str] = "correct slot"
    corrected_slots: tuple[CorrectedSlot, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "corrected_slots": [{"name": s.name, "value": s.value, "filled_by": s.filled_by} for s in self.corrected_slots],
        }

    def to_dsl(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class CancelFlow(Command):
    command: ClassVar[str] = "cancel flow"
    dsl: ClassVar[str] = "cancel flow"


@dataclass(frozen=True, slots=True)
class Clarify(Command):
    command: ClassVar[str] = "clarify"
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "options": list(self.options)}

    def to_dsl(self) -> str:
        return f"disambiguate flows {' '.join(self.options)}".rstrip()


@dataclass(frozen=True, slots=True)
class ChitChat(Command):
    command: ClassVar[str] = "chitchat"
    dsl: ClassVar[str] = "offtopic reply"


@dataclass(frozen=True, slots=True)
class Knowledge(Command):
    command: ClassVar[str] = "knowledge"
    dsl: ClassVar[str] = "provide info"


@dataclass(frozen=True, slots=True)
class RepeatMessage(Command):
    command: ClassVar[str] = "repeat"
    dsl: ClassVar[str] = "repeat message"


@dataclass(frozen=True, slots=True)
class SkipQuestion(Command):
    command: ClassVar[str] = "skip question"
    dsl: ClassVar[str] = "skip question"


@dataclass(frozen=True, slots=True)
class HumanHandoff(Command):
    command: ClassVar[str] = "human handoff"
    dsl: ClassVar[str] = "human handoff"


@dataclass(frozen=True, slots=True)
class CannotHandle(Command):
    command: ClassVar[str] = "cannot handle"
    dsl: ClassVar[str] = "cannot handle"
    reason: str = CANNOT_HANDLE_DEFAULT

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Error(Command):
    command: ClassVar[str] = "error"
    error_type: str = ERROR_DEFAULT
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "error_type": self.error_type, "info": dict(self.info)}


@dataclass(frozen=True, slots=True)
class HandleCodeChange(Command):
    command: ClassVar[str] = "handle code change"


@dataclass(frozen=True, slots=True)
class Restart(Command):
    command: ClassVar[str] = "restart"


@dataclass(frozen=True, slots=True)
class SessionStart(Command):
    command: ClassVar[str] = "session start"


@dataclass(frozen=True, slots=True)
class SessionEnd(Command):
    command: ClassVar[str] = "session end"


@dataclass(frozen=True, slots=True)
class UserSilence(Command):
    command: ClassVar[str] = "user silence"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    command: ClassVar[str] = "noop"


COMMAND_TYPES: Mapping[str, type[Command]] = {
    cls.command: cls
    for cls in (
        StartFlow,
        SetSlot,
        CorrectSlots,
        CancelFlow,
        Clarify,
        ChitChat,
        Knowledge,
        RepeatMessage,
        SkipQuestion,
        HumanHandoff,
        CannotHandle,
        Error,
        HandleCodeChange,
        Restart,
        SessionStart,
        SessionEnd,
        UserSilence,
        Noop,
    )
}


def command_from_json(data: Mapping[str, Any]) -> Command:
    """The command a `to_json` dict describes; ValueError for an unknown or malformed one."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a command is a JSON object, got {type(data).__name__}")
    name = data.get("command")
    if name == "hand over":  # older Rasa releases' name for the handoff command
        name = HumanHandoff.command
    cls = COMMAND_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown command {name!r}")
    try:
        if cls is StartFlow:
            return StartFlow(_json_str(data, "flow"))
        if cls is SetSlot:
            return SetSlot(_json_str(data, "name"), data.get("value"), _json_str(data, "extractor", LLM))
        if cls is CorrectSlots:
            return CorrectSlots(
                tuple(
                    CorrectedSlot(_json_str(s, "name"), s.get("value"), _json_str(s, "filled_by", LLM))
                    for s in _json_list(data, "corrected_slots")
                )
            )
        if cls is Clarify:
            options = _json_list(data, "options", [])
            if not all(isinstance(option, str) for option in options):
                raise ValueError("clarify options must be strings")
            return Clarify(tuple(options))
        if cls is CannotHandle:
            return CannotHandle(_json_str(data, "reason", CANNOT_HANDLE_DEFAULT))
        if cls is Error:
            info = data.get("info") or {}
            if not isinstance(info, Mapping):
                raise ValueError("error info must be an object")
            return Error(_json_str(data, "error_type", ERROR_DEFAULT), dict(info))
    except (AttributeError, TypeError) as error:
        raise ValueError(f"malformed {name!r} command: {error}") from error
    return cls()


def _json_str(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"command {data.get('command')!r} needs a string `{key}`")
    return value


def _json_list(data: Mapping[str, Any], key: str, default: list[Any] | None = None) -> list[Any]:
    value = data.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, list | tuple):
        raise ValueError(f"command {data.get('command')!r} needs a list `{key}`")
    return list(value)
