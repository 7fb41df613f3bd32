"""`Assistant`: the one entry point every channel and test uses to run a user turn."""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voicecalm import logs, metrics
from voicecalm.actions import create_action_runner
from voicecalm.actions.runner import ActionRunner
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.builtin_actions import session_start as begin_session
from voicecalm.dialogue.cleanup import CleanupSettings, clean_commands, filter_for_state
from voicecalm.dialogue.command_execution import execute_commands
from voicecalm.dialogue.commands import CUSTOM, Command, Error, HandleCodeChange, SessionStart, UserSilence
from voicecalm.dialogue.executor import Turn, TurnServices
from voicecalm.nlg import BotMessage, ResponseRenderer
from voicecalm.project import Project, load_project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import Event, SessionStarted, SlotSet, UserUttered
from voicecalm.tracker.locks import InMemoryLockStore, LockStore, create_lock_store
from voicecalm.tracker.stores import ConcurrentUpdateError, TrackerStore, create_tracker_store
from voicecalm.knowledge.responder import create_knowledge_responder
from voicecalm.nlg.rephrase import LlmChitchatResponder, LlmRephraser
from voicecalm.understanding.factory import completer, create_generator, llm_settings_source, uses_embedded_model
from voicecalm.understanding.understand import CommandGenerator, Understanding, understand

logger = logging.getLogger(__name__)

SESSION_START_PAYLOAD = "/session_start"
CACHED_CONVERSATIONS = 10_000

MessageSink = Callable[[BotMessage], None]


@dataclass(frozen=True, slots=True)
class UserTurn:
    """One user input: text (or a `/payload`), or commands given directly (tests, DTMF)."""

    text: str | None = None
    commands: Sequence[Command] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    input_channel: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnResult:
    messages: list[BotMessage]
    commands: list[Command]  # as executed, after cleanup
    events: list[Event]  # everything this turn appended to the tracker
    session_ended: bool = False


