"""Built-in actions that act on the dialogue stack (patterns.md §5)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from voicecalm.conditions import parse_predicate
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import CANNOT_HANDLE_CHITCHAT, CANNOT_HANDLE_NO_RELEVANT_ANSWER
from voicecalm.dialogue.slot_values import coerce
from voicecalm.dialogue.stack import Frame
from voicecalm.dialogue.templates import readable_list, render
from voicecalm.nlg import BotMessage
from voicecalm.tracker.events import (
    FlowResumed,
    Restarted,
    SessionEnded,
    SessionStarted,
)

if TYPE_CHECKING:
    from voicecalm.dialogue.executor import Turn

logger = logging.getLogger(__name__)

TYPE_REJECTIONS = {
    "bool": "utter_boolean_slot_rejection",
    "float": "utter_float_slot_rejection",
    "categorical": "utter_categorical_slot_rejection",
}


async def session_start(turn: Turn, frame: Frame) -> None:
    """Start a new session once per turn; a project's `pattern_session_start` may leave it out."""
    conversation = turn.conversation
    if any(isinstance(event, SessionStarted) for event in conversation.pending):
        return
    carried = dict(conversation.slots) if turn.project.domain.session_config.carry_over_slots_to_new_session else {}
    metadata = dict(conversation.latest_message.metadata) if conversation.latest_message else {}
    turn.emit(SessionStarted(metadata=metadata))
    # The new session starts with this pattern alone on the stack.
    turn.conversation.set_stack([f for f in turn.stack if f["frame_id"] == frame.get("frame_id")])
    for name, value in carried.items():
        if value != conversation.initial_slots.get(name) and name != "session_started_metadata":
            turn.set_slot(name, value)
    if metadata:
        turn.set_slot("session_started_metadata", metadata)


async def restart(turn: Turn, frame: Frame) -> None:
    turn.emit(Restarted())


async def cancel_flow(turn: Turn, frame: Frame) -> None:
    turn.cancel_frames(frame.get("canceled_frames", []))


async def correct_flow_slot(turn: Turn, frame: Frame) -> None:
    for name, corrected in frame.get("corrected_slots", {}).items():
        turn.set_slot(name, turn.slot_value_for(name, corrected["value"]), corrected.get("filled_by"))
    reset_flow_id, reset_step_id = frame.get("reset_flow_id"), frame.get("reset_step_id")
    if not reset_step_id:
        return
    flows = [i for i, f in enumerate(turn.stack) if stacks.is_user_flow(f) and f["flow_id"] == reset_flow_id]
    own = stacks.index_of(turn.stack, frame["frame_id"])
    if not flows or own is None:
        return
    index = flows[-1]
    # Questions pending above the corrected flow are asked again from the corrected step on.
    stack = turn.stack[: index + 1] + turn.stack[own:]
    stack[index] = {**stack[index], "step_id": f"NEXT:{reset_step_id}"}
    turn.conversation.set_stack(stack)


async def clarify_flows(turn: Turn, frame: Frame) -> None:
    limit = turn.conversation.slots.get("max_clarification_options") or 3
    names = list(frame.get("names", []))[: int(limit)]
    turn.update_frame(frame["frame_id"], names=names, clarification_options=readable_list(names, "or"))


async def _rejected(turn: Turn, slot_name: str, utter: str, value: Any) -> None:
    await turn.utter(utter, extra={"value": value})
    turn.set_slot(slot_name, None)


async def run_slot_rejections(turn: Turn, frame: Frame) -> None:
    slot_name = frame.get("collect") or frame.get("validate")
    value = turn.conversation.slots.get(slot_name)
    slot = turn.project.domain.slots.get(slot_name)
    if slot is None or value is None:
        return
    valid, coerced = coerce(slot, value)
    if not valid:
        await _rejected(turn, slot_name, TYPE_REJECTIONS.get(slot.type, "utter_ask_rephrase"), value)
        return
    if coerced != value:
        turn.set_slot(slot_name, coerced, turn.conversation.filled_by.get(slot_name))
    document = {"slots": {slot_name: coerced}}
    for rejection in frame.get("rejections", []):
        condition = rejection["if"]
        try:
            if isinstance(condition, bool):
                holds = condition
            else:
                holds = parse_predicate(render(condition, slots=document["slots"])).evaluate(document)
        except Exception:
            logger.exception("rejection %r of slot %s could not be evaluated", condition, slot_name)
            await _rejected(turn, slot_name, "utter_internal_error_rasa", coerced)
            return
        if holds:
            await _rejected(turn, slot_name, rejection["utter"], coerced)
            return


async def repeat_bot_messages(turn: Turn, frame: Frame) -> None:
    run = turn.conversation.latest_bot_messages(until=turn.conversation.committed)
    own = stacks.index_of(turn.stack, frame["frame_id"]) or 0
    if any(f.get("type") == stacks.COLLECT_INFORMATION for f in turn.stack[:own]) and run:
        run = run[:-1]  # the collect asks its question again by itself
    for event in run:
        metadata = {k: v for k, v in event.metadata.items() if k != "utter_action"}
        turn.send(BotMessage.from_parts(event.text, event.data, event.utter_action, metadata))


