"""The merged domain: slots, responses, actions, intents, session settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicecalm.project import schema
from voicecalm.project.flows import Rejection
from voicecalm.project.problems import Location

# Actions the engine runs itself; they are never sent to an action server (patterns.md §5).
BUILTIN_ACTIONS = frozenset(
    {
        "action_listen",
        "action_session_start",
        "action_restart",
        "action_cancel_flow",
        "action_correct_flow_slot",
        "action_clarify_flows",
        "action_run_slot_rejections",
        "action_repeat_bot_messages",
        "action_continue_interrupted_flow",
        "action_cancel_interrupted_flows",
        "action_clean_stack",
        "action_trigger_search",
        "action_trigger_chitchat",
        "action_hangup",
        "action_handoff_metric",
        "action_transfer_to_human",
        "action_default_fallback",
        "action_extract_slots",
        "action_send_text",
        "action_reset_routing",
        "action_default_capabilities",
    }
)

# Slots every assistant has, whether or not its domain declares them.
BUILTIN_SLOTS: Mapping[str, schema.SlotModel] = {
    "requested_slot": schema.SlotModel(type="any", mappings=[schema.SlotMapping(type="controlled")]),
    "session_started_metadata": schema.SlotModel(type="any", mappings=[schema.SlotMapping(type="controlled")]),
    "flow_hashes": schema.SlotModel(type="any", mappings=[schema.SlotMapping(type="controlled")]),
    "language": schema.SlotModel(type="text", mappings=[schema.SlotMapping(type="controlled")]),
}


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    definition: schema.SlotModel
    location: Location | None
    validation_rejections: tuple[Rejection, ...] = ()

    @property
    def type(self) -> str:
        return self.definition.type

    @property
    def initial_value(self) -> Any:
        return self.definition.initial_value

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(self.definition.values or ())


@dataclass(frozen=True, slots=True)
class Response:
    name: str
    variations: tuple[schema.ResponseVariation, ...]
    location: Location | None


@dataclass(frozen=True, slots=True)
class Domain:
    slots: Mapping[str, Slot]
    responses: Mapping[str, Response]
    actions: frozenset[str]
    actions_sending_domain: frozenset[str]
    intents: frozenset[str]
    entities: frozenset[str]
    session_config: schema.SessionConfig = field(default_factory=schema.SessionConfig)