class Assistant:
    """Runs turns for many conversations at once; turns of one conversation run one at a time."""

    def __init__(
        self,
        project: Project,
        store: TrackerStore,
        *,
        generator: CommandGenerator | None = None,
        actions: ActionRunner | None = None,
        services: TurnServices | None = None,
        renderer: ResponseRenderer | None = None,
        lock_store: LockStore | None = None,
    ) -> None:
        self.project = project
        self.store = store
        self.generator = generator
        self.services = services or TurnServices()
        if actions is not None:
            self.services = replace(self.services, actions=actions)
        self.renderer = renderer or ResponseRenderer(project.domain)
        generator_config = project.config.command_generator
        self.cleanup_settings = CleanupSettings(
            human_handoff_command=generator_config.human_handoff_command if generator_config else True,
            has_chitchat_responder=self.services.has_chitchat_responder,
        )
        self.initial_slots = {name: slot.initial_value for name, slot in project.domain.slots.items()}
        self.lock_store = lock_store or InMemoryLockStore()
        self._cache: OrderedDict[str, Conversation] = OrderedDict()

    @classmethod
    def from_path(cls, path: Path | str, **kwargs: Any) -> "Assistant":
        """The assistant of a project folder, with the stores and actions its endpoints name."""
        return cls.from_project(load_project(path), **kwargs)

    @classmethod
    def from_project(cls, project: Project, **kwargs: Any) -> "Assistant":
        """Raises `ValueError` or `ImportError` when the endpoints name a store or actions it cannot have."""
        store = create_tracker_store(project.endpoints.tracker_store, project.root)
        kwargs.setdefault("lock_store", create_lock_store(project.endpoints.lock_store))
        kwargs.setdefault("actions", create_action_runner(project))
        kwargs.setdefault("generator", create_generator(project))
        kwargs.setdefault("services", language_services(project))
        return cls(project, store, **kwargs)

    async def warm_up(self) -> None:
        """Load what the first turn would otherwise wait for (the command generator's model, the
        document index)."""
        for component in (self.generator, self.services.knowledge):
            warm_up = getattr(component, "warm_up", None)
            if warm_up is not None:
                await warm_up()

    async def close(self) -> None:
        close_actions = getattr(self.services.actions, "close", None)
        if close_actions is not None:
            await close_actions()
        await self.store.close()
        await self.lock_store.close()

    # --- conversations ----------------------------------------------------------------------

    async def conversation(self, sender_id: str) -> Conversation:
        """The committed state of a conversation, brought up to date with the store."""
        cached = self._cache.get(sender_id)
        if cached is None:
            cached = Conversation(sender_id, self.initial_slots)
        newer = await self.store.events(sender_id, cached.committed)
        if newer:
            cached = cached.fork()
            cached.apply_all(newer)
            cached.mark_committed()
        self._remember(cached)
        return cached

    def _remember(self, conversation: Conversation) -> None:
        self._cache[conversation.sender_id] = conversation
        self._cache.move_to_end(conversation.sender_id)
        while len(self._cache) > CACHED_CONVERSATIONS:
            self._cache.popitem(last=False)

    # --- turns ------------------------------------------------------------------------------

    async def handle(
        self, sender_id: str, turn: UserTurn, on_message: MessageSink | None = None, services: TurnServices | None = None
    ) -> TurnResult:
        """Run one user turn. `on_message` sees each bot message as soon as it is produced
        (streaming channels); the result holds them all once the turn is committed. `services`
        replaces the assistant's for this turn (a call's own transfer and action filler)."""

        async def run(committed: Conversation) -> tuple[Conversation, TurnResult]:
            try:
                return await self._run(committed, turn, on_message, services)
            except Exception:
                logger.exception("turn failed; answering with the internal error pattern")
                counted.outcome = metrics.INTERNAL_ERROR
                return await self._run(committed, turn, on_message, services, failed=True)

        with metrics.turn(turn.input_channel) as counted:
            return await self._commit(sender_id, run)

    async def predict(self, sender_id: str, text: str) -> list[Command]:
        """The commands a user message would start its turn from (understood and filtered for the
        state, as `handle` does), without running the turn: dialogue understanding tests score
        them against the conversation as written."""
        conversation = await self.conversation(sender_id)
        understood = await understand(text, None, conversation, self.project, self.generator)
        return filter_for_state(understood.commands, self.project, conversation)

    async def start_session(
        self, sender_id: str, metadata: Mapping[str, Any] | None = None, input_channel: str | None = None
    ) -> TurnResult:
        """Start a session before any user message (a call connects, a test case begins)."""
        turn = UserTurn(metadata=metadata or {}, input_channel=input_channel)

        async def run(committed: Conversation) -> tuple[Conversation, TurnResult]:
            working = committed.fork()
            start = await self._start_session(working, turn, None)
            return working, TurnResult(start.messages, [SessionStart()], working.pending, start.session_ended)

        return await self._commit(sender_id, run)

    async def resume_session(
        self, sender_id: str, turn: UserTurn, response: str, on_message: MessageSink | None = None
    ) -> TurnResult:
        """Start a new session as `turn` (`/session_start` with the call's metadata) would, with
        every slot kept, but say `response` instead of running pattern_session_start: a call that
        comes back after a transfer nobody answered (telephony.md §1.6)."""

        async def run(committed: Conversation) -> tuple[Conversation, TurnResult]:
            working = committed.fork()
            kept = dict(working.slots)
            parse_data = {"intent": {}, "entities": [], "commands": [SessionStart().to_json()]}
            working.apply(user_event(turn, parse_data))
            resumed = self._new_turn(working, turn, on_message)
            await begin_session(resumed, {})
            # The same caller, moments later: what they told the bot stays, whatever the
            # session config says about new sessions.
            for name, value in kept.items():
                if name != "session_started_metadata" and working.slots.get(name) != value:
                    resumed.set_slot(name, value)
            await resumed.utter(response)
            return working, TurnResult(resumed.messages, [SessionStart()], working.pending)

        with metrics.turn(turn.input_channel):
            return await self._commit(sender_id, run)

    async def set_slots(self, sender_id: str, values: Mapping[str, Any]) -> TurnResult:
        """Set slots from outside a turn (test fixtures, a channel's caller data)."""
        return await self.record(sender_id, [SlotSet(slot=name, value=value, filled_by=CUSTOM) for name, value in values.items()])

    async def record(self, sender_id: str, events: Sequence[Event]) -> TurnResult:
        """Append events that happened outside a turn (slots set from outside, a barge-in, a
        silence timeout)."""

        async def run(committed: Conversation) -> tuple[Conversation, TurnResult]:
            working = committed.fork()
            working.apply_all(events)
            return working, TurnResult([], [], working.pending)

        return await self._commit(sender_id, run)

    async def _commit(
        self, sender_id: str, run: Callable[[Conversation], Awaitable[tuple[Conversation, TurnResult]]]
    ) -> TurnResult:
        """Run `run` on a working copy and store what it added, all or nothing, one at a time."""
        with logs.conversation(sender_id):
            return await self._commit_locked(sender_id, run)

    async def _commit_locked(
        self, sender_id: str, run: Callable[[Conversation], Awaitable[tuple[Conversation, TurnResult]]]
    ) -> TurnResult:
        async with self.lock_store.lock(sender_id):
            committed = await self.conversation(sender_id)
            working, result = await run(committed)
            try:
                with metrics.stage("store"):
                    await self.store.append(sender_id, working.pending, expected_count=committed.committed)
            except ConcurrentUpdateError:
                self._cache.pop(sender_id, None)
                raise
            working.mark_committed()
            self._remember(working)
            return result

    def _needs_session_start(self, conversation: Conversation, turn: UserTurn) -> bool:
        if turn.text == SESSION_START_PAYLOAD or any(isinstance(c, SessionStart) for c in turn.commands or ()):
            return False
        last_start = next((e for e in reversed(conversation.events) if isinstance(e, SessionStarted)), None)
        if last_start is None:
            return True
        last_user = next((e for e in reversed(conversation.events) if isinstance(e, UserUttered)), None)
        expiry = self.project.domain.session_config.session_expiration_time * 60
        return expiry > 0 and last_user is not None and time.time() - last_user.timestamp > expiry

    async def _start_session(
        self, working: Conversation, turn: UserTurn, on_message: MessageSink | None, services: TurnServices | None = None
    ) -> Turn:
        start = self._new_turn(working, turn, on_message, services)
        await begin_session(start, {})
        execute_commands(start, [SessionStart()])
        await start.advance()
        return start

    async def _run(
        self,
        committed: Conversation,
        turn: UserTurn,
        on_message: MessageSink | None,
        services: TurnServices | None = None,
        failed: bool = False,
    ) -> tuple[Conversation, TurnResult]:
        working = committed.fork()
        messages: list[BotMessage] = []
        if working.paused and turn.text != "/restart":
            # A paused conversation records what the user said and answers nothing.
            working.apply(UserUttered(text=turn.text, input_channel=turn.input_channel, metadata=dict(turn.metadata)))
            return working, TurnResult([], [], working.pending)
        if self._needs_session_start(working, turn) and not failed:
            messages += (await self._start_session(working, turn, on_message, services)).messages
        understood = Understanding([Error()])
        if not failed:
            with metrics.stage("understanding"):
                understood = await understand(turn.text, turn.commands, working, self.project, self.generator)
        predicted = filter_for_state(understood.commands, self.project, working)
        parse_data: dict[str, Any] = {"intent": {}, "entities": [], "commands": [c.to_json() for c in predicted]}
        if understood.fast_path:
            parse_data["fast_path"] = True
        if understood.routed:
            parse_data["routed"] = True
        working.apply(user_event(turn, parse_data))
        with metrics.stage("dialogue"):
            dialogue = self._new_turn(working, turn, on_message, services)
            if not any(isinstance(c, UserSilence) for c in predicted):
                dialogue.set_slot("consecutive_silence_timeouts", self.initial_slots.get("consecutive_silence_timeouts"))
            commands = self._commands_for_code_change(working, predicted) or clean_commands(
                predicted, self.project, working, self.cleanup_settings
            )
            if any(isinstance(c, SessionStart) for c in commands):
                await begin_session(dialogue, {})
            execute_commands(dialogue, commands)
            await dialogue.advance()
            self._record_flow_hashes(dialogue)
        messages += dialogue.messages
        result = TurnResult(messages, commands, working.pending, dialogue.session_ended)
        return working, result

    def _new_turn(
        self, working: Conversation, turn: UserTurn, on_message: MessageSink | None, services: TurnServices | None = None
    ) -> Turn:
        return Turn(
            self.project, working, self.renderer, channel=turn.input_channel, services=services or self.services,
            on_message=on_message,
        )

    def _commands_for_code_change(self, working: Conversation, predicted: list[Command]) -> list[Command] | None:
        """A flow that changed while it was running cannot be continued (commands.md §3)."""
        recorded = working.slots.get("flow_hashes") or {}
        for frame in working.stack:
            flow = self.project.flows.get(frame.get("flow_id", ""))
            if flow is not None and frame["flow_id"] in recorded and recorded[frame["flow_id"]] != flow.fingerprint:
                return [HandleCodeChange()]
        return None

    def _record_flow_hashes(self, dialogue: Turn) -> None:
        hashes = {
            frame["flow_id"]: self.project.flows[frame["flow_id"]].fingerprint
            for frame in dialogue.stack
            if stacks.is_flow_frame(frame) and frame["flow_id"] in self.project.flows
        }
        if hashes != (dialogue.conversation.slots.get("flow_hashes") or {}):
            dialogue.set_slot("flow_hashes", hashes)


