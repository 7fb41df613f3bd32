"""The flow graph the engine runs: flattened steps with resolved ids and `next` branches."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from voicecalm.project import schema
from voicecalm.project.problems import Location
from voicecalm.project.yaml_source import LocatedDict, LocatedList

END = "END"
START = "START"
PATTERN_PREFIX = "pattern_"


@dataclass(frozen=True, slots=True)
class Branch:
    """One way out of a step: taken when `condition` holds (`None` = always)."""

    condition: str | bool | None
    target: str
    location: Location


@dataclass(frozen=True, slots=True)
class Rejection:
    condition: str | bool
    utter: str
    location: Location


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    id: str
    next: tuple[Branch, ...]
    location: Location
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    has_explicit_next: bool = False

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(branch.target for branch in self.next)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionStep(Step):
    action: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectStep(Step):
    collect: str
    utter: str
    ask_before_filling: bool
    reset_after_flow_ends: bool
    force_slot_filling: bool
    rejections: tuple[Rejection, ...]
    silence_timeout: float | Mapping[str, float] | None
    dtmf: schema.Dtmf | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSlotsStep(Step):
    slots: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NoopStep(Step):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStep(Step):
    link: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStep(Step):
    call: str


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    name: str
    description: str | None
    steps: tuple[Step, ...]
    location: Location
    guard: str | bool | None = None
    always_include_in_prompt: bool = False
    nlu_triggers: tuple[schema.NluTrigger, ...] = ()
    persisted_slots: tuple[str, ...] = ()
    run_pattern_completed: bool = True
    translation: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # changes whenever the flow's definition changes (code-change detection)
    step_by_id: Mapping[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Duplicate ids are a validation error; the first definition is the one the graph keeps.
        by_id: dict[str, Step] = {}
        for step in self.steps:
            by_id.setdefault(step.id, step)
        object.__setattr__(self, "step_by_id", MappingProxyType(by_id))

    @property
    def is_pattern(self) -> bool:
        return self.id.startswith(PATTERN_PREFIX)

    @property
    def first_step(self) -> Step:
        return self.steps[0]

    def collect_steps(self) -> Iterator[CollectStep]:
        return (step for step in self.steps if isinstance(step, CollectStep))

    @property
    def collected_slots(self) -> frozenset[str]:
        return frozenset(step.collect for step in self.collect_steps())


def default_flow_name(flow_id: str) -> str:
    return flow_id.replace("_", " ").replace("-", " ")


def _step_id_postfix(model: Any) -> str:
    match model:
        case schema.ActionStepModel():
            return model.action
        case schema.CollectStepModel():
            return f"collect_{model.collect}"
        case schema.LinkStepModel():
            return f"link_{model.link}"
        case schema.CallStepModel():
            return f"call_{model.call}"
        case schema.SetSlotsStepModel():
            return "set_slots"
        case _:
            return "noop"


class _FlowBuilder:
    """Numbers steps in document order (inline branches before the next sibling) and links them."""

    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        self.steps: dict[int, Step] = {}
        self.counter = 0

    def build_list(self, models: list[Any], raws: LocatedList, top_level: bool) -> list[str]:
        ids: list[str] = []
        numbered: list[tuple[Any, Any, Location, int, tuple[Branch, ...]]] = []
        for position, model in enumerate(models):
            index = self.counter
            self.counter += 1
            ids.append(model.id if model.id is not None else f"{self.flow_id}_{index}_{_step_id_postfix(model)}")
            raw = raws[position] if isinstance(raws, list) and position < len(raws) else LocatedDict()
            location = raws.location_of(position)
            numbered.append((model, raw, location, index, self._explicit_branches(model, raw, location)))
        for position, (model, raw, location, index, branches) in enumerate(numbered):
            if model.next is None and not isinstance(model, schema.LinkStepModel):
                following = ids[position + 1] if position + 1 < len(ids) else (END if top_level else None)
                if following is not None and not isinstance(model, schema.NoopStepModel):
                    branches = (Branch(None, following, location),)
            self.steps[index] = _make_step(model, ids[position], branches, location, raw)
        return ids

    def _explicit_branches(self, model: Any, raw: Any, location: Location) -> tuple[Branch, ...]:
        if model.next is None:
            return ()
        next_location = raw.value_location_of("next") if isinstance(raw, LocatedDict) else location
        if isinstance(model.next, str):
            return (Branch(None, model.next, next_location),)
        raw_branches = raw.get("next") if isinstance(raw, LocatedDict) else None
        branches = []
        for position, branch in enumerate(model.next):
            raw_branch = raw_branches[position] if isinstance(raw_branches, LocatedList) else LocatedDict()
            branch_location = raw_branches.location_of(position) if isinstance(raw_branches, LocatedList) else next_location
            if isinstance(branch, schema.ConditionalNext):
                condition, target, key = branch.if_, branch.then, "then"
            else:
                condition, target, key = None, branch.else_, "else"
            if isinstance(target, list):
                raw_target = raw_branch.get(key) if isinstance(raw_branch, LocatedDict) else None
                if not isinstance(raw_target, LocatedList):
                    raw_target = _empty_list(branch_location)
                target = self.build_list(target, raw_target, top_level=False)[0]
            branches.append(Branch(condition, target, branch_location))
        return tuple(branches)


def _empty_list(location: Location) -> LocatedList:
    placeholder = LocatedList()
    placeholder.location = location
    placeholder.item_locations = []
    return placeholder


def _rejections(models: list[schema.Rejection], raw: Any, location: Location) -> tuple[Rejection, ...]:
    raw_list = raw.get("rejections") if isinstance(raw, LocatedDict) else None
    return tuple(
        Rejection(model.if_, model.utter, raw_list.location_of(i) if isinstance(raw_list, LocatedList) else location)
        for i, model in enumerate(models)
    )


def _make_step(model: Any, step_id: str, branches: tuple[Branch, ...], location: Location, raw: Any) -> Step:
    common = {
        "id": step_id,
        "next": branches,
        "location": location,
        "metadata": MappingProxyType(dict(model.metadata)),
        "has_explicit_next": model.next is not None,
    }
    match model:
        case schema.ActionStepModel():
            return ActionStep(action=model.action, **common)
        case schema.CollectStepModel():
            return CollectStep(
                collect=model.collect,
                utter=model.utter or f"utter_ask_{model.collect}",
                ask_before_filling=model.ask_before_filling,
                reset_after_flow_ends=model.reset_after_flow_ends,
                force_slot_filling=model.force_slot_filling,
                rejections=_rejections(model.rejections, raw, location),
                silence_timeout=model.silence_timeout,
                dtmf=model.dtmf,
                description=model.description,
                **common,
            )
        case schema.SetSlotsStepModel():
            slots = tuple(pair for entry in model.set_slots for pair in entry.items())
            return SetSlotsStep(slots=slots, description=model.description, **common)
        case schema.LinkStepModel():
            return LinkStep(link=model.link, description=model.description, **common)
        case schema.CallStepModel():
            return CallStep(call=model.call, description=model.description, **common)
        case _:
            return NoopStep(description=model.description, **common)


def build_flow(flow_id: str, model: schema.FlowModel, raw: LocatedDict, location: Location) -> Flow:
    builder = _FlowBuilder(flow_id)
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, LocatedList):
        raw_steps = _empty_list(location)
    builder.build_list(model.steps, raw_steps, top_level=True)
    return Flow(
        id=flow_id,
        name=model.name or default_flow_name(flow_id),
        description=model.description,
        steps=tuple(builder.steps[index] for index in sorted(builder.steps)),
        location=location,
        guard=model.if_,
        always_include_in_prompt=model.always_include_in_prompt,
        nlu_triggers=tuple(model.nlu_trigger or ()),
        persisted_slots=tuple(model.persisted_slots),
        run_pattern_completed=model.run_pattern_completed,
        translation=MappingProxyType({lang: t.name for lang, t in model.translation.items()}),
        metadata=MappingProxyType(dict(model.metadata)),
        fingerprint=hashlib.sha256(json.dumps(raw, default=str).encode()).hexdigest()[:16],
    )
