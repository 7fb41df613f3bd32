"""Play test cases against an in-process assistant (testing.md §1-§3.3)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Literal, Protocol

from voicecalm.actions.runner import ActionRunner
from voicecalm.assistant import Assistant, UserTurn, language_services
from voicecalm.dialogue.commands import CannotHandle, Command, command_from_json
from voicecalm.dialogue.executor import TurnServices
from voicecalm.models.embedder import Embedder, LocalEmbedder
from voicecalm.project import Project
from voicecalm.project.schema import LlmConfig
from voicecalm.testing.e2e.assertions import check_assertions
from voicecalm.testing.e2e.cases import TestCase, UserStep
from voicecalm.testing.e2e.conversation import check_step
from voicecalm.testing.e2e.du import DuStep
from voicecalm.testing.e2e.judge import EmbeddingJudge, Judge, LlmJudge
from voicecalm.testing.e2e.results import CaseResult, Failure, Turn
from voicecalm.testing.e2e.stubs import StubbedActions
from voicecalm.tracker.events import Event, UserUttered
from voicecalm.tracker.stores import InMemoryTrackerStore
from voicecalm.understanding.factory import embedder_from_config
from voicecalm.understanding.llm import complete, settings_from_config
from voicecalm.understanding.understand import CommandGenerator

logger = logging.getLogger(__name__)

CommandsMode = Literal["oracle", "llm", "du"]


class Session(Protocol):
    """How a test case's messages reach the assistant: typed (`TextSession`) or spoken
    (`voicecalm.testing.e2e.spoken`)."""

    async def start(self) -> list[Event]:
        """Session start and the case's fixtures: the events before the first user step."""

    async def send(self, step: UserStep, commands: list[Command] | None) -> Turn:
        """One user step (`commands`: the oracle's, skipping the generator), and what it appended."""

    async def predict(self, step: UserStep) -> list[Command]:
        """The commands the generator would give the step now, without sending it."""


class TextSession:
    def __init__(self, case: TestCase, assistant: Assistant, sender_id: str) -> None:
        self.case = case
        self.assistant = assistant
        self.sender_id = sender_id

    async def start(self) -> list[Event]:
        events = list((await self.assistant.start_session(self.sender_id, metadata=self.case.metadata)).events)
        if self.case.fixtures:
            events += (await self.assistant.set_slots(self.sender_id, self.case.fixtures)).events
        return events

    async def send(self, step: UserStep, commands: list[Command] | None) -> Turn:
        turn = UserTurn(text=step.text, commands=commands, metadata=step.metadata)
        return Turn(step, (await self.assistant.handle(self.sender_id, turn)).events)

    async def predict(self, step: UserStep) -> list[Command]:
        return await self.assistant.predict(self.sender_id, step.text)