def _interrupted_frames(turn: Turn, own_id: str) -> list[Frame]:
    return [f for f in turn.stack if stacks.is_user_flow(f) and f["frame_id"] != own_id]


async def continue_interrupted_flow(turn: Turn, frame: Frame) -> None:
    chosen = turn.conversation.slots.get("interrupted_flow_to_continue")
    candidates = _interrupted_frames(turn, frame["frame_id"])
    target = next((f for f in reversed(candidates) if chosen in (f["flow_id"], _name(turn, f))), None)
    if target is None and candidates:
        target = candidates[-1]
    if target is None:
        return
    index = stacks.index_of(turn.stack, target["frame_id"])
    own = stacks.index_of(turn.stack, frame["frame_id"])
    start, end = stacks.block_of(turn.stack, index)
    end = min(end, own)  # this pattern's own frames stay where they are
    below = [f for i, f in enumerate(turn.stack) if not start <= i < end and i < own]
    turn.conversation.set_stack(below + turn.stack[start:end] + turn.stack[own:])
    turn.emit(FlowResumed(flow_id=target["flow_id"], step_id=target.get("step_id")))


def _name(turn: Turn, frame: Frame) -> str | None:
    flow = turn.project.flows.get(frame["flow_id"])
    return flow.name if flow else None


async def cancel_interrupted_flows(turn: Turn, frame: Frame) -> None:
    own = stacks.index_of(turn.stack, frame["frame_id"])
    below = turn.stack[:own]
    # Each interrupted flow goes with the frames above it that are its own (its pending question).
    turn.cancel_frames([f["frame_id"] for f in below if f.get("type") != stacks.CONTINUE_INTERRUPTED])


async def clean_stack(turn: Turn, frame: Frame) -> None:
    turn.cancel_frames([f["frame_id"] for f in turn.stack if f["frame_id"] != frame["frame_id"]])


async def trigger_search(turn: Turn, frame: Frame) -> None:
    if turn.services.knowledge is not None:
        turn.push(stacks.responder_frame(stacks.SEARCH))
    else:
        turn.push_pattern("pattern_cannot_handle", reason=CANNOT_HANDLE_NO_RELEVANT_ANSWER)


async def trigger_chitchat(turn: Turn, frame: Frame) -> None:
    if turn.services.chitchat is not None:
        turn.push(stacks.responder_frame(stacks.CHITCHAT))
    else:
        turn.push_pattern("pattern_cannot_handle", reason=CANNOT_HANDLE_CHITCHAT)


async def hangup(turn: Turn, frame: Frame) -> None:
    reason = "user disconnected" if frame.get("flow_id") == "pattern_session_end" else "bot disconnected"
    turn.emit(SessionEnded(metadata={"_reason": reason}))
    turn.session_ended = True


async def handoff_metric(turn: Turn, frame: Frame) -> None:
    logger.info("human handoff requested (reason: %s)", frame.get("reason", "flow"))


async def transfer_to_human(turn: Turn, frame: Frame) -> None:
    transfer = turn.services.transfer_to_human
    succeeded = False
    if transfer is not None:
        try:
            succeeded = bool(await transfer())
        except Exception:
            logger.exception("transfer to a human failed")
    if succeeded:
        turn.emit(SessionEnded(metadata={"_reason": "handoff"}))
        turn.session_ended = True
    else:
        await turn.utter("utter_human_handoff_failed")


async def extract_slots(turn: Turn, frame: Frame) -> None:
    for slot in turn.project.domain.slots.values():
        for mapping in slot.definition.mappings:
            if mapping.run_action_every_turn:
                await turn.run_custom_action(mapping.run_action_every_turn)


async def send_text(turn: Turn, frame: Frame) -> None:
    text = (turn.conversation.latest_message.metadata.get("message") if turn.conversation.latest_message else None)
    if text:
        turn.send(BotMessage(text=str(text)))


BuiltinHandler = Callable[["Turn", Frame], Awaitable[None]]

# `action_listen` is handled by the executor; the accepted no-op actions have no handler.
BUILTIN_ACTION_HANDLERS: Mapping[str, BuiltinHandler] = {
    "action_session_start": session_start,
    "action_restart": restart,
    "action_cancel_flow": cancel_flow,
    "action_correct_flow_slot": correct_flow_slot,
    "action_clarify_flows": clarify_flows,
    "action_run_slot_rejections": run_slot_rejections,
    "action_repeat_bot_messages": repeat_bot_messages,
    "action_continue_interrupted_flow": continue_interrupted_flow,
    "action_cancel_interrupted_flows": cancel_interrupted_flows,
    "action_clean_stack": clean_stack,
    "action_trigger_search": trigger_search,
    "action_trigger_chitchat": trigger_chitchat,
    "action_hangup": hangup,
    "action_handoff_metric": handoff_metric,
    "action_transfer_to_human": transfer_to_human,
    "action_extract_slots": extract_slots,
    "action_send_text": send_text,
}
