"""The voicecalm engine as a pipecat FrameProcessor: where an LLM service would sit (voice.md §3).

User turns arrive from the user aggregator (`user_turn_ended`), keys as `InputDTMFFrame`s. Each
runs through `Assistant.handle` in one engine-owned job queue, so an `InterruptionFrame` (which
cancels a processor's running `process_frame`) never tears a turn: the turn commits whole and only
speaking is interruptible. Bot messages are pushed as `AggregatedTextFrame`s the moment they
exist, so TTS speaks the first while the engine continues. The engine also owns the silence
timer (§5), the DTMF buffer (§6), the ASR hints and the slow-action filler.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from voicecalm.actions.runner import ActionRunner
from voicecalm.assistant import Assistant, TurnResult, UserTurn
from voicecalm.nlg import BotMessage
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import BotUttered, SlotSet, UserBargeIn, UserInputSuppressed, UserSilenceTimeout
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallControl, CallInfo
from voicecalm.voice.delivery import BargeInRecord, Playback
from voicecalm.voice.dtmf import AUDIO_INPUT_DISABLED, DtmfCollector, active_collect, allows_audio_input
from voicecalm.voice.hints import asr_hints
from voicecalm.voice.numbers import normalise_transcript
from voicecalm.voice.settings import VoiceChannelSettings, default_silence_timeout
from voicecalm.voice.silence import SilenceTimer, silence_timeout_for

logger = logging.getLogger(__name__)

SESSION_START = "/session_start"
SESSION_END = "/session_end"
SILENCE_TIMEOUT = "/silence_timeout"
SILENCE_TIMEOUT_SLOT = "silence_timeout"
HANDOFF_STATUS = "handoff_status"  # call parameter of a call back from an unanswered transfer
HANDOFF_FAILED_RESPONSE = "utter_human_handoff_failed"
DRAIN_TIMEOUT = 30.0  # longest a hang-up or transfer waits for queued audio to play


@dataclass(slots=True)
class BotTurn:
    """The bot's answer to one user turn (or a bot-initiated utterance)."""

    number: int
    closed: bool = False  # a barge-in closed it: later messages are not spoken
    running: bool = True
    barge_in: BargeInRecord | None = None
    spoke: bool = False


Job = Callable[[], Awaitable[None]]


