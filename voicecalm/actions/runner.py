"""How the dialogue manager runs custom actions: one interface for in-process and remote ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from voicecalm.tracker.conversation import Conversation


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action returned, in the action-server JSON shapes (actions.md §4)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)


class ActionRejected(Exception):
    """The action declined to run (rasa-sdk `ActionExecutionRejection`); the flow goes on."""


class ActionFailed(Exception):
    """The action could not run or answered nonsense; the conversation goes to the error pattern."""

    def __init__(self, kind: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(f"{kind} (status {status}): {detail}" if status else f"{kind}: {detail}")
        self.kind = kind
        self.status = status


class ActionRunner(Protocol):
    async def run(self, action_name: str, conversation: Conversation) -> ActionResult: ...
