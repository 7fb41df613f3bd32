"""Semantic checks of a loaded project: everything a file's shape cannot tell (formats.md §2-4)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from voicecalm.conditions import ConditionSyntaxError, Predicate, parse_predicate
from voicecalm.project import schema
from voicecalm.project.domain import BUILTIN_ACTIONS, Domain, Slot
from voicecalm.project.flows import (
    END,
    START,
    ActionStep,
    CallStep,
    CollectStep,
    Flow,
    LinkStep,
    NoopStep,
    Rejection,
    SetSlotsStep,
    Step,
)
from voicecalm.project.problems import Location, ProblemLog

if TYPE_CHECKING:
    from voicecalm.project.loader import Project

FLOW_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LENIENT_FLOW_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
RESERVED_STEP_IDS = (START, END)
USER_FLOW_LINK_PATTERNS = ("pattern_human_handoff", "pattern_search", "pattern_customer_satisfaction")
PATTERN_LINK_PATTERNS = (*USER_FLOW_LINK_PATTERNS, "pattern_chitchat")
MAX_PROMPT_FLOWS_WITHOUT_RETRIEVAL = 20

_jinja = jinja2.Environment()


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


class _Validator:
    def __init__(self, project: Project, problems: ProblemLog) -> None:
        self.project = project
        self.domain: Domain = project.domain
        self.flows = project.flows
        self.problems = problems

    def error(self, where: Location | Path | None, message: str) -> None:
        self.problems.error(where, message)

    def warning(self, where: Location | Path | None, message: str) -> None:
        self.problems.warning(where, message)

    # --- conditions -----------------------------------------------------------------------

    def template(self, text: str, where: Location | None, what: str) -> bool:
        """Check Jinja syntax; True when `text` is a template (and so checked at run time)."""
        if not is_template(text):
            return False
        try:
            _jinja.parse(text)
        except jinja2.TemplateSyntaxError as error:
            self.error(where, f"{what} has a Jinja syntax error: {error.message}")
        return True

    def condition(
        self, source: str | bool, where: Location | None, what: str, allowed_slots: Iterable[str] | None = None
    ) -> None:
        if isinstance(source, bool) or self.template(source, where, what):
            return
        try:
            predicate = parse_predicate(source)
        except ConditionSyntaxError as error:
            self.error(where, f"{what} `{source}` does not parse: {error.message} (column {error.column})")
            return
        allowed = None if allowed_slots is None else set(allowed_slots)
        for name in sorted(predicate.names):
            namespace, _, path = name.partition(".")
            if namespace == "context" and allowed is None:
                continue
            if namespace != "slots" or not path:
                self.error(where, f"{what} `{source}` uses '{name}': only `slots.<name>` and `context.<name>` are known")
                continue
            slot_name = path.split(".")[0]
            if slot_name not in self.domain.slots:
                self.error(where, f"{what} `{source}` uses slot '{slot_name}', which is not in the domain")
            elif allowed is not None and slot_name not in allowed:
                self.error(where, f"{what} `{source}` may only use slots.{', slots.'.join(sorted(allowed))}")
        self.comparisons(predicate, source, where, what)

    def comparisons(self, predicate: Predicate, source: str, where: Location | None, what: str) -> None:
        for comparison in predicate.comparisons:
            namespace, _, slot_name = comparison.name.partition(".")
            slot = self.domain.slots.get(slot_name) if namespace == "slots" else None
            if slot is None:
                continue
            values = comparison.value if isinstance(comparison.value, frozenset) else (comparison.value,)
            for value in values:
                problem = _comparison_problem(slot, value)
                if problem:
                    self.error(where, f"{what} `{source}` compares {problem}")

    # --- flows ----------------------------------------------------------------------------

    def flow(self, flow: Flow) -> None:
        where = flow.location
        if not FLOW_ID.fullmatch(flow.id):
            if LENIENT_FLOW_ID.fullmatch(flow.id):
                self.warning(where, f"flow id '{flow.id}' should match {FLOW_ID.pattern}")
            else:
                self.error(where, f"flow id '{flow.id}' must match {FLOW_ID.pattern}")
        if not flow.description or not flow.description.strip():
            self.error(where, f"flow '{flow.id}' has no description (the command generator reads it)")
        if flow.guard is not None:
            self.condition(flow.guard, where, f"flow '{flow.id}' guard")
        self.step_ids(flow)
        for step in flow.steps:
            self.step_next(flow, step)
            self.step(flow, step)
        self.reachability(flow)
        self.persisted_slots(flow)

    def step_ids(self, flow: Flow) -> None:
        seen: dict[str, Step] = {}
        for step in flow.steps:
            if step.id in RESERVED_STEP_IDS or step.id.startswith("NEXT:"):
                self.error(step.location, f"step id '{step.id}' is reserved")
            if step.id in seen:
                self.error(step.location, f"step id '{step.id}' is used twice in flow '{flow.id}' (first at line {seen[step.id].location.line})")
            seen.setdefault(step.id, step)

    def step_next(self, flow: Flow, step: Step) -> None:
        if isinstance(step, LinkStep):
            if step.has_explicit_next:
                self.error(step.location, "a `link` step ends the flow and cannot have `next`")
            return
        if not step.next:
            if isinstance(step, NoopStep):
                self.error(step.location, "a `noop` step needs `next`")
            else:
                self.error(step.location, "the last step of an inline `then`/`else` list needs an explicit `next`")
            return
        conditional = [b for b in step.next if b.condition is not None]
        otherwise = [b for b in step.next if b.condition is None]
        if conditional and not otherwise:
            self.error(step.location, "`next` has `if` branches but no `else`")
        if len(otherwise) > 1:
            self.error(otherwise[1].location, "`next` has more than one `else`")
        elif otherwise and step.next[-1] is not otherwise[0]:
            self.error(otherwise[0].location, "`else` must be the last entry of `next`")
        for branch in step.next:
            if branch.condition is not None:
                self.condition(branch.condition, branch.location, "condition")
            if branch.target != END and branch.target not in flow.step_by_id:
                self.error(branch.location, f"`next` points to '{branch.target}', which is no step of flow '{flow.id}'")

    def reachability(self, flow: Flow) -> None:
        reached = {flow.first_step.id}
        queue = deque([flow.first_step])
        while queue:
            for target in queue.popleft().targets:
                step = flow.step_by_id.get(target)
                if step is not None and target not in reached:
                    reached.add(target)
                    queue.append(step)
        for step in flow.steps:
            if step.id not in reached:
                self.error(step.location, f"step '{step.id}' can never be reached in flow '{flow.id}'")

    def step(self, flow: Flow, step: Step) -> None:
        match step:
            case ActionStep():
                self.action(step.action, step.location)
            case CollectStep():
                self.collect(step)
            case SetSlotsStep():
                for name, value in step.slots:
                    slot = self.domain.slots.get(name)
                    if slot is None:
                        self.error(step.location, f"`set_slots` sets '{name}', which is not in the domain")
                    elif (problem := _value_problem(slot, value)) is not None:
                        self.error(step.location, f"`set_slots` gives slot '{name}' {problem}")
            case LinkStep():
                self.link(flow, step)
            case CallStep():
                self.call(flow, step)

    def action(self, name: str, where: Location) -> None:
        if self.template(name, where, "action name"):
            return
        if name.startswith("utter_"):
            if name not in self.domain.responses:
                self.error(where, f"response '{name}' is not defined in the domain")
        elif name not in BUILTIN_ACTIONS and name not in self.domain.actions:
            self.error(where, f"action '{name}' is neither a response, a built-in action nor listed in the domain's `actions`")

    def collect(self, step: CollectStep) -> None:
        slot = self.domain.slots.get(step.collect)
        if slot is None:
            self.error(step.location, f"`collect` asks for slot '{step.collect}', which is not in the domain")
        has_utter = step.utter in self.domain.responses
        has_ask_action = f"action_ask_{step.collect}" in self.domain.actions
        if not self.template(step.utter, step.location, "`utter`"):
            explicit = step.utter != f"utter_ask_{step.collect}"
            if explicit and not has_utter:
                self.error(step.location, f"`utter` names response '{step.utter}', which is not defined")
            elif slot is not None and not (has_utter or has_ask_action or slot.initial_value is not None):
                self.error(
                    step.location,
                    f"no way to ask for '{step.collect}': define response '{step.utter}' or action "
                    f"'action_ask_{step.collect}', or give the slot an `initial_value`",
                )
        for rejection in step.rejections:
            self.rejection(rejection, step.collect)
        if step.dtmf is not None and step.dtmf.length is None and step.dtmf.finish_on_key is None:
            self.warning(step.location, "`dtmf` has neither `length` nor `finish_on_key`: '#' finishes the input")

    def rejection(self, rejection: Rejection, slot_name: str) -> None:
        self.condition(rejection.condition, rejection.location, "rejection", allowed_slots=[slot_name])
        if not self.template(rejection.utter, rejection.location, "rejection `utter`"):
            if rejection.utter not in self.domain.responses:
                self.error(rejection.location, f"rejection response '{rejection.utter}' is not defined")

    def link(self, flow: Flow, step: LinkStep) -> None:
        target = self.flows.get(step.link)
        if target is None:
            self.error(step.location, f"`link` to unknown flow '{step.link}'")
            return
        if flow.id == "pattern_internal_error":
            self.error(step.location, "pattern_internal_error cannot link to another flow")
        elif target.is_pattern:
            allowed = PATTERN_LINK_PATTERNS if flow.is_pattern else USER_FLOW_LINK_PATTERNS
            if target.id not in allowed:
                self.error(step.location, f"`link` to '{target.id}' is not allowed; patterns reachable by link: {', '.join(allowed)}")

    def call(self, flow: Flow, step: CallStep) -> None:
        target = self.flows.get(step.call)
        if target is None:
            self.error(step.location, f"`call` to unknown flow '{step.call}'")
            return
        if flow.is_pattern:
            self.error(step.location, "a pattern cannot `call` a flow")
        if target.is_pattern:
            self.error(step.location, f"a pattern ('{target.id}') cannot be called")
        links = [s for s in target.steps if isinstance(s, LinkStep)]
        if links:
            self.error(step.location, f"flow '{target.id}' is called here but contains a `link` (at line {links[0].location.line})")

    def persisted_slots(self, flow: Flow) -> None:
        if flow.persisted_slots and any(not s.reset_after_flow_ends for s in flow.collect_steps()):
            self.error(flow.location, f"flow '{flow.id}' uses both `persisted_slots` and `reset_after_flow_ends`")
        written = flow.collected_slots | {name for s in flow.steps if isinstance(s, SetSlotsStep) for name, _ in s.slots}
        for name in flow.persisted_slots:
            if name not in self.domain.slots:
                self.error(flow.location, f"persisted slot '{name}' is not in the domain")
            elif name not in written:
                self.error(flow.location, f"persisted slot '{name}' is neither collected nor set by flow '{flow.id}'")

    # --- domain ---------------------------------------------------------------------------

    def slot(self, slot: Slot) -> None:
        for mapping in slot.definition.mappings:
            if mapping.type in ("from_entity", "from_intent", "from_text", "from_trigger_intent"):
                self.warning(slot.location, f"slot '{slot.name}' has NLU mapping '{mapping.type}': the command generator never fills it")
            if mapping.run_action_every_turn and mapping.run_action_every_turn not in self.domain.actions:
                self.error(slot.location, f"slot '{slot.name}' runs action '{mapping.run_action_every_turn}', which is not in the domain's `actions`")
            for condition in mapping.conditions:
                if condition.active_flow and condition.active_flow not in self.flows:
                    self.error(slot.location, f"slot '{slot.name}' mapping names unknown flow '{condition.active_flow}'")
        if slot.initial_value is not None and (problem := _value_problem(slot, slot.initial_value)) is not None:
            self.error(slot.location, f"slot '{slot.name}' has an `initial_value` that is {problem}")
        for rejection in slot.validation_rejections:
            self.rejection(rejection, slot.name)
        validation = slot.definition.validation
        if validation and validation.refill_utter and validation.refill_utter not in self.domain.responses:
            self.error(slot.location, f"`refill_utter` '{validation.refill_utter}' is not defined")

    def response(self, name: str, variations: Iterable[schema.ResponseVariation], where: Location | None) -> None:
        for variation in variations:
            if isinstance(variation.condition, str):
                self.condition(variation.condition, where, f"response '{name}' condition")
            elif variation.condition:
                for legacy in variation.condition:
                    if legacy.name not in self.domain.slots:
                        self.error(where, f"response '{name}' condition uses slot '{legacy.name}', which is not in the domain")
            if variation.channel is not None and variation.channel not in schema.CHANNEL_NAMES:
                self.warning(where, f"response '{name}' has a variation for unknown channel '{variation.channel}'")
            if variation.metadata.get("template") == "jinja" and variation.text:
                self.template(variation.text, where, f"response '{name}'")

    def retrieval(self) -> None:
        generator = self.project.config.command_generator
        user_flows = [f for f in self.flows.values() if not f.is_pattern]
        if generator is not None and not generator.flow_retrieval.active and len(user_flows) > MAX_PROMPT_FLOWS_WITHOUT_RETRIEVAL:
            self.warning(None, f"flow retrieval is off and there are {len(user_flows)} user flows: every prompt lists them all")

    def run(self) -> None:
        for flow in self.flows.values():
            self.flow(flow)
        for slot in self.domain.slots.values():
            self.slot(slot)
        for response in self.domain.responses.values():
            self.response(response.name, response.variations, response.location)
        self.retrieval()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _comparison_problem(slot: Slot, value: Any) -> str | None:
    """Why comparing `slot` with literal `value` can never be right, if it cannot."""
    if value is None or not isinstance(value, (str, int, float, bool)):
        return None  # null, undefined and empty fit every slot
    if slot.type == "categorical" and value not in slot.values:
        return f"categorical slot '{slot.name}' with {value!r}, which is not one of {list(slot.values)}"
    if slot.type == "bool" and not isinstance(value, bool):
        return f"bool slot '{slot.name}' with {value!r}; use true or false"
    return None


def _value_problem(slot: Slot, value: Any) -> str | None:
    """Why `value` is not a valid literal for `slot`, if it is not."""
    if value is None or (isinstance(value, str) and is_template(value)):
        return None
    if slot.type == "categorical" and not any(
        str(value).lower() == str(allowed).lower() for allowed in slot.values
    ):
        return f"{value!r}, which is not one of {list(slot.values)}"
    if slot.type == "bool" and not isinstance(value, bool):
        return f"{value!r}, which is not a boolean"
    if slot.type == "float":
        if not _is_number(value):
            return f"{value!r}, which is not a number"
        low, high = slot.definition.min_value, slot.definition.max_value
        if low is not None and high is not None and not low <= value <= high:
            return f"{value!r}, which is outside [{low}, {high}]"
    return None


def validate(project: Project, problems: ProblemLog) -> None:
    _Validator(project, problems).run()