class EngineProcessor(pc.FrameProcessor):
    def __init__(
        self,
        assistant: Assistant,
        call: CallInfo,
        control: CallControl,
        playback: Playback,
        settings: VoiceChannelSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.assistant = assistant
        self.project = assistant.project
        self.call = call
        self.control = control
        self.playback = playback
        self.settings = settings
        self.default_silence = default_silence_timeout(settings, self.project.endpoints)
        self.dtmf = DtmfCollector(self.project, metadata=call.metadata(), input_channel=call.channel)
        self.silence = SilenceTimer(self._silence_expired)
        self._jobs: asyncio.Queue[Job] = asyncio.Queue()
        self._outbox: asyncio.Queue[tuple[BotTurn, pc.Frame]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._bot_turns = 0
        self._bot_turn: BotTurn | None = None
        self._ended = False
        self.idle = asyncio.Event()  # no job queued or running (tests and benchmarks wait on it)
        self.user_turns_ended = 0
        self.user_turns_with_words = 0
        self.keys_received = 0
        self.user_turn_seen = asyncio.Event()
        self.turn_results: list[TurnResult] = []

    def can_generate_metrics(self) -> bool:
        return True

    # --- frames -------------------------------------------------------------------------------

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.StartFrame):
            await self.push_frame(frame, direction)
            self._tasks = [
                self.create_task(self._run_jobs(), name="voicecalm-engine"),
                self.create_task(self._push_messages(), name="voicecalm-speaker"),
            ]
            self._enqueue(self._session_start)
            return
        if isinstance(frame, pc.LLMContextFrame):
            return  # the user text comes from `user_turn_ended`; the LLM context is not ours
        if isinstance(frame, pc.InputDTMFFrame):
            await self._key_pressed(str(getattr(frame.button, "value", frame.button)))
            return
        if isinstance(frame, pc.InterruptionFrame):
            self._barge_in()
        elif isinstance(frame, (pc.UserStartedSpeakingFrame, pc.BotStartedSpeakingFrame)):
            self.silence.disarm()
        elif isinstance(frame, pc.BotStoppedSpeakingFrame):
            self._arm_silence_if_waiting()
        elif isinstance(frame, (pc.EndFrame, pc.CancelFrame)):
            await self._stop()
        await self.push_frame(frame, direction)

    async def _stop(self) -> None:
        self._ended = True
        await self.silence.close()
        for task in self._tasks:
            await self.cancel_task(task)
        self._tasks = []

    # --- user input ---------------------------------------------------------------------------

    def user_turn_ended(self, text: str | None) -> None:
        """The user aggregator's `on_user_turn_stopped`: the whole turn's transcript (or none)."""
        text = (text or "").strip()
        self.user_turns_ended += 1
        self.user_turns_with_words += bool(text)
        self.user_turn_seen.set()
        self.silence.disarm()
        if text:
            self._enqueue(lambda: self._user_message(text))
        else:
            self._enqueue(self._respeak_after_empty_turn)

    def user_typed(self, text: str) -> None:
        """A message that never was audio (a spoken e2e test's `/payload` step): handled as
        given, without the transcript's suppression and number rules."""
        self.silence.disarm()
        self._enqueue(lambda: self._turn(UserTurn(text=text, metadata=self.call.metadata(), input_channel=self.call.channel)))

    def caller_hung_up(self) -> None:
        """The channel saw the caller leave: `/session_end`, then the worker is cancelled."""
        self.silence.disarm()
        self._enqueue(self._session_end)

    def suppressed(self, text: str, reason: str) -> None:
        """A transcript the caller spoke while it could not be processed (voice.md §4, §6)."""
        event = UserInputSuppressed(text=text, reason=reason, metadata=self.call.metadata())
        self._enqueue(lambda: self.assistant.record(self.call.call_id, [event]))

    async def _key_pressed(self, key: str) -> None:
        self.keys_received += 1
        self.silence.restart()
        if self.playback.pending and not self.playback.protects_playback():
            # The first key of an input interrupts playback like speech does (vc).
            await self.push_frame(pc.InterruptionWorkerFrame(), pc.FrameDirection.UPSTREAM)
        self._enqueue(lambda: self._dtmf(key))

    # --- jobs: one at a time, in order ----------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self.idle.clear()
        self._jobs.put_nowait(job)

    async def _run_jobs(self) -> None:
        while True:
            if self._jobs.empty():
                self.idle.set()
            job = await self._jobs.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Assistant.handle turns engine failures into the internal-error pattern; what
                # reaches here is a store or channel failure: the call goes on.
                logger.exception("voice job failed")

    async def _session_start(self) -> None:
        turn = UserTurn(text=SESSION_START, metadata=self.call.metadata(), input_channel=self.call.channel)
        if self.call.parameters.get(HANDOFF_STATUS):
            # Back from a transfer nobody took (telephony.md §1.6): say so instead of greeting anew.
            await self._turn(turn, resume_with=HANDOFF_FAILED_RESPONSE)
        else:
            await self._turn(turn)

    async def _session_end(self) -> None:
        if not self._ended:
            turn = UserTurn(text=SESSION_END, metadata=self.call.metadata(), input_channel=self.call.channel)
            await self._turn(turn, speak=False)

    async def _user_message(self, text: str) -> None:
        conversation = await self.assistant.conversation(self.call.call_id)
        if not allows_audio_input(conversation, self.project):
            event = UserInputSuppressed(text=text, reason=AUDIO_INPUT_DISABLED, metadata=self.call.metadata())
            await self.assistant.record(self.call.call_id, [event])
            return
        text = normalise_transcript(text, conversation, self.project)
        await self._turn(UserTurn(text=text, metadata=self.call.metadata(), input_channel=self.call.channel))

    async def _dtmf(self, key: str) -> None:
        conversation = await self.assistant.conversation(self.call.call_id)
        turn = self.dtmf.press(key, conversation)
        if turn is not None:
            await self._turn(turn)

    async def _silence_expired(self, seconds: float) -> None:
        self._enqueue(lambda: self._user_silent(seconds))

    async def _user_silent(self, seconds: float) -> None:
        if self._ended:
            return
        self.dtmf.clear()
        await self.assistant.record(self.call.call_id, [UserSilenceTimeout(timeout=seconds, metadata=self.call.metadata())])
        await self._turn(UserTurn(text=SILENCE_TIMEOUT, metadata=self.call.metadata(), input_channel=self.call.channel))

    async def _respeak_after_empty_turn(self) -> None:
        """A barge-in whose turn had no words (a cough, noise): say again what was cut (vc)."""
        turn = self._bot_turn
        if turn is None or turn.barge_in is None:
            self._arm_silence_if_waiting()
            return
        record, turn.barge_in = turn.barge_in, None
        again = set(filter(None, [record.interrupted, *record.unheard]))
        conversation = await self.assistant.conversation(self.call.call_id)
        messages = [e for e in conversation.events if isinstance(e, BotUttered) and e.metadata.get("message_id") in again]
        bot_turn = self._open_bot_turn()
        for event in messages:
            self._speak(bot_turn, BotMessage(text=event.text, metadata={**event.metadata, "message_id": uuid.uuid4().hex}))
        self._finish_bot_turn(bot_turn)

    async def _turn(self, user_turn: UserTurn, *, speak: bool = True, resume_with: str | None = None) -> None:
        """Run `user_turn`; with `resume_with`, it starts a session that says that response instead
        of running pattern_session_start (`Assistant.resume_session`)."""
        self.silence.disarm()
        bot_turn = self._open_bot_turn()
        on_message = (lambda m: self._speak(bot_turn, m)) if speak else None
        await self.start_processing_metrics()
        try:
            if resume_with is None:
                result = await self.assistant.handle(
                    self.call.call_id, user_turn, on_message=on_message, services=self._services(bot_turn)
                )
            else:
                result = await self.assistant.resume_session(self.call.call_id, user_turn, resume_with, on_message)
        finally:
            self._finish_bot_turn(bot_turn)
            await self.stop_processing_metrics()
        self.turn_results.append(result)
        if bot_turn.barge_in is not None:
            await self._record_barge_in(bot_turn)
        if result.session_ended:
            await self._end_call(result)
            return
        conversation = await self.assistant.conversation(self.call.call_id)
        await self._update_asr_hints(conversation)
        if not bot_turn.spoke:
            self._arm_silence_if_waiting(conversation)

    def _services(self, bot_turn: BotTurn) -> Any:
        services = self.assistant.services
        actions = services.actions
        if actions is not None and self.settings.filler.after_ms > 0:
            actions = SlowActionFiller(actions, self.settings.filler.after_ms / 1000, lambda c: self._filler(bot_turn, c))
        transfer = self._transfer if self.control.transfer_available else None
        return replace(services, actions=actions, transfer_to_human=transfer)

    def _filler(self, bot_turn: BotTurn, conversation: Conversation) -> None:
        """A custom action is slow: say the filler line once, as a bot message like any other."""
        message = self.assistant.renderer.render(
            self.settings.filler.response, slots=conversation.slots, context={}, channel=self.call.channel
        )
        if message is None or bot_turn.closed:
            return
        message = replace(message, metadata={**message.metadata, "message_id": uuid.uuid4().hex})
        conversation.apply(BotUttered(text=message.text, data=message.data(), metadata={**message.metadata, "utter_action": message.response}))
        self._speak(bot_turn, message)

    async def _update_asr_hints(self, conversation: Conversation) -> None:
        hints = asr_hints(conversation, self.project)
        delta = pc.WhisperSTTService.Settings(initial_prompt=hints.initial_prompt, hotwords=hints.hotwords)
        await self.push_frame(pc.STTUpdateSettingsFrame(delta=delta), pc.FrameDirection.UPSTREAM)

    # --- silence ------------------------------------------------------------------------------

    def _arm_silence_if_waiting(self, conversation: Conversation | None = None) -> None:
        """Arm when the bot has finished speaking and waits for the caller (voice.md §5)."""
        if self._ended or self.playback.pending or not self._jobs.empty() or (self._bot_turn and self._bot_turn.running):
            return
        if conversation is None:
            self._enqueue(self._arm_silence_from_store)
        else:
            self._arm_silence(conversation)

    async def _arm_silence_from_store(self) -> None:
        if not self.playback.pending and self._jobs.empty():
            self._arm_silence(await self.assistant.conversation(self.call.call_id))

    def _arm_silence(self, conversation: Conversation) -> None:
        collect = active_collect(conversation.stack, self.project)
        seconds = silence_timeout_for(collect.step if collect else None, self.call.channel, self.default_silence)
        self.silence.arm(seconds)
        if SILENCE_TIMEOUT_SLOT in self.project.domain.slots and conversation.slots.get(SILENCE_TIMEOUT_SLOT) != seconds:
            # The slot shows the timeout in force (voice.md §5), for actions, conditions and the tracker.
            self._enqueue(lambda: self.assistant.record(self.call.call_id, [SlotSet(slot=SILENCE_TIMEOUT_SLOT, value=seconds)]))

    # --- bot output ---------------------------------------------------------------------------

    def _open_bot_turn(self) -> BotTurn:
        self._bot_turns += 1
        self._bot_turn = BotTurn(self._bot_turns)
        return self._bot_turn

    def _finish_bot_turn(self, bot_turn: BotTurn) -> None:
        bot_turn.running = False
        if bot_turn.spoke:
            # Ends the TTS's turn context, so its audio context closes as soon as the audio is
            # out instead of after pipecat's idle timeout (which would hold back the next turn).
            self._outbox.put_nowait((bot_turn, pc.LLMFullResponseEndFrame()))

    def _speak(self, bot_turn: BotTurn, message: BotMessage) -> None:
        message_id = str(message.metadata.get("message_id", ""))
        if bot_turn.closed:
            if bot_turn.barge_in is not None:
                bot_turn.barge_in.unheard.append(message_id)
            return
        text = spoken_text(message)
        if not text:
            return
        if not bot_turn.spoke:
            bot_turn.spoke = True
            self._outbox.put_nowait((bot_turn, pc.LLMFullResponseStartFrame()))
        frame: pc.Frame
        if message.allow_interruptions:
            frame = pc.AggregatedTextFrame(text, pc.TextType.SENTENCE)
        else:
            # A speak frame gets a TTS context of its own that an interruption leaves playing;
            # the TTS announces it with a text frame of its own, matched back by its text.
            frame = pc.TTSSpeakFrame(text)
            frame.interruptible = False
        frame.metadata["message_id"] = message_id
        self.playback.queued(message_id, frame.id, bot_turn.number, message.allow_interruptions, text=text)
        self._outbox.put_nowait((bot_turn, frame))

    async def _push_messages(self) -> None:
        """Push bot messages in the order they were produced; a closed bot turn's are dropped."""
        while True:
            bot_turn, frame = await self._outbox.get()
            if not bot_turn.closed:
                await self.push_frame(frame)

    def _barge_in(self) -> None:
        turn = self._bot_turn
        if turn is None or turn.closed:
            return
        if not turn.running and not any(m.bot_turn == turn.number for m in self.playback.pending):
            return  # everything was heard: the caller just spoke next
        turn.closed = True
        turn.barge_in = self.playback.barge_in(turn.number)
        if not turn.running:
            self._enqueue(lambda: self._record_barge_in(turn))

    async def _record_barge_in(self, turn: BotTurn) -> None:
        if turn.barge_in is None:
            return
        event = UserBargeIn(metadata={"playback": turn.barge_in.playback(), **self.call.metadata()})
        await self.assistant.record(self.call.call_id, [event])

    # --- call control -------------------------------------------------------------------------

    async def _transfer(self) -> bool:
        await self.playback.wait_drained(DRAIN_TIMEOUT)
        return await self.control.transfer()

    async def _end_call(self, result: TurnResult) -> None:
        reason = next((e.metadata.get("_reason") for e in result.events if e.name == "session_ended"), None)
        self._ended = True
        self.silence.disarm()
        if reason == "user disconnected":  # nobody is listening: stop at once
            await self.push_frame(pc.CancelWorkerFrame(reason=reason), pc.FrameDirection.UPSTREAM)
            return
        if reason == "bot disconnected":
            await self.playback.wait_drained(DRAIN_TIMEOUT)
            await self.control.hang_up()
        await self.push_frame(pc.EndWorkerFrame(reason=reason))


class SlowActionFiller:
    """An action runner that calls `on_slow(conversation)` once an action has run `after` seconds."""

    def __init__(self, inner: ActionRunner, after: float, on_slow: Callable[[Conversation], None]) -> None:
        self._inner = inner
        self._after = after
        self._on_slow = on_slow
        self._filled = False

    async def run(self, action_name: str, conversation: Conversation) -> Any:
        if self._filled:
            return await self._inner.run(action_name, conversation)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._after, self._fill, conversation)
        try:
            return await self._inner.run(action_name, conversation)
        finally:
            timer.cancel()

    def _fill(self, conversation: Conversation) -> None:
        if not self._filled:
            self._filled = True
            self._on_slow(conversation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # close() and the like


def spoken_text(message: BotMessage) -> str:
    """What a voice channel says for a message: its text only (buttons are for screens)."""
    return (message.text or "").strip()
