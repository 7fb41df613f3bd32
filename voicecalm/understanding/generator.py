"""The LLM command generator: prompt → completion → commands (commands.md §2, §6, §7)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from voicecalm import metrics
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import CannotHandle, Command, Error
from voicecalm.dialogue.dsl import parse_commands, post_process
from voicecalm.project import Flow, Project
from voicecalm.project.schema import CommandGeneratorConfig
from voicecalm.tracker.conversation import Conversation
from voicecalm.understanding.flow_retrieval import FlowRetrieval
from voicecalm.understanding.grammar import command_grammar, ungrounded_numbers
from voicecalm.understanding.llm import LlmError, LlmSettings, complete
from voicecalm.understanding.mentions import named_values
from voicecalm.understanding.prompt import PromptBuilder, current_flow
from voicecalm.understanding.prompt_slots import active_flows
from voicecalm.understanding.router import CommandRouter, routes_language

if TYPE_CHECKING:
    from voicecalm.models.embedder import Embedder

logger = logging.getLogger(__name__)

WARM_UP_TIMEOUT_SECONDS = 300.0

# Resolves the model to call; for the embedded model this starts it on first use.
SettingsProvider = Callable[[], Awaitable[LlmSettings]]


class LLMCommandGenerator:
    """Implements `CommandGenerator`. The router answers the message-level commands it is sure
    of; the model the rest. `constrained` passes a per-turn grammar to the model (llama.cpp
    understands it; remote APIs get the plain prompt)."""

    def __init__(
        self,
        project: Project,
        config: CommandGeneratorConfig,
        settings: SettingsProvider,
        *,
        constrained: bool,
        embedder: Embedder | None = None,
    ) -> None:
        self.project = project
        self.config = config
        self.settings = settings
        self.constrained = constrained
        self.prompts = PromptBuilder(project, config, local=constrained)
        self.retrieval = FlowRetrieval(project, config.flow_retrieval, embedder)
        self.router = (
            CommandRouter(
                project,
                config.routing,
                embedder,
                offtopic=self.prompts.fixed["offer_offtopic"],
                handoff=config.human_handoff_command,
            )
            if embedder is not None and config.routing.active and routes_language(project)
            else None
        )
        self.user_flow_ids = frozenset(flow.id for flow in project.user_flows)

    def prompt_flows(self, offered: list[Flow]) -> list[Flow]:
        """The flows the prompt lists. The local layout lists every startable flow, in a fixed
        order, whatever the guards and the stack say: then the long flow list stays in the model's
        cached prefix from turn to turn and conversation to conversation (a guarded flow coming and
        going re-read ~100 tokens, 1.5 s on 2 cores). The grammar still offers only `offered`,
        and cleanup drops a start whose guard fails. With retrieval on, the shortlist it is."""
        if self.prompts.local and not self.retrieval.needed:
            return self.retrieval.candidates
        return offered

    def commands_from_completion(self, completion: str) -> list[Command]:
        commands = post_process(parse_commands(completion), self.user_flow_ids)
        return commands or [CannotHandle()]

    async def warm_up(self, timeout: float = WARM_UP_TIMEOUT_SECONDS) -> None:
        """Start the model and have it read the prompt's fixed part once, so that the first
        user's turn costs what any later turn costs (a local model reuses what it has read);
        the router embeds its examples meanwhile."""
        if self.router is not None:
            await self.router.warm_up()
        conversation = Conversation("warm-up", {})
        flows = await self.retrieval.shortlist(conversation, "")
        prompt = self.prompts.build("", conversation, self.prompt_flows(flows))
        try:
            settings = replace(await self.settings(), timeout=timeout, max_tokens=1)
            await complete(settings, prompt)
        except Exception:  # a cold model is slower, not broken: the turn's own timeout still holds
            logger.warning("warming up the command generator's model failed", exc_info=True)

    async def route(self, text: str, conversation: Conversation) -> list[Command] | None:
        routed = await self.router.route(text, conversation) if self.router is not None else None
        if routed is not None:
            metrics.routed(routed[0].command)
        return routed

    async def predict(self, text: str, conversation: Conversation, project: Project) -> list[Command]:
        flows = await self.retrieval.shortlist(conversation, text)
        prompt = self.prompts.build(text, conversation, self.prompt_flows(flows))
        grammar = None
        if self.constrained:
            grammar = command_grammar(
                flows,
                active_flows(conversation, self.project),
                self.project,
                offtopic=self.prompts.fixed["offer_offtopic"],
                handoff=self.config.human_handoff_command,
                asked_slot=stacks.asked_slot(conversation.stack),
                message=text,
                current_flow=current.id if (current := current_flow(conversation, self.project)) else None,
                skip=self.router is None or await self.router.model_may_skip(text, conversation),
            )
        try:
            settings = await self.settings()
        except Exception:  # the model could not be started: this turn gets the error pattern
            logger.exception("the command generator's model is not available")
            metrics.llm_error("unavailable")
            return [Error()]
        try:
            completion = await complete(settings, prompt, grammar)
        except LlmError as error:
            logger.error("command generator failed: %s", error)
            metrics.llm_error("completion")
            return [Error()]
        logger.debug("completion: %r", completion)
        commands = named_values(self.commands_from_completion(completion), self.project, text, conversation)
        if self.constrained:
            commands = ungrounded_numbers(commands, self.project, text) or [CannotHandle()]
            if self.router is not None:
                commands = await self.router.plausible(commands, text, conversation)
        return commands
