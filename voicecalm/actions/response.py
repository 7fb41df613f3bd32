"""The action-server response body (actions.md §4), checked before anything of it is applied."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from voicecalm.actions.runner import ActionResult

KNOWN_EVENTS = frozenset(
    {
        "slot", "reset_slots", "followup", "bot", "restart", "session_started", "session_ended", "pause",
        "resume", "action_execution_rejected", "reminder", "cancel_reminder", "rewind", "undo", "export",
        "user", "action", "active_loop", "form", "loop_interrupted", "agent",
    }
)


class ActionEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: str

    @field_validator("event")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in KNOWN_EVENTS:
            raise ValueError(f"unknown event {name!r}")
        return name


class ActionResponseBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    events: list[ActionEvent] = []
    responses: list[dict[str, Any]] = []


def parse_action_response(body: Any) -> ActionResult:
    """Raises pydantic's `ValidationError` when the body is not a valid action response."""
    parsed = ActionResponseBody.model_validate(body)
    return ActionResult(
        events=[event.model_dump() for event in parsed.events],
        responses=parsed.responses,
    )
