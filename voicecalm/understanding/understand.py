"""Turn one user input into commands: given commands, payloads, input checks, the fast path, then
the generator (its router, then its model)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from voicecalm.dialogue.commands import (
    ERROR_USER_INPUT_EMPTY,
    ERROR_USER_INPUT_TOO_LONG,
    CannotHandle,
    Command,
    Error,
)
from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import BotUttered, UserUttered
from voicecalm.understanding.fast_path import fast_path
from voicecalm.understanding.payloads import button_pairs, parse_payload

DEFAULT_MAX_CHARACTERS = 420


class CommandGenerator(Protocol):
    """Commands for a user message (the LLM command generator implements this): `route` gives
    them without a model when it is sure (None: it is not), `predict` asks the model."""

    async def route(self, text: str, conversation: Conversation) -> list[Command] | None: ...

    async def predict(self, text: str, conversation: Conversation, project: Project) -> list[Command]: ...


def offered_buttons(conversation: Conversation, project: Project) -> set[tuple[tuple[str, Any], ...]]:
    """The (slot, value) pairs of the buttons the bot offered in its last turn."""
    offered = set()
    for event in reversed(conversation.events):
        if isinstance(event, UserUttered):
            break
        if isinstance(event, BotUttered):
            for button in event.data.get("buttons") or ():
                pairs = button_pairs(str(button.get("payload", "")), project.domain)
                if pairs:
                    offered.add(pairs)
    return offered


@dataclass(frozen=True, slots=True)
class Understanding:
    commands: list[Command]
    fast_path: bool = False  # set by the fast path, no model was asked
    routed: bool = False  # given by the command router, no model was asked


async def understand(
    text: str | None,
    given: Sequence[Command] | None,
    conversation: Conversation,
    project: Project,
    generator: CommandGenerator | None,
) -> Understanding:
    if given is not None:
        return Understanding(list(given))
    if text is None or not text.strip():
        return Understanding([Error(error_type=ERROR_USER_INPUT_EMPTY)])
    payload = parse_payload(text, project.domain, project.flows, offered_buttons(conversation, project))
    if payload is not None:
        return Understanding(payload)
    settings = project.config.command_generator
    limit = settings.user_input.max_characters if settings else DEFAULT_MAX_CHARACTERS
    if 0 <= limit < len(text):
        return Understanding([Error(error_type=ERROR_USER_INPUT_TOO_LONG, info={"max_characters": limit})])
    if settings is not None and settings.fast_path:
        answer = fast_path(text, conversation, project)
        if answer is not None:
            return Understanding(list(answer), fast_path=True)
    if generator is None:
        return Understanding([CannotHandle()])
    routed = await generator.route(text, conversation)
    if routed is not None:
        return Understanding(routed, routed=True)
    return Understanding(await generator.predict(text, conversation, project))
