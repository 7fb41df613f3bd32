"""Make a turn's commands safe and consistent before they touch the stack (commands.md §3-§4).

Whatever a model or a user typed, only commands that act inside the flows' schema survive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from voicecalm.conditions import parse_predicate
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import (
    LLM,
    NLU,
    CANNOT_HANDLE_CHITCHAT,
    CancelFlow,
    CannotHandle,
    ChitChat,
    Clarify,
    Command,
    CorrectedSlot,
    CorrectSlots,
    HumanHandoff,
    Knowledge,
    RepeatMessage,
    SetSlot,
    SkipQuestion,
    StartFlow,
)
from voicecalm.dialogue.templates import render_condition
from voicecalm.project import Project
from voicecalm.project.flows import ActionStep
from voicecalm.tracker.conversation import Conversation

logger = logging.getLogger(__name__)

NLU_MAPPINGS = frozenset({"from_entity", "from_intent", "from_text", "from_trigger_intent"})
FREE_FORM = (ChitChat, Knowledge)
DROPPED_BY_HANDOFF = (StartFlow, Clarify, ChitChat, Knowledge, RepeatMessage, SkipQuestion, CannotHandle, HumanHandoff)


@dataclass(frozen=True, slots=True)
class CleanupSettings:
    human_handoff_command: bool = True
    has_chitchat_responder: bool = False


def guard_allows(project: Project, flow_id: str, conversation: Conversation) -> bool:
    flow = project.flows.get(flow_id)
    if flow is None or flow.guard is None:
        return flow is not None
    if flow.guard is False or flow.guard is True:
        return flow.guard
    context = stacks.current_context(conversation.stack)
    source = render_condition(flow.guard, context)
    return parse_predicate(source).evaluate({"slots": conversation.slots, "context": context})


def filter_for_state(commands: Sequence[Command], project: Project, conversation: Conversation) -> list[Command]:
    """The guard and forced-slot filters applied to predicted commands (commands.md §3)."""
    active = {frame["flow_id"] for frame in stacks.user_flows(conversation.stack)}

    def startable(flow_id: str) -> bool:
        return flow_id in active or guard_allows(project, flow_id, conversation)

    kept: list[Command] = []
    for command in commands:
        if isinstance(command, StartFlow) and not startable(command.flow):
            continue
        if isinstance(command, Clarify) and command.options:
            options = tuple(o for o in command.options if startable(o))
            command = StartFlow(options[0]) if len(options) == 1 else Clarify(options)
        kept.append(command)
    asked = stacks.asked_slot(conversation.stack)
    if asked is not None and _forces_slot_filling(project, conversation):
        kept = [c for c in kept if isinstance(c, SetSlot) and c.name == asked]
    # A request that was understood but may not be served now is answered, not ignored.
    return kept or ([CannotHandle()] if commands else [])


def _forces_slot_filling(project: Project, conversation: Conversation) -> bool:
    frame = stacks.top_user_flow(conversation.stack)
    if frame is None:
        return False
    step = project.flows[frame["flow_id"]].step_by_id.get(frame["step_id"]) if frame["flow_id"] in project.flows else None
    return bool(getattr(step, "force_slot_filling", False))


class _Cleaner:
    def __init__(self, project: Project, conversation: Conversation, settings: CleanupSettings) -> None:
        self.project = project
        self.conversation = conversation
        self.settings = settings
        self.kept: list[Command] = []
        self.corrections: list[CorrectedSlot] = []

    def has(self, kind: type[Command]) -> bool:
        return any(isinstance(c, kind) for c in self.kept)

    def set_slot(self, command: SetSlot) -> None:
        slot = self.project.domain.slots.get(command.name)
        if slot is None:
            logger.info("dropped set slot for unknown slot %r", command.name)
            self.kept.append(CannotHandle())
            return
        if not _source_allowed(slot.definition.mapping_types, command.extractor):
            logger.info("dropped set slot %r: its mappings do not allow %s", command.name, command.extractor)
            self.kept.append(CannotHandle())
            return
        current = self.conversation.slots.get(command.name)
        if command.extractor == LLM and self.conversation.filled_by.get(command.name) == NLU:
            if not any(m.allow_nlu_correction for m in slot.definition.mappings):
                return
        if current is None or command.name == stacks.asked_slot(self.conversation.stack):
            self.kept.append(command)
            return
        if str(current) == str(command.value) or self._same_as_running_correction(command):
            return
        self.corrections.append(CorrectedSlot(command.name, command.value, command.extractor))

    def _same_as_running_correction(self, command: SetSlot) -> bool:
        frame = stacks.find_pattern(self.conversation.stack, "pattern_correction")
        values = frame.get("new_slot_values", {}) if frame else {}
        return command.name in values and str(values[command.name]) == str(command.value)

    def clean(self, commands: Sequence[Command]) -> list[Command]:
        for command in commands:
            match command:
                case SetSlot():
                    self.set_slot(command)
                case CancelFlow() if stacks.top_user_flow(self.conversation.stack) is None:
                    self.kept.append(CannotHandle())
                case StartFlow() if self._is_running(command.flow):
                    continue
                case ChitChat() if self._chitchat_needs_responder():
                    self.kept.append(CannotHandle(reason=CANNOT_HANDLE_CHITCHAT))
                case HumanHandoff() if not self.settings.human_handoff_command:
                    self.kept.append(CannotHandle())
                case _:
                    self.kept.append(command)
        if self.corrections:
            self.kept.append(CorrectSlots(tuple(self.corrections)))
        # Free-form replies first; they are answered before any flow starts.
        self.kept.sort(key=lambda c: 0 if isinstance(c, FREE_FORM) else 1)
        if self.has(Clarify) and any(not isinstance(c, Clarify) for c in self.kept):
            self.kept = [c for c in self.kept if not isinstance(c, Clarify)]
        if self.has(HumanHandoff):
            self.kept = [c for c in self.kept if not isinstance(c, DROPPED_BY_HANDOFF)] + [HumanHandoff()]
        self._clarify_multiple_start_flows()
        self._keep_first_of(CannotHandle, RepeatMessage, ChitChat)
        if any(not isinstance(c, CannotHandle) for c in self.kept):
            self.kept = [c for c in self.kept if not isinstance(c, CannotHandle)]
        return self.kept

    def _is_running(self, flow_id: str) -> bool:
        frame = stacks.top_user_flow(self.conversation.stack)
        if frame is None or frame["flow_id"] != flow_id:
            return False
        return stacks.find_pattern(self.conversation.stack, stacks.CONTINUE_INTERRUPTED) is None

    def _chitchat_needs_responder(self) -> bool:
        pattern = self.project.flows.get("pattern_chitchat")
        runs_responder = pattern is not None and any(
            isinstance(step, ActionStep) and step.action == "action_trigger_chitchat" for step in pattern.steps
        )
        return runs_responder and not self.settings.has_chitchat_responder

    def _clarify_multiple_start_flows(self) -> None:
        starts = [c for c in self.kept if isinstance(c, StartFlow)]
        if (
            os.environ.get("CLARIFY_ON_MULTIPLE_START_FLOWS", "").lower() == "true"
            and len(starts) > 1
            and not self.conversation.stack
        ):
            self.kept = [c for c in self.kept if not isinstance(c, StartFlow)] + [
                Clarify(tuple(c.flow for c in starts))
            ]

    def _keep_first_of(self, *kinds: type[Command]) -> None:
        seen: set[type[Command]] = set()
        kept = []
        for command in self.kept:
            kind = type(command)
            if kind in kinds:
                if kind in seen:
                    continue
                seen.add(kind)
            kept.append(command)
        self.kept = kept


def _source_allowed(mapping_types: frozenset[str], extractor: str) -> bool:
    if extractor == LLM:
        return "from_llm" in mapping_types
    if extractor == NLU:
        return bool(mapping_types & NLU_MAPPINGS)
    return True  # buttons, DTMF and actions may set any slot


def clean_commands(
    commands: Sequence[Command], project: Project, conversation: Conversation, settings: CleanupSettings
) -> list[Command]:
    return _Cleaner(project, conversation, settings).clean(commands)
