"""Run one turn's commands against the stack, then run flow steps until the bot listens.

`Turn` owns the working copy of the conversation for one user turn; every change goes through
`Conversation.apply`, so the events it leaves behind are the whole truth of what happened.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from voicecalm import metrics
from voicecalm.actions.runner import ActionFailed, ActionRejected, ActionRunner
from voicecalm.conditions import parse_predicate
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.slot_values import coerce
from voicecalm.dialogue.stack import Frame
from voicecalm.dialogue.action_results import apply_action_result
from voicecalm.dialogue.builtin_actions import BUILTIN_ACTION_HANDLERS
from voicecalm.dialogue.commands import CANNOT_HANDLE_CHITCHAT, CANNOT_HANDLE_NO_RELEVANT_ANSWER
from voicecalm.dialogue.responders import ChitchatResponder, History, KnowledgeResponder, Rephraser, SearchResult
from voicecalm.dialogue.templates import readable_list, render, render_condition
from voicecalm.nlg import BotMessage, ResponseRenderer
from voicecalm.project import Flow, Project
from voicecalm.project.domain import BUILTIN_ACTIONS
from voicecalm.project.flows import (
    END,
    START,
    ActionStep,
    CallStep,
    CollectStep,
    LinkStep,
    SetSlotsStep,
    Step,
)
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import (
    ActionExecuted,
    ActionExecutionRejected,
    BotUttered,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    Restarted,
    SlotSet,
    UserUttered,
)

logger = logging.getLogger(__name__)

MAX_STEPS_PER_TURN = 250
NEXT_PREFIX = "NEXT:"
ACTION_LISTEN = "action_listen"
INTERNAL_ERROR = "pattern_internal_error"
CANNOT_HANDLE = "pattern_cannot_handle"
FREE_CHITCHAT_RESPONSE = "utter_free_chitchat_response"
# Conversation turns (user and bot messages) given to responders and the rephraser.
HISTORY_MESSAGES = 8


@dataclass
class TurnServices:
    """What a turn may call out to; each is optional so the core runs with commands alone."""

    actions: ActionRunner | None = None
    transfer_to_human: Callable[[], Any] | None = None
    knowledge: KnowledgeResponder | None = None  # answers `search` frames from the documents
    chitchat: ChitchatResponder | None = None  # answers `chitchat` frames with free-form text
    rephraser: Rephraser | None = None  # endpoints.yml `nlg: {type: rephrase}`

    @property
    def has_chitchat_responder(self) -> bool:
        return self.chitchat is not None


@dataclass
class Turn:
    project: Project
    conversation: Conversation
    renderer: ResponseRenderer
    channel: str | None = None
    services: TurnServices = field(default_factory=TurnServices)
    on_message: Callable[[BotMessage], None] | None = None
    messages: list[BotMessage] = field(default_factory=list)
    session_ended: bool = False
    steps_taken: int = 0
    breaker_tripped: bool = False

    # --- the stack --------------------------------------------------------------------------

    @property
    def stack(self) -> list[Frame]:
        return self.conversation.stack

    def push(self, frame: Frame) -> None:
        self.conversation.set_stack([*self.stack, frame])

    def update_frame(self, frame_id: str, **changes: Any) -> Frame:
        self.conversation.set_stack(stacks.replace_frame(self.stack, frame_id, **changes))
        index = stacks.index_of(self.stack, frame_id)
        return self.stack[index] if index is not None else {}

    def flow_of(self, frame: Frame) -> Flow | None:
        return self.project.flows.get(frame.get("flow_id", ""))

    def push_pattern(self, pattern_id: str, **context: Any) -> None:
        if pattern_id in self.project.flows:
            self.push(stacks.pattern_frame(pattern_id, **context))
        else:
            logger.warning("pattern %s is not defined; nothing happens", pattern_id)

    def push_flow(self, flow_id: str, frame_type: str, **context: Any) -> None:
        flow = self.project.flows.get(flow_id)
        if flow is None:
            logger.warning("cannot start unknown flow %s", flow_id)
        elif flow.is_pattern:
            self.push_pattern(flow_id, **context)
        else:
            self.push(stacks.user_flow_frame(flow_id, frame_type))

    # --- events -----------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self.conversation.apply(event)

    def set_slot(self, name: str, value: Any, filled_by: str | None = None) -> None:
        if self.conversation.slots.get(name, None) != value or name not in self.conversation.slots:
            self.emit(SlotSet(slot=name, value=value, filled_by=filled_by))

    def slot_value_for(self, name: str, value: Any) -> Any:
        """The value coerced to the slot's type when valid; else as given (rejections catch it)."""
        slot = self.project.domain.slots.get(name)
        if slot is None:
            return value
        valid, coerced = coerce(slot, value)
        return coerced if valid else value

    def send(self, message: BotMessage) -> None:
        # Voice channels report per message whether the caller heard it (voice.md §4).
        message = replace(message, metadata={**message.metadata, "message_id": uuid.uuid4().hex})
        metadata = {**message.metadata, "utter_action": message.response} if message.response else dict(message.metadata)
        self.emit(BotUttered(text=message.text, data=message.data(), metadata=metadata))
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    def render(self, name: str, context: Frame | None = None, extra: Mapping[str, Any] | None = None) -> BotMessage | None:
        return self.renderer.render(
            name,
            slots=self.conversation.slots,
            context=context if context is not None else stacks.current_context(self.stack),
            channel=self.channel,
            extra=extra,
            language=self.conversation.slots.get("language"),
        )

    async def utter(self, name: str, context: Frame | None = None, extra: Mapping[str, Any] | None = None) -> bool:
        """Send response `name` (rephrased when the rephraser wants it); False if there is none."""
        message = self.render(name, context, extra)
        if message is None:
            return False
        self.send(await self.rephrased(message))
        return True

    async def rephrased(self, message: BotMessage) -> BotMessage:
        rephraser = self.services.rephraser
        if rephraser is None or not message.text or not rephraser.wants(message.metadata):
            return message
        text = await rephraser.rephrase(message.text, message.metadata, self.history())
        if not text or text == message.text:
            return message
        return replace(message, text=text, metadata={**message.metadata, "rephrased": True})

    def history(self, limit: int = HISTORY_MESSAGES, *, before_latest_user: bool = False) -> History:
        """The latest user and bot messages as ("user" | "bot", text), oldest first; payloads
        (`/...`) are left out. `before_latest_user`: only what came before the latest user message."""
        out: list[tuple[str, str]] = []
        latest = self.conversation.latest_message
        skipping = before_latest_user and latest is not None
        for event in reversed(self.conversation.events):
            if skipping:
                skipping = event is not latest
                continue
            if isinstance(event, Restarted) or len(out) >= limit:
                break
            if isinstance(event, UserUttered) and event.text and not event.text.startswith("/"):
                out.append(("user", event.text))
            elif isinstance(event, BotUttered) and event.text:
                out.append(("bot", event.text))
        return out[::-1]

    # --- responders (search, chitchat) ------------------------------------------------------

    def latest_user_text(self) -> str:
        message = self.conversation.latest_message
        return (message.text or "").strip() if message is not None else ""

    async def respond(self, frame: Frame) -> None:
        """Answer a responder frame (already popped): a document answer or free-form chitchat."""
        if frame.get("type") == stacks.SEARCH:
            await self.answer_search()
        elif frame.get("type") == stacks.CHITCHAT:
            await self.answer_chitchat()

    async def answer_search(self) -> None:
        """A document answer. In a streaming turn (a voice call) each part of it is sent as it
        comes, so the caller hears the first sentence while the model writes the next."""
        responder, question = self.services.knowledge, self.latest_user_text()
        parts_sent = 0

        def send_part(part: SearchResult) -> None:
            nonlocal parts_sent
            parts_sent += 1
            self.send_search_answer(part)

        result = None
        if responder is not None and question:
            on_part = send_part if self.on_message is not None else None
            try:
                result = await responder.respond(question, self.history(before_latest_user=True), on_part)
            except Exception:  # a broken index or embedder must not break the conversation
                logger.exception("the document search failed; answering that nothing was found")
        if parts_sent:
            return
        if result is not None and result.text:
            self.send_search_answer(result)
        else:
            self.push_pattern(CANNOT_HANDLE, reason=CANNOT_HANDLE_NO_RELEVANT_ANSWER)

    def send_search_answer(self, result: SearchResult) -> None:
        self.send(BotMessage(text=result.text, metadata={"search": {"sources": list(result.sources)}}))

    async def answer_chitchat(self) -> None:
        """A free-form reply takes the place of `utter_free_chitchat_response`'s text; without
        one, that response is sent as written. The reply is only ever text."""
        responder, message = self.services.chitchat, self.latest_user_text()
        reply = None
        if responder is not None and message:
            try:
                reply = await responder.respond(message, self.history(before_latest_user=True))
            except Exception:
                logger.exception("the chitchat responder failed; sending %s as written", FREE_CHITCHAT_RESPONSE)
        template = self.render(FREE_CHITCHAT_RESPONSE)
        if reply:
            if template is None:
                self.send(BotMessage(text=reply, metadata={"chitchat": True}))
            else:
                self.send(replace(template, text=reply, metadata={**template.metadata, "chitchat": True}))
        elif template is not None:
            self.send(template)
        else:
            self.push_pattern(CANNOT_HANDLE, reason=CANNOT_HANDLE_CHITCHAT)

    # --- running flows ----------------------------------------------------------------------

    async def advance(self) -> None:
        """Run steps of the top frame until a step listens or the stack is empty."""
        while self.stack and not self.session_ended:
            frame = self.stack[-1]
            flow = self.flow_of(frame)
            if flow is None:
                # A responder frame (answered, then gone), or a flow removed by a code change.
                self.conversation.set_stack(self.stack[:-1])
                await self.respond(frame)
                continue
            self.steps_taken += 1
            if self.steps_taken > MAX_STEPS_PER_TURN:
                if self.trip_circuit_breaker(flow, frame):
                    continue
                return
            step = self.next_step(flow, stacks.current_context(self.stack))
            if step is None:
                self.end_frame(frame)
                continue
            first_step = frame["step_id"] == START
            frame = self.update_frame(frame["frame_id"], step_id=step.id)
            if first_step:
                self.emit(FlowStarted(flow_id=flow.id, metadata=dict(frame)))
            if await self.run_step(flow, step, stacks.current_context(self.stack)):
                return

    def condition_holds(self, condition: str | bool, frame: Frame) -> bool:
        if isinstance(condition, bool):
            return condition
        try:
            source = render_condition(condition, frame)
            return parse_predicate(source).evaluate({"slots": self.conversation.slots, "context": frame})
        except Exception:  # a broken condition must not break the conversation
            logger.exception("condition %r could not be evaluated; taken as false", condition)
            return False

    def next_step(self, flow: Flow, frame: Frame) -> Step | None:
        step_id: str = frame["step_id"]
        if step_id == START:
            return flow.first_step
        if step_id.startswith(NEXT_PREFIX):
            return flow.step_by_id.get(step_id.removeprefix(NEXT_PREFIX))
        current = flow.step_by_id.get(step_id)
        if current is None:
            return None
        for branch in current.next:
            if branch.condition is None or self.condition_holds(branch.condition, frame):
                return None if branch.target == END else flow.step_by_id.get(branch.target)
        return None

    async def run_step(self, flow: Flow, step: Step, frame: Frame) -> bool:
        """Run one step; True when the bot now listens."""
        match step:
            case ActionStep():
                name = render(step.action, context=frame)
                return await self.run_action(name, frame, optional=name != step.action)
            case CollectStep():
                if step.ask_before_filling:
                    self.set_slot(step.collect, None)
                self.push_pattern(
                    stacks.COLLECT_INFORMATION,
                    collect=step.collect,
                    utter=step.utter,
                    collect_action=f"action_ask_{step.collect}",
                    rejections=[{"if": r.condition, "utter": r.utter} for r in step.rejections],
                )
            case SetSlotsStep():
                for name, value in step.slots:
                    self.set_slot(name, self.slot_value_for(name, value))
            case LinkStep():
                self.end_frame(frame, after_link=True)
                if step.link == "pattern_human_handoff":
                    self.push_handoff(reason="link")
                else:
                    self.push_flow(step.link, stacks.LINK)
            case CallStep():
                self.push_flow(step.call, stacks.CALL)
        return False

    def push_handoff(self, reason: str) -> None:
        self.push_pattern(
            "pattern_human_handoff", reason=reason, transfer_available=self.services.transfer_to_human is not None
        )

    async def run_action(self, name: str, frame: Frame, optional: bool = False) -> bool:
        """Run an action by name; True when it is `action_listen`. An `optional` name (made from
        a template, like `validate_{{context.collect}}`) may name nothing, and then nothing runs."""
        if name == ACTION_LISTEN:
            self.emit(ActionExecuted(action_name=name))
            return True
        if self.renderer.has(name):
            self.emit(ActionExecuted(action_name=name))
            await self.utter(name, frame)
            return False
        if name in BUILTIN_ACTIONS:
            self.emit(ActionExecuted(action_name=name))
            handler = BUILTIN_ACTION_HANDLERS.get(name)
            if handler is not None:
                await handler(self, frame)
            return False
        if name.startswith("flow_") and name.removeprefix("flow_") in self.project.flows:
            self.push_flow(name.removeprefix("flow_"), self.frame_type_for_new_flow())
            return False
        if name in self.project.domain.actions:
            await self.run_custom_action(name)
            return False
        if name and not optional:
            logger.warning("action %r is neither a response, a built-in nor a domain action; skipped", name)
        return False

    async def run_custom_action(self, name: str) -> None:
        if self.services.actions is None:
            self.fail_action(name, ActionFailed("no_action_endpoint", detail="no action endpoint is configured"))
            return
        try:
            result = await self.services.actions.run(name, self.conversation)
        except ActionRejected:
            self.emit(ActionExecuted(action_name=name))
            self.emit(ActionExecutionRejected(action_name=name))
            return
        except ActionFailed as failure:
            self.fail_action(name, failure)
            return
        self.emit(ActionExecuted(action_name=name))
        await apply_action_result(self, name, result)

    def fail_action(self, name: str, failure: ActionFailed) -> None:
        logger.error("action %s failed: %s", name, failure.kind)
        metrics.action_failed(failure.kind)
        self.emit(ActionExecuted(action_name=name, metadata={"error": failure.kind, "status": failure.status}))
        user_frame = stacks.top_user_flow(self.stack)
        if user_frame is not None:
            self.push_cancel(user_frame)
        self.push_pattern(INTERNAL_ERROR, error_type="rasa_internal_error_default", info={})

    def frame_type_for_new_flow(self) -> str:
        return stacks.INTERRUPT if stacks.top_user_flow(self.stack) is not None else stacks.REGULAR

    # --- ending frames ----------------------------------------------------------------------

    def slots_to_reset(self, flow: Flow, seen: frozenset[str] = frozenset()) -> set[str]:
        """Slots a flow owns: collected (unless kept) or set by it, and those of flows it calls."""
        names = {s.collect for s in flow.collect_steps() if s.reset_after_flow_ends}
        names |= {name for s in flow.steps if isinstance(s, SetSlotsStep) for name, _ in s.slots}
        for step in flow.steps:
            if isinstance(step, CallStep) and step.call not in seen and step.call in self.project.flows:
                names |= self.slots_to_reset(self.project.flows[step.call], seen | {flow.id})
        return names - set(flow.persisted_slots)

    def reset_slots(self, frame: Frame) -> None:
        flow = self.flow_of(frame)
        if flow is None or frame.get("frame_type") == stacks.CALL:
            return
        for name in sorted(self.slots_to_reset(flow)):
            slot = self.project.domain.slots.get(name)
            self.set_slot(name, slot.initial_value if slot is not None else None)

    def remove_frame(self, frame_id: str) -> Frame | None:
        index = stacks.index_of(self.stack, frame_id)
        if index is None:
            return None
        frame = self.stack[index]
        self.conversation.set_stack(self.stack[:index] + self.stack[index + 1 :])
        return frame

    def end_frame(self, frame: Frame, after_link: bool = False) -> None:
        """A frame reached END: completed, slots reset, then what follows (patterns.md §6)."""
        if self.remove_frame(frame["frame_id"]) is None:
            return
        flow = self.flow_of(frame)
        if flow is not None:
            self.emit(FlowCompleted(flow_id=flow.id, step_id=frame.get("step_id")))
        self.reset_slots(frame)
        if after_link or flow is None:
            return
        if not self.stack and (stacks.is_user_flow(frame) or flow.id == "pattern_search") and flow.run_pattern_completed:
            self.push_pattern(stacks.COMPLETED, previous_flow_name=flow.name)
        elif not self.stack and flow.id == stacks.CONTINUE_INTERRUPTED:
            # The user declined to go back: the flow that interrupted is the one that completed.
            self.push_pattern(stacks.COMPLETED, previous_flow_name=frame.get("previous_flow_name", ""))
        elif frame.get("frame_type") == stacks.INTERRUPT:
            self.push_continue_interrupted(flow.name)

    def push_continue_interrupted(self, ended_flow_name: str) -> None:
        interrupted = [f for f in reversed(self.stack) if stacks.is_user_flow(f) and f.get("frame_type") != stacks.CALL]
        if not interrupted or stacks.find_pattern(self.stack, stacks.CONTINUE_INTERRUPTED):
            return
        names = [self.project.flows[f["flow_id"]].name for f in interrupted if f["flow_id"] in self.project.flows]
        self.push_pattern(
            stacks.CONTINUE_INTERRUPTED,
            interrupted_flow_names=names,
            interrupted_flow_ids=[f["flow_id"] for f in interrupted],
            interrupted_flow_options=readable_list(names),
            multiple_flows_interrupted=len(interrupted) > 1,
            previous_flow_name=ended_flow_name,
        )

    def cancel_frames(self, frame_ids: Sequence[str]) -> None:
        """Remove frames (top first): user flows get `flow_cancelled` and their slots reset."""
        for frame in reversed(list(self.stack)):
            if frame["frame_id"] not in frame_ids:
                continue
            self.remove_frame(frame["frame_id"])
            flow = self.flow_of(frame)
            if flow is not None and stacks.is_user_flow(frame):
                self.emit(FlowCancelled(flow_id=flow.id, step_id=frame.get("step_id")))
                self.reset_slots(frame)

    def push_cancel(self, user_frame: Frame) -> None:
        """Cancel `user_frame` and what runs above it, down to the flow that called it, if any."""
        index = stacks.index_of(self.stack, user_frame["frame_id"])
        if index is None:
            return
        while index > 0 and self.stack[index].get("frame_type") == stacks.CALL:
            callers = [i for i in range(index) if stacks.is_user_flow(self.stack[i])]
            if not callers:
                break
            index = callers[-1]
        cancelled = self.stack[index]
        flow = self.flow_of(cancelled)
        start, end = stacks.block_of(self.stack, index)
        self.push_pattern(
            "pattern_cancel_flow",
            canceled_name=flow.name if flow else cancelled.get("flow_id"),
            canceled_frames=[f["frame_id"] for f in self.stack[start:end]],
        )

    def trip_circuit_breaker(self, flow: Flow, frame: Frame) -> bool:
        """Too many steps in one turn: cancel the user flows and say so. True to keep running."""
        logger.error("more than %d steps in one turn, last in %s at %s: cancelling", MAX_STEPS_PER_TURN, flow.id, frame.get("step_id"))
        if self.breaker_tripped:
            self.conversation.set_stack([])
            return False
        self.breaker_tripped = True
        self.cancel_frames([f["frame_id"] for f in self.stack])
        self.push_pattern(INTERNAL_ERROR, error_type="rasa_internal_error_default", info={})
        self.steps_taken = 0
        return True
