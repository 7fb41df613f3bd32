"""Apply what a custom action returned: its messages first, then its events (actions.md §4)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from voicecalm.actions.runner import ActionResult
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import CUSTOM
from voicecalm.nlg import BotMessage
from voicecalm.tracker.events import (
    ConversationPaused,
    ConversationResumed,
    Restarted,
    SessionEnded,
    SessionStarted,
    SlotSet,
)

if TYPE_CHECKING:
    from voicecalm.dialogue.executor import Turn

logger = logging.getLogger(__name__)

MESSAGE_KEYS = ("text", "buttons", "image", "custom", "attachment", "elements", "quick_replies")
NO_DIALOGUE_EFFECT = frozenset(
    {
        "action_execution_rejected",
        "reminder",
        "cancel_reminder",
        "rewind",
        "undo",
        "export",
        "user",
        "action",
        "active_loop",
        "form",
        "loop_interrupted",
        "agent",
    }
)


def _message(turn: Turn, response: dict[str, Any]) -> None:
    name = response.get("response") or response.get("template")
    if name:
        extra = {k: v for k, v in response.items() if k not in ("response", "template") and v is not None}
        message = turn.renderer.render(
            name, slots=turn.conversation.slots, context=stacks.current_context(turn.stack), channel=turn.channel, extra=extra
        )
        if message is None:
            logger.warning("action asked for unknown response %s", name)
            return
        if response.get("buttons"):
            message = _with_buttons(message, response["buttons"])
        turn.send(message)
        return
    if any(response.get(key) is not None for key in MESSAGE_KEYS):
        turn.send(BotMessage.from_parts(response.get("text"), response))


def _with_buttons(message: BotMessage, buttons: list[dict[str, str]]) -> BotMessage:
    """rasa-sdk actions may add buttons to a domain response; they follow the response's own."""
    return replace(message, buttons=(*message.buttons, *buttons))


async def apply_action_result(turn: Turn, action_name: str, result: ActionResult) -> None:
    for response in result.responses:
        _message(turn, response)
    for event in result.events:
        kind = event.get("event")
        match kind:
            case "slot":
                name = event.get("name")
                if name in turn.project.domain.slots:
                    # Recorded even when unchanged: every event an action returns is on the tracker.
                    turn.emit(SlotSet(slot=name, value=turn.slot_value_for(name, event.get("value")), filled_by=CUSTOM))
                else:
                    logger.warning("action %s set unknown slot %r; ignored", action_name, name)
            case "reset_slots":
                for slot in turn.project.domain.slots.values():
                    turn.set_slot(slot.name, slot.initial_value)
            case "followup":
                await turn.run_action(str(event.get("name", "")), stacks.current_context(turn.stack))
            case "bot":
                turn.send(BotMessage.from_parts(event.get("text"), event.get("data") or {}, metadata=event.get("metadata")))
            case "restart":
                turn.emit(Restarted())
            case "session_started":
                turn.emit(SessionStarted())
            case "pause":
                turn.emit(ConversationPaused())
            case "resume":
                turn.emit(ConversationResumed())
            case "session_ended":
                turn.emit(SessionEnded(metadata=event.get("metadata") or {}))
                turn.session_ended = True
            case _ if kind in NO_DIALOGUE_EFFECT:
                logger.warning("action %s returned a %r event, which has no effect on the dialogue", action_name, kind)
            case _:
                logger.warning("action %s returned an unknown event %r; ignored", action_name, kind)
