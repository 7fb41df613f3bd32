"""Apply a turn's cleaned commands to the stack and slots (commands.md §5)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import (
    CUSTOM,
    CancelFlow,
    CannotHandle,
    ChitChat,
    Clarify,
    Command,
    CorrectSlots,
    Error,
    HandleCodeChange,
    HumanHandoff,
    Knowledge,
    Noop,
    RepeatMessage,
    Restart,
    SessionEnd,
    SessionStart,
    SetSlot,
    SkipQuestion,
    StartFlow,
    UserSilence,
)
from voicecalm.project import Flow
from voicecalm.project.flows import CollectStep
from voicecalm.tracker.events import FlowInterrupted, FlowResumed, SlotSet

if TYPE_CHECKING:
    from voicecalm.dialogue.executor import Turn

PATTERN_FOR = {
    ChitChat: "pattern_chitchat",
    Knowledge: "pattern_search",
    RepeatMessage: "pattern_repeat_bot_messages",
    HandleCodeChange: "pattern_code_change",
    Restart: "pattern_restart",
    SessionStart: "pattern_session_start",
    SessionEnd: "pattern_session_end",
    UserSilence: "pattern_user_silence",
}


def execution_order(commands: Sequence[Command], turn: Turn) -> list[Command]:
    """Free-form first (cleanup did that), the flow to start last, then reversed; handoff last."""
    ordered = [c for c in commands if not isinstance(c, HumanHandoff)]
    if stacks.top_user_flow(turn.stack) is None:
        starts = [c for c in ordered if isinstance(c, StartFlow)]
        if starts:
            ordered.remove(starts[-1])
            ordered.append(starts[-1])
    ordered.reverse()
    return ordered + [c for c in commands if isinstance(c, HumanHandoff)]


def execute_commands(turn: Turn, commands: Sequence[Command]) -> None:
    started = {c.flow for c in commands if isinstance(c, StartFlow)}
    slots_set_before = len(turn.conversation.events)
    # "Cancel" means the flow the user was in, not one this same message starts.
    flow_before = stacks.top_user_flow(turn.stack)
    for command in execution_order(commands, turn):
        match command:
            case StartFlow():
                start_flow(turn, command.flow)
            case SetSlot():
                set_slot(turn, command, started)
            case CorrectSlots():
                correct_slots(turn, command)
            case CancelFlow():
                present = flow_before is not None and stacks.index_of(turn.stack, flow_before["frame_id"]) is not None
                frame = flow_before if present else stacks.top_user_flow(turn.stack)
                if frame is not None:
                    turn.push_cancel(frame)
            case Clarify():
                clarify(turn, command)
            case SkipQuestion():
                if stacks.top_user_flow(turn.stack) is not None:
                    turn.push_pattern("pattern_skip_question")
            case HumanHandoff():
                turn.push_handoff(reason="user_request")
            case CannotHandle():
                turn.push_pattern("pattern_cannot_handle", reason=command.reason)
            case Error():
                turn.push_pattern("pattern_internal_error", error_type=command.error_type, info=dict(command.info))
            case Noop():
                pass
            case _:
                turn.push_pattern(PATTERN_FOR[type(command)])
    push_slot_validations(turn, slots_set_before)


def start_flow(turn: Turn, flow_id: str) -> None:
    flow = turn.project.flows.get(flow_id)
    if flow is None:
        return
    # A new flow replaces the pending "anything else?" and "shall we continue?" questions.
    kept: list[stacks.Frame] = []
    removing = False
    for frame in turn.stack:
        if frame.get("type") in (stacks.COMPLETED, stacks.CONTINUE_INTERRUPTED):
            removing = True  # the pattern and the question it is asking
        elif frame.get("type") not in (stacks.COLLECT_INFORMATION, stacks.VALIDATE_SLOT):
            removing = False
        if not removing:
            kept.append(frame)
    turn.conversation.set_stack(kept)
    existing = [i for i, f in enumerate(turn.stack) if stacks.is_user_flow(f) and f["flow_id"] == flow_id]
    if flow.is_pattern:
        turn.push_pattern(flow_id)
    elif existing:
        resume_flow(turn, existing[-1])
    else:
        turn.push(stacks.user_flow_frame(flow_id, turn.frame_type_for_new_flow()))


def resume_flow(turn: Turn, index: int) -> None:
    """Move a flow that is already on the stack, with the frames above it that are its own, to the top."""
    start, end = stacks.block_of(turn.stack, index)
    if end == len(turn.stack):
        return
    current = stacks.top_user_flow(turn.stack)
    block = turn.stack[start:end]
    turn.conversation.set_stack(turn.stack[:start] + turn.stack[end:] + block)
    if current is not None:
        turn.emit(FlowInterrupted(flow_id=current["flow_id"], step_id=current.get("step_id")))
    turn.emit(FlowResumed(flow_id=block[0]["flow_id"], step_id=block[0].get("step_id")))


def _collected_without_asking(flow: Flow, turn: Turn, seen: frozenset[str] = frozenset()) -> set[str]:
    names = {s.collect for s in flow.collect_steps() if not s.ask_before_filling}
    for step in flow.steps:
        target = getattr(step, "call", None)
        if target and target not in seen and target in turn.project.flows:
            names |= _collected_without_asking(turn.project.flows[target], turn, seen | {flow.id})
    return names


def slot_is_relevant(turn: Turn, name: str, started: set[str]) -> bool:
    """May a command (not an action) set this slot now? (commands.md §4, execution skip)."""
    if name in (stacks.asked_slot(turn.stack), stacks.validated_slot(turn.stack)):
        return True
    flows = [turn.project.flows.get(f["flow_id"]) for f in stacks.user_flows(turn.stack)]
    if started:
        flows += [turn.project.flows.get(flow_id) for flow_id in started]
    else:
        flows += [f for f in turn.project.flows.values() if f.is_pattern]
    return any(flow is not None and name in _collected_without_asking(flow, turn) for flow in flows)


def set_slot(turn: Turn, command: SetSlot, started: set[str]) -> None:
    value = turn.slot_value_for(command.name, command.value)
    if turn.conversation.slots.get(command.name) == value:
        return
    if command.extractor != CUSTOM and not slot_is_relevant(turn, command.name, started):
        return
    turn.set_slot(command.name, value, command.extractor)


def push_slot_validations(turn: Turn, since: int) -> None:
    """A slot with domain `validation` that a command set this turn is validated by its pattern."""
    names = {e.slot: e for e in turn.conversation.events[since:] if isinstance(e, SlotSet)}
    for name in names:
        slot = turn.project.domain.slots.get(name)
        if slot is None or slot.definition.validation is None:
            continue
        validation = slot.definition.validation
        turn.push_pattern(
            stacks.VALIDATE_SLOT,
            validate=name,
            refill_utter=validation.refill_utter or f"utter_ask_{name}",
            refill_action=f"action_ask_{name}",
            rejections=[{"if": r.condition, "utter": r.utter} for r in slot.validation_rejections],
        )


def clarify(turn: Turn, command: Clarify) -> None:
    flows = [turn.project.flows[o] for o in command.options if o in turn.project.flows]
    turn.push_pattern(
        "pattern_clarification",
        names=[f.name for f in flows],
        clarification_ids=[f.id for f in flows],
        clarification_options="",
    )


def _steps_before(flow: Flow, step_id: str) -> set[str]:
    """Ids of the steps from which `step_id` can be reached (the steps that ran before it)."""
    predecessors: dict[str, set[str]] = {}
    for step in flow.steps:
        for target in step.targets:
            predecessors.setdefault(target, set()).add(step.id)
    seen: set[str] = set()
    queue = deque([step_id])
    while queue:
        for previous in predecessors.get(queue.popleft(), ()):
            if previous not in seen:
                seen.add(previous)
                queue.append(previous)
    return seen


def correct_slots(turn: Turn, command: CorrectSlots) -> None:
    collected: dict[str, tuple[Flow, dict, CollectStep]] = {}
    for frame in reversed(list(stacks.user_flows(turn.stack))):
        flow = turn.project.flows.get(frame["flow_id"])
        if flow is None:
            continue
        for step in flow.collect_steps():
            collected.setdefault(step.collect, (flow, frame, step))
    corrected = [s for s in command.corrected_slots if s.name in collected]
    if not corrected:
        return
    reset_flow_id = reset_step_id = None
    reset_frame = collected[corrected[0].name][1]
    flow = turn.project.flows[reset_frame["flow_id"]]
    current = reset_frame["step_id"].removeprefix("NEXT:")
    asked = _steps_before(flow, current) | {current}
    asked_collects = [
        s for s in flow.collect_steps() if s.id in asked and s.collect in {c.name for c in corrected}
    ]
    if asked_collects and reset_frame["step_id"] != "START":
        reset_flow_id, reset_step_id = flow.id, asked_collects[0].id
    turn.push_pattern(
        "pattern_correction",
        is_reset_only=all(collected[s.name][2].ask_before_filling for s in corrected),
        corrected_slots={s.name: {"value": s.value, "filled_by": s.filled_by} for s in corrected},
        reset_flow_id=reset_flow_id,
        reset_step_id=reset_step_id,
        new_slot_values={s.name: s.value for s in corrected},
    )
