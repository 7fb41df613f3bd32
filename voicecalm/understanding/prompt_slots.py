"""The slots a flow shows the command generator: what the prompt lists, the grammar allows and
the examples fill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicecalm.dialogue import stack as stacks
from voicecalm.project import Flow, Project
from voicecalm.project.flows import CallStep, CollectStep
from voicecalm.tracker.conversation import Conversation


@dataclass(frozen=True, slots=True)
class PromptSlot:
    name: str
    description: str
    allowed_values: list[Any] | None


def _allowed_values(project: Project, slot_name: str) -> list[Any] | None:
    slot = project.domain.slots.get(slot_name)
    if slot is None:
        return None
    if slot.type == "categorical":
        return list(slot.values)
    if slot.type == "bool":
        return [True, False]
    return None


def prompt_slots(
    flow: Flow, project: Project, *, called: bool = False, seen: frozenset[str] = frozenset()
) -> list[PromptSlot]:
    """The slots a flow collects without asking first; with `called`, those of the flows it calls too."""
    slots: list[PromptSlot] = []
    for step in flow.steps:
        if isinstance(step, CollectStep) and not step.ask_before_filling:
            slots.append(PromptSlot(step.collect, step.description or "", _allowed_values(project, step.collect)))
        elif called and isinstance(step, CallStep) and step.call in project.flows and step.call not in seen:
            slots += prompt_slots(project.flows[step.call], project, called=True, seen=seen | {flow.id})
    unique = {slot.name: slot for slot in slots}
    return list(unique.values())


def active_flows(conversation: Conversation, project: Project) -> list[Flow]:
    """The user flows under way, bottom of the stack first (called flows included)."""
    return [
        project.flows[frame["flow_id"]] for frame in stacks.user_flows(conversation.stack) if frame["flow_id"] in project.flows
    ]


def active_slots(conversation: Conversation, project: Project) -> list[PromptSlot]:
    """The slots of the flows under way and of the flows they call, once each."""
    slots = {slot.name: slot for flow in active_flows(conversation, project) for slot in prompt_slots(flow, project, called=True)}
    return list(slots.values())
