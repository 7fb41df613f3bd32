"""When each stage of each user turn happened in a call: `voicecalm voice --timeline` and the
latency benchmark (issue 8).

`TimelineObserver` watches the call's worker and notes, on the pipeline clock (seconds since the
call's pipeline started), per user turn:

    speech_started  caller speech began (VAD start minus its `start_secs`: VAD reports it late)
    speech_ended    caller speech ended (VAD stop minus its `stop_secs`)
    vad_stopped     VAD reported the end
    transcribed     the turn's last transcript arrived
    turn_ended      the turn analyser judged the turn over (UserStoppedSpeakingFrame)
    understood      the engine's user event was made: the commands were known (from the tracker)
    first_message   the engine pushed its first bot message
    tts_audio       the TTS produced its first audio chunk
    bot_audio       the output transport wrote the first bot audio

and, when the caller barged in, when the bot's audio stopped. `timeline(conversation)` joins this
with the tracker (what the engine understood, by the fast path or the model; flows started).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import FlowStarted, UserUttered
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.engine_processor import EngineProcessor

CLOCK_SLACK = 0.05  # seconds: wall-clock tracker times converted to the pipeline clock may be this early
# Bot audio written this recently (seconds) was still playing: paced outputs write a 40 ms chunk
# after the other, so a longer gap means the bot had finished (pipecat's own speaking state lags:
# it waits for the TTS's stop frame).
PLAYING_GAP = 0.1


class StageTimes(BaseModel):
    speech_started: float | None = None
    speech_ended: float | None = None
    vad_stopped: float | None = None
    transcribed: float | None = None
    turn_ended: float | None = None
    understood: float | None = None
    first_message: float | None = None
    tts_audio: float | None = None
    bot_audio: float | None = None


class Latencies(BaseModel):
    """Milliseconds from the end of caller speech to the first bot audio written (`total`), cut
    into consecutive stages that add up to it."""

    turn_end_wait: float  # VAD's stop window, plus the turn analyser's wait beyond the transcript
    asr: float  # VAD stop → transcript (segmented Whisper starts when VAD reports the stop)
    understanding: float  # turn end → user event (numbers normalised, fast path or command generator)
    engine: float  # user event → first bot message (flows, actions, responses)
    tts_first_chunk: float  # first bot message → first TTS audio
    output: float  # first TTS audio → written by the output transport
    total: float


class BargeInTiming(BaseModel):
    speech_started: float | None  # None: a keypad key interrupted
    interrupted: float  # the InterruptionFrame
    audio_stopped: float  # the bot's last audio finished writing
    reaction_ms: float | None  # caller speech start → bot audio stopped


class TurnTiming(BaseModel):
    index: int
    transcript: str
    text: str | None = None  # what the engine handled (numbers normalised); None: no user message
    fast_path: bool = False
    routed: bool = False  # the command router answered: no model was asked
    commands: list[dict[str, Any]] = []
    flows_started: list[str] = []
    bot: list[str] = []  # the bot messages that answered it
    at: StageTimes
    latency_ms: Latencies | None = None
    barge_in: BargeInTiming | None = None


class CallTotals(BaseModel):
    turns: int
    answered: int  # turns with every stage seen
    fast_path_turns: int
    first_audio_ms_p50: float | None
    first_audio_ms_max: float | None
    barge_ins: int
    barge_in_reaction_ms_p50: float | None


class CallTimeline(BaseModel):
    call_id: str
    channel: str
    duration_s: float
    greeting: list[str]  # bot messages before the caller's first turn
    turns: list[TurnTiming]
    barge_ins: list[BargeInTiming]
    totals: CallTotals


@dataclass(slots=True)
class _Turn:
    at: StageTimes
    transcript: list[str] = field(default_factory=list)
    bot: list[str] = field(default_factory=list)
    barge_in: BargeInTiming | None = None


@dataclass(slots=True)
class _Interruption:
    turn: _Turn | None  # None: a keypad key interrupted
    at: float
    audio_stopped: float | None  # the last bot audio written around it; None: the bot was silent


class TimelineObserver(pc.BaseObserver):
    """Every frame it needs is first pushed by the processor that made it (the output transport
    re-chunks audio into frames of its own), so one look per frame is enough."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.greeting: list[str] = []
        self.duration = 0.0
        self._turns: list[_Turn] = []
        self._barge_ins: list[BargeInTiming] = []
        self._open: _Turn | None = None  # the caller is speaking it
        self._answering: _Turn | None = None  # the last ended turn: bot output belongs to it
        self._speech_started: float | None = None
        self._last_audio: float | None = None  # when the output transport last finished writing bot audio
        self._interruption: _Interruption | None = None  # the latest, until its bot audio has surely stopped
        self._offset: float | None = None  # wall clock minus pipeline clock, for tracker times

    async def on_push_frame(self, data: pc.FramePushed) -> None:
        frame, at = data.frame, data.timestamp / 1e9
        if self._offset is None:
            self._offset = time.time() - data.source.get_clock().get_time() / 1e9
        self.duration = max(self.duration, at)
        downstream = data.direction == pc.FrameDirection.DOWNSTREAM
        # VAD and speaking frames are broadcast as two frames; one direction of each suffices.
        if isinstance(frame, pc.VADUserStartedSpeakingFrame) and not downstream:
            self._speech_started = at - frame.start_secs
        elif isinstance(frame, pc.VADUserStoppedSpeakingFrame) and not downstream and self._open:
            self._open.at.speech_ended, self._open.at.vad_stopped = at - frame.stop_secs, at
        elif isinstance(frame, pc.UserStartedSpeakingFrame) and downstream:
            self._open = _Turn(StageTimes(speech_started=self._speech_started))
            self._turns.append(self._open)
        elif isinstance(frame, pc.TranscriptionFrame) and self._open and frame.text.strip():
            self._open.transcript.append(frame.text.strip())
            self._open.at.transcribed = at
        elif isinstance(frame, pc.UserStoppedSpeakingFrame) and downstream and self._open:
            self._close_interruption()
            self._open.at.turn_ended = at
            self._answering, self._open = self._open, None
        elif isinstance(frame, pc.InterruptionFrame):
            if self._interruption is None or at - self._interruption.at > PLAYING_GAP:  # not the other half of a broadcast
                self._close_interruption()
                recent = self._last_audio is not None and at - self._last_audio <= PLAYING_GAP
                self._interruption = _Interruption(self._open, at, self._last_audio if recent else None)
        elif isinstance(frame, pc.AggregatedTextFrame) and isinstance(data.source, EngineProcessor):
            self._bot_message(frame.text, at)
        elif isinstance(frame, pc.BotStartedSpeakingFrame) and downstream:
            self._close_interruption()
            self._bot_audio(at)
        elif isinstance(frame, pc.OutputAudioRawFrame):
            if isinstance(data.source, pc.BaseOutputTransport):
                # Pushed on once written (and, on paced outputs, played): it began its duration ago.
                self._bot_audio(at - len(frame.audio) / 2 / frame.sample_rate / frame.num_channels)
                self._last_audio = at
                if self._interruption is not None:
                    self._interruption.audio_stopped = at  # written after the interruption: still playing
            elif isinstance(frame, pc.TTSAudioRawFrame) and self._answering and self._answering.at.tts_audio is None:
                self._answering.at.tts_audio = at

    def _close_interruption(self) -> None:
        """The interrupted audio (if any) has stopped for good: the caller's turn ended, or the bot
        speaks anew. An interruption with bot audio playing around it was a barge-in."""
        interruption, self._interruption = self._interruption, None
        if interruption is None or interruption.audio_stopped is None:
            return  # the bot was silent: an ordinary turn start
        speech_started = interruption.turn.at.speech_started if interruption.turn else None
        barge_in = BargeInTiming(
            speech_started=speech_started,
            interrupted=interruption.at,
            audio_stopped=interruption.audio_stopped,
            reaction_ms=None if speech_started is None else _ms(interruption.audio_stopped - speech_started),
        )
        self._barge_ins.append(barge_in)
        if interruption.turn is not None:
            interruption.turn.barge_in = barge_in

    def _bot_message(self, text: str, at: float) -> None:
        if self._answering is None:
            self.greeting.append(text)
            return
        self._answering.bot.append(text)
        if self._answering.at.first_message is None:
            self._answering.at.first_message = at

    def _bot_audio(self, at: float) -> None:
        turn = self._answering
        if turn is not None and turn.at.tts_audio is not None and turn.at.bot_audio is None:
            turn.at.bot_audio = max(at, turn.at.tts_audio)

    def timeline(self, conversation: Conversation, channel: str) -> CallTimeline:
        """The call so far, joined with its tracker."""
        self._close_interruption()
        offset = self._offset or 0.0
        said = [
            (index, event)
            for index, event in enumerate(conversation.events)
            if isinstance(event, UserUttered) and event.text and not event.text.startswith("/")
            and event.metadata.get("source") != "dtmf"
        ]
        ended = [turn.at.turn_ended for turn in self._turns if turn.at.turn_ended is not None]
        turns = []
        for number, turn in enumerate(self._turns):
            timing = TurnTiming(index=number, transcript=" ".join(turn.transcript), bot=turn.bot, at=turn.at.model_copy(),
                                barge_in=turn.barge_in)
            if turn.transcript and turn.at.turn_ended is not None:
                until = next((t for t in ended if t > turn.at.turn_ended), float("inf"))
                match = next(
                    ((i, e) for i, e in said if turn.at.turn_ended - CLOCK_SLACK <= e.timestamp - offset < until), None
                )
                if match is not None:
                    said.remove(match)
                    _add_understanding(timing, conversation, *match, offset)
            timing.latency_ms = _latencies(timing.at)
            turns.append(timing)
        return CallTimeline(
            call_id=conversation.sender_id,
            channel=channel,
            duration_s=round(self.duration, 3),
            greeting=self.greeting,
            turns=turns,
            barge_ins=self._barge_ins,
            totals=_totals(turns, self._barge_ins),
        )


