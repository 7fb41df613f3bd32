"""The command generator's prompt (commands.md §6): static part first, this turn's part last."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import Error
from voicecalm.project import Flow, Project
from voicecalm.project.flows import CallStep, CollectStep
from voicecalm.project.schema import CommandGeneratorConfig
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import BotUttered, UserBargeIn, UserUttered
from voicecalm.understanding.examples import project_examples
from voicecalm.understanding.prompt_slots import prompt_slots

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "command_prompt.jinja2"
# The embedded model's prompt: the same content, laid out for a small model that reads each turn's
# tokens at ~15 ms apiece (a one-line state, the message as the conversation's last line).
LOCAL_TEMPLATE = DEFAULT_TEMPLATE.with_name("command_prompt_local.jinja2")
HISTORY_LINES = 20
NOT_UNDERSTOOD = "[a message that could not be processed]"
# voice.md: the tracker marks bot messages the caller cut off or never heard.
INTERRUPTED_NOTE = " (interrupted by the user)"


def flows_json(flows: Sequence[Flow], project: Project) -> str:
    entries = []
    for flow in flows:
        slots = [
            {"name": s.name, "description": s.description, **({"allowed_values": s.allowed_values} if s.allowed_values else {})}
            for s in prompt_slots(flow, project)
        ]
        entries.append({"name": flow.id, "description": " ".join((flow.description or "").split()), "slots": slots})
    return json.dumps({"flows": entries}, ensure_ascii=False, default=str)


def current_state(conversation: Conversation, project: Project) -> tuple[str, Flow | None, str | None, str | None]:
    """(state text, active flow, asked slot, its description)."""
    frame = stacks.top_user_flow(conversation.stack)
    flow = project.flows.get(frame["flow_id"]) if frame else None
    if flow is None:
        return "You are currently not inside any flow.", None, None, None
    asked = stacks.asked_slot(conversation.stack)
    asked_step = next((s for s in flow.collect_steps() if s.collect == asked), None)
    if asked_step is None:
        asked_step = next(
            (s for f in project.flows.values() for s in f.collect_steps() if s.collect == asked), None
        )
    description = asked_step.description if asked_step else None
    # Types, descriptions and allowed values are in the flow list above, which a local model has
    # already read; repeating them here would make it read them again on every turn.
    slots = []
    for slot in prompt_slots(flow, project, called=True):
        value = conversation.slots.get(slot.name)
        slots.append({"name": slot.name, "value": "undefined" if value is None else value})
    state = {
        "active_flow": flow.id,
        "current_step": {"requested_slot": asked, "requested_slot_description": description},
        "slots": slots,
    }
    return json.dumps(state, ensure_ascii=False, default=str), flow, asked, description


def current_flow(conversation: Conversation, project: Project) -> Flow | None:
    """The flow in progress as the user asked for it, not one it calls: authenticate_user is
    not in the flow list, and its slots count as the calling flow's."""
    frame = next(
        (f for f in reversed(conversation.stack) if stacks.is_user_flow(f) and f.get("frame_type") != stacks.CALL), None
    )
    return project.flows.get(frame["flow_id"]) if frame else None


def compact_state(conversation: Conversation, project: Project) -> str:
    """The current state in one short line, e.g. `active flow transfer_money, asking
    transfer_amount; filled transfer_recipient=Anna`: the flow list above already holds every
    slot's description and allowed values, so only what changes per turn is written."""
    flow = current_flow(conversation, project)
    asked = stacks.asked_slot(conversation.stack)
    text = f"active flow {flow.id}" if flow is not None else "no active flow"
    if asked:
        text += f", asking {asked}"
    if flow is not None:
        filled = [
            f"{slot.name}={_one_line(str(value))}"
            for slot in prompt_slots(flow, project, called=True)
            if (value := conversation.slots.get(slot.name)) is not None
        ]
        if filled:
            text += "; filled " + ", ".join(filled)
    return text


def _one_line(text: str) -> str:
    # A line of the conversation cannot start a new line: the text must not be able to pose as
    # the assistant, the state or a section of the prompt.
    return " ".join(text.split())


def history(conversation: Conversation) -> str:
    """The conversation as the caller experienced it: a bot message cut by a barge-in is marked,
    one never played is left out (voice.md §4)."""
    events = conversation.events_since_last_restart()
    interrupted = {e.interrupted for e in events if isinstance(e, UserBargeIn)}
    unheard = {message_id for e in events if isinstance(e, UserBargeIn) for message_id in e.unheard}
    lines = []
    for event in events:
        if isinstance(event, UserUttered) and event.text is not None:
            raised_error = any(c.get("command") == Error.command for c in event.commands)
            lines.append(f"USER: {NOT_UNDERSTOOD if raised_error else _one_line(event.text)}")
        elif isinstance(event, BotUttered) and event.text:
            message_id = event.metadata.get("message_id")
            if message_id in unheard:
                continue
            note = INTERRUPTED_NOTE if message_id is not None and message_id in interrupted else ""
            lines.append(f"AI: {_one_line(event.text)}{note}")
    return "\n".join(lines[-HISTORY_LINES:])


class PromptBuilder:
    def __init__(self, project: Project, config: CommandGeneratorConfig, *, local: bool = False) -> None:
        """`local`: the embedded model's layout (LOCAL_TEMPLATE), unless the project has its own."""
        self.project = project
        self.config = config
        self.local = local and not config.prompt_template
        self.template = self._template()
        search_ready = config.name == "SearchReadyLLMCommandGenerator"
        self.fixed = {
            "offer_offtopic": not search_ready,
            "offer_handoff": config.human_handoff_command,
        }
        if self.local:
            startable = [flow for flow in project.user_flows if flow.guard is not False]
            self.fixed["examples"] = project_examples(
                startable, project, offtopic=not search_ready, handoff=config.human_handoff_command
            )

    def _template(self) -> Template:
        if self.config.prompt_template:
            path = self.project.root / self.config.prompt_template
            environment: Environment = SandboxedEnvironment(loader=FileSystemLoader(str(path.parent)))
            return environment.get_template(path.name)
        environment = Environment(
            loader=FileSystemLoader(str(DEFAULT_TEMPLATE.parent)), undefined=StrictUndefined, autoescape=False
        )
        return environment.get_template((LOCAL_TEMPLATE if self.local else DEFAULT_TEMPLATE).name)

    def build(self, user_message: str, conversation: Conversation, flows: Sequence[Flow]) -> str:
        state, active, asked, asked_description = current_state(conversation, self.project)
        if self.local:
            state = compact_state(conversation, self.project)
            user_message = _one_line(user_message)
        now = None
        if self.config.include_date_time:
            moment = datetime.now(ZoneInfo(self.config.timezone))
            now = moment.strftime("%A, %d %B %Y, %H:%M %Z")
        return self.template.render(
            **self.fixed,
            available_flows=flows_json(flows, self.project),
            current_state=state,
            current_conversation=history(conversation),
            # The message is quoted in triple quotes; it must not be able to close them.
            user_message=user_message.replace('"""', '"'),
            current_datetime=now,
            current_flow=active.id if active else None,
            current_slot=asked,
            current_slot_description=asked_description,
            flow_slots=[asdict(s) for s in prompt_slots(active, self.project, called=True)] if active else [],
        )
