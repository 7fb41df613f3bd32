"""Spoken e2e, `voicecalm test e2e --voice` (testing.md §3): the same test files, each user line
said by the test caller (`voicecalm.voice.caller_voice`: Piper's joe, slower and deeper than the
bot) into a call on the real voice pipeline (VAD, turn end, ASR, the engine, TTS, playback in
real time). Steps and assertions are checked as in text mode, on the turn's tracker events.

- A user line with words is spoken. Its turn is everything the tracker gained from then until the
  bot's answer has played: usually one user message; two when the turn detector cut the line;
  none when the ASR heard nothing. `Turn.heard` keeps each transcript as the engine got it
  (spoken numbers already digits at number collects), so a failure shows whether the ASR or the
  understanding broke.
- `/payload` lines (`/SetSlots(...)`, `/intent`, button payloads) and empty lines cannot be said:
  they are typed into the call's engine as written, as a chat widget beside the call would send
  them; the bot still speaks its answer. Fixtures are set once the greeting has played.
- Test-case and step metadata are added to the call's own (call_id, channel, ...) on every user
  message, as text mode attaches them.
- Commands come from the run's mode. `llm`: the generator gets what the ASR heard, so the DU
  report measures hearing and understanding together. `oracle`: an annotated line's commands
  replace the generator for the first user message the line became, whatever was heard: the
  run tests turn-taking, the engine and the spoken answers, while the ASR shows only in `heard`
  (every failing case lists written vs heard; the summary counts lines heard as written).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from voicecalm.assistant import Assistant, MessageSink, TurnResult, UserTurn
from voicecalm.dialogue.commands import Command
from voicecalm.dialogue.executor import TurnServices
from voicecalm.project import Project
from voicecalm.testing.e2e.cases import TestCase, UserStep
from voicecalm.testing.e2e.results import Turn
from voicecalm.testing.e2e.runner import E2ERunner
from voicecalm.testing.voice_call import VoiceCall
from voicecalm.tracker.events import Event, UserUttered
from voicecalm.voice.caller_voice import CallerVoice, caller_speech, default_shifter
from voicecalm.voice.engine_processor import SESSION_END, SESSION_START, SILENCE_TIMEOUT
from voicecalm.voice.files import PIPELINE_RATE
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import VoiceChannelSettings

# Silence around each spoken line, as around the audio fixtures the voice tests use.
LEAD_S = 0.4
TAIL_S = 1.2


def is_spoken(step: UserStep) -> bool:
    text = step.text.strip()
    return bool(text) and not text.startswith("/")


@dataclass(slots=True)
class StepInput:
    """What a test step gives its user messages that a call cannot carry."""

    metadata: Mapping[str, Any]
    commands: Sequence[Command] | None  # the oracle's, for the first message only


@dataclass(slots=True)
class CaseTurns:
    """What the running test adds to the call's turns."""

    case_metadata: Mapping[str, Any] = field(default_factory=dict)
    step: StepInput | None = None  # while a step is being sent


class CaseAssistant(Assistant):
    """The assistant of one spoken test case: the call hands it its turns; it adds the test's
    metadata and, in oracle mode, the annotated commands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.test = CaseTurns()

    async def handle(
        self, sender_id: str, turn: UserTurn, on_message: MessageSink | None = None, services: TurnServices | None = None
    ) -> TurnResult:
        step = self.test.step
        if turn.text == SESSION_START:
            turn = replace(turn, metadata={**turn.metadata, **self.test.case_metadata})
        elif step is not None and turn.text not in (SESSION_END, SILENCE_TIMEOUT):
            commands, step.commands = step.commands, None
            turn = replace(
                turn,
                metadata={**turn.metadata, **step.metadata},
                commands=turn.commands if commands is None else commands,
            )
        return await super().handle(sender_id, turn, on_message, services)


class CallerLines:
    """Each distinct line synthesised once per run, one at a time, in the background: a line
    takes a second or more of Piper, which overlaps with the call waiting for the bot to speak."""

    def __init__(self) -> None:
        self.voice = CallerVoice()
        self.shifter = default_shifter()
        self._pcm: dict[str, asyncio.Future[bytes]] = {}
        self._one_at_a_time = asyncio.Lock()  # the CPU is the call's too

    def describe(self) -> str:
        voice = self.voice
        return f"Piper joe, length x{voice.length_scale}, pitch {voice.pitch_cents} cents ({self.shifter})"

    def prepare(self, texts: Sequence[str]) -> None:
        for text in texts:
            if text not in self._pcm:
                self._pcm[text] = asyncio.ensure_future(self._synthesise(text))

    async def pcm(self, text: str) -> bytes:
        self.prepare([text])
        return await self._pcm[text]

    async def _synthesise(self, text: str) -> bytes:
        async with self._one_at_a_time:
            speech = await asyncio.to_thread(caller_speech, text, self.voice, self.shifter)
        return speech.pcm(PIPELINE_RATE, LEAD_S, TAIL_S)


class SpokenSession:
    def __init__(self, case: TestCase, assistant: CaseAssistant, call: VoiceCall, lines: CallerLines) -> None:
        self.case = case
        self.assistant = assistant
        self.call = call
        self.lines = lines
        self._seen = 0  # tracker events already given to a turn

    async def start(self) -> list[Event]:
        self.lines.prepare([step.text for step in self.case.steps if isinstance(step, UserStep) and is_spoken(step)])
        await self.call.settled()  # the greeting has played
        if self.case.fixtures:
            await self.assistant.set_slots(self.call.info.call_id, self.case.fixtures)
        return await self._new_events()

    async def predict(self, step: UserStep) -> list[Command]:
        raise TypeError("a spoken step is understood only once it is sent: spoken tests run in oracle or llm mode")

    async def send(self, step: UserStep, commands: list[Command] | None) -> Turn:
        spoken = is_spoken(step)
        self.assistant.test.step = StepInput(step.metadata, commands)
        try:
            if spoken:
                # Any turn end, with words or none: a line the ASR did not hear fails its checks
                # instead of waiting for words that never come.
                await self.call.say(await self.lines.pcm(step.text), words=False)
            else:
                self.call.engine.user_typed(step.text)
                await self.call.settled()
        finally:
            self.assistant.test.step = None
        events = await self._new_events()
        heard = tuple(e.text or "" for e in events if isinstance(e, UserUttered)) if spoken else None
        return Turn(step, events, heard)

    async def _new_events(self) -> list[Event]:
        events = (await self.call.conversation()).events
        new, self._seen = list(events[self._seen :]), len(events)
        return new


class SpokenE2ERunner(E2ERunner):
    assistant_type = CaseAssistant

    def __init__(self, project: Project, *, settings: VoiceChannelSettings, **kwargs: Any) -> None:
        super().__init__(project, **kwargs)
        self.settings = settings  # the call's speech settings: ASR, TTS, VAD, turn end
        self.lines = CallerLines()

    @asynccontextmanager
    async def _session(self, case: TestCase, assistant: Assistant, sender_id: str) -> AsyncIterator[SpokenSession]:
        assert isinstance(assistant, CaseAssistant)
        assistant.test.case_metadata = case.metadata
        runtime = VoiceRuntime(assistant)
        try:
            async with VoiceCall(runtime, self.settings, call_id=sender_id) as call:
                yield SpokenSession(case, assistant, call, self.lines)
        finally:
            await runtime.close()