def _add_understanding(timing: TurnTiming, conversation: Conversation, index: int, event: UserUttered, offset: float) -> None:
    timing.text = event.text
    timing.fast_path = bool(event.parse_data.get("fast_path"))
    timing.routed = bool(event.parse_data.get("routed"))
    timing.commands = event.commands
    timing.at.understood = event.timestamp - offset
    later = conversation.events[index + 1 :]
    until = next((i for i, e in enumerate(later) if isinstance(e, UserUttered)), len(later))
    timing.flows_started = [e.flow_id for e in later[:until] if isinstance(e, FlowStarted)]


def _latencies(at: StageTimes) -> Latencies | None:
    needed = (at.speech_ended, at.vad_stopped, at.turn_ended, at.understood, at.first_message, at.tts_audio, at.bot_audio)
    if any(value is None for value in needed):
        return None
    asr_done = min(at.transcribed or at.turn_ended, at.turn_ended)
    return Latencies(
        turn_end_wait=_ms(at.vad_stopped - at.speech_ended + at.turn_ended - asr_done),
        asr=_ms(asr_done - at.vad_stopped),
        understanding=_ms(at.understood - at.turn_ended),
        engine=_ms(at.first_message - at.understood),
        tts_first_chunk=_ms(at.tts_audio - at.first_message),
        output=_ms(at.bot_audio - at.tts_audio),
        total=_ms(at.bot_audio - at.speech_ended),
    )


def _totals(turns: list[TurnTiming], barge_ins: list[BargeInTiming]) -> CallTotals:
    first_audio = [turn.latency_ms.total for turn in turns if turn.latency_ms is not None]
    reactions = [barge_in.reaction_ms for barge_in in barge_ins if barge_in.reaction_ms is not None]
    return CallTotals(
        turns=len(turns),
        answered=len(first_audio),
        fast_path_turns=sum(turn.fast_path for turn in turns),
        first_audio_ms_p50=percentile(first_audio, 0.5),
        first_audio_ms_max=max(first_audio, default=None),
        barge_ins=len(barge_ins),
        barge_in_reaction_ms_p50=percentile(reactions, 0.5),
    )


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` 0.5 = median), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