def user_event(turn: UserTurn, parse_data: Mapping[str, Any]) -> UserUttered:
    return UserUttered(
        text=turn.text,
        parse_data=parse_data,
        input_channel=turn.input_channel,
        message_id=turn.message_id or uuid.uuid4().hex,
        metadata=dict(turn.metadata),
    )


# --- language services ------------------------------------------------------------------------

REPHRASE_TYPES = ("rephrase", "rasa.core.nlg.contextual_response_rephraser.ContextualResponseRephraser")


def language_services(project: Project, *, explicit_llm_only: bool = False) -> TurnServices:
    """The document search (`EnterpriseSearchPolicy` + `docs/`), the chitchat responder and the
    rephraser (`nlg: {type: rephrase}`) the project asks for. Each uses its own `llm:` keys, else
    the command generator's model (the embedded one without `llm:`). `explicit_llm_only` (e2e
    runs) uses models named by a component's own `llm:` keys only, so tests stay deterministic:
    document answers are then extractive, and chitchat goes to `pattern_cannot_handle`. The same
    holds when the command generator runs the embedded model."""
    if uses_embedded_model(project):
        # The embedded model keeps one prompt's prefix in memory; answering documents or small talk
        # with it would evict the command prompt and make the next turn slow (measured: every
        # document answer ran into the 7 s timeout). Only models named explicitly take on those jobs.
        explicit_llm_only = True
    chitchat_llm = next((p.model_dump().get("llm") for p in project.config.policies if p.name == "IntentlessPolicy"), None)
    chitchat = llm_settings_source(project, chitchat_llm, explicit_only=explicit_llm_only, max_tokens=60, temperature=0.3)
    return TurnServices(
        knowledge=create_knowledge_responder(project, explicit_llm_only=explicit_llm_only),
        chitchat=LlmChitchatResponder(completer(chitchat)) if chitchat is not None else None,
        rephraser=_rephraser(project, explicit_llm_only),
    )


def _rephraser(project: Project, explicit_llm_only: bool) -> LlmRephraser | None:
    nlg = project.endpoints.nlg
    if nlg is None or nlg.type not in REPHRASE_TYPES:
        return None
    options = dict(nlg.model_extra or {})
    source = llm_settings_source(project, options.get("llm"), explicit_only=explicit_llm_only, max_tokens=100, temperature=0.3)
    if source is None:
        logger.warning("endpoints.yml `nlg: {type: rephrase}` has no model to use: responses are sent as written")
        return None
    timeout = float(options.get("timeout", 2.0))
    prompt = options.get("prompt")
    if prompt and (project.root / str(prompt)).is_file():  # Rasa: a path to a Jinja template
        prompt = (project.root / str(prompt)).read_text(encoding="utf-8")
    return LlmRephraser(
        completer(source, timeout=timeout), rephrase_all=bool(options.get("rephrase_all", False)), prompt=prompt, timeout=timeout
    )