class E2ERunner:
    """`oracle`: annotated steps skip the generator; `llm`: every step that reaches the
    generator calls it, and annotated ones are scored for the DU report; `du`: every annotated
    step is predicted and scored on its own, then played with its annotated commands, so each
    one is judged in the conversation as written, however the steps before it were predicted
    (Rasa's dialogue understanding tests); the assertions are checked as in `oracle`."""

    assistant_type: type[Assistant] = Assistant  # spoken e2e adds the test's metadata and commands to call turns

    def __init__(
        self,
        project: Project,
        *,
        mode: CommandsMode = "llm",
        generator: CommandGenerator | None = None,
        actions: ActionRunner | None = None,
        embedder: Embedder | None = None,
        services: TurnServices | None = None,
    ) -> None:
        self.project = project
        self.mode = mode
        self.generator = generator
        self.actions = actions
        self.embedder = embedder if embedder is not None else LocalEmbedder.shared()  # loads on first use
        # Document search, chitchat and rephrasing as the assistant has them, but with models named
        # by a component's own `llm:` keys only: answers are extractive unless the search policy
        # names a model, so test runs are deterministic. Shared by all cases (one index load).
        self.services = services if services is not None else language_services(project, explicit_llm_only=True)

    async def run(self, cases: Sequence[TestCase], fail_fast: bool = False) -> list[CaseResult]:
        results = []
        for case in cases:
            results.append(await self.run_case(case))
            if fail_fast and not results[-1].passed:
                break
        return results

    async def run_case(self, case: TestCase) -> CaseResult:
        result = CaseResult(case)
        # Each case gets a fresh in-memory tracker: the project's stores are never touched.
        assistant = self.assistant_type(
            self.project,
            InMemoryTrackerStore(),
            actions=StubbedActions(case.stubs, self.actions),
            generator=self.generator,
            services=self.services,
        )
        started = time.monotonic()
        sender_id = f"{case.name}_{time.time()}"
        try:
            await self._play(case, assistant, sender_id, result)
        except Exception as error:
            logger.exception("test case %s raised", case.name)
            message = f"error: {type(error).__name__}: {error}"
            result.failure = Failure(case.location, f"test_case: {case.name}", message)
        finally:
            await assistant.close()
            result.seconds = time.monotonic() - started
        failed = next((o for o in result.step_outcomes if not o.passed), None)
        # The earliest failing step is the one to report, even when the case stopped later.
        if failed is not None and (result.failure is None or failed.step.location.line < result.failure.location.line):
            result.failure = Failure(failed.step.location, failed.step.describe(), failed.message or "")
        return result

    def _session(self, case: TestCase, assistant: Assistant, sender_id: str) -> AbstractAsyncContextManager[Session]:
        return nullcontext(TextSession(case, assistant, sender_id))

    async def _play(self, case: TestCase, assistant: Assistant, sender_id: str, result: CaseResult) -> None:
        async with self._session(case, assistant, sender_id) as session:
            result.turns.append(Turn(None, await session.start()))
            judge = self._judge(case)
            for step in case.steps:
                if not isinstance(step, UserStep):
                    result.step_outcomes.append(check_step(step, len(result.turns) - 1, result.turns[-1].bot_side))
                    continue
                turn = await self._user_turn(case, step, session, result)
                if turn is None:
                    return
                outcomes = await check_assertions(step, turn.bot_side, judge)
                result.assertion_outcomes += outcomes
                failed = next((o for o in outcomes if not o.passed), None)
                if failed is not None:
                    result.failure = Failure(step.location, step.describe(), failed.message or "", failed, turn)
                    return

    async def _user_turn(self, case: TestCase, step: UserStep, session: Session, result: CaseResult) -> Turn | None:
        commands: list[Command] | None = None
        predicted: tuple[Command, ...] | None = None
        if step.reaches_generator:
            annotated = step.annotation is not None
            if self.generator is None and not (annotated and self.mode == "oracle"):
                result.failure = Failure(step.location, step.describe(), self._no_generator(case, step))
                return None
            if annotated and self.mode == "du":
                predicted = tuple(await session.predict(step))
            if annotated and self.mode in ("oracle", "du"):
                # As if the generator returned the annotation: nothing parsed means `cannot handle`.
                commands = list(step.annotation.commands) or [CannotHandle()]
        turn = await session.send(step, commands)
        result.turns.append(turn)
        if self.mode == "llm" and step.annotation is not None:
            predicted = predicted_commands(turn.events)
        if predicted is not None and step.annotation is not None:
            result.du_steps.append(
                DuStep(case.name, case.file, step.location.line, step.text, step.annotation.commands, predicted)
            )
        return turn

    def _no_generator(self, case: TestCase, step: UserStep) -> str:
        where = f"{case.file}:{step.location.line}"
        if self.mode == "oracle":
            return (
                f"{where}: user step '{step.text}' has no `commands:` annotation and no command generator "
                "is configured; annotate it or configure an LLM command generator"
            )
        return f"{where}: user step '{step.text}' needs the command generator, but none is configured"

    def _judge(self, case: TestCase) -> Judge:
        config = case.llm_judge
        if config is None:
            return EmbeddingJudge(self.embedder)

        async def ask(prompt: str) -> str:
            # Built on use, so a malformed `llm:` fails the generative assertions that need it, by name.
            settings = settings_from_config(LlmConfig.model_validate(config.llm or {}), self.project)
            return await complete(settings, prompt)

        return LlmJudge(ask, embedder_from_config(config.embeddings) if config.embeddings else self.embedder)


def predicted_commands(events: Sequence[Event]) -> tuple[Command, ...]:
    """The commands the user event records: after the guard/force filters, before cleanup."""
    user = next((e for e in events if isinstance(e, UserUttered)), None)
    return tuple(command_from_json(c) for c in user.commands) if user is not None else ()
