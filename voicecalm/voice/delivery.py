"""What the caller actually heard, per bot message (voice.md §4).

The engine registers each message as it pushes its text frame; `DeliveryTracker`, placed after the
output transport, sees the text frame leave (its audio starts) and the TTS's `TTSTextFrame` for it
leave (its audio has been written: websocket and WebRTC outputs pace in real time, so written ≈
played). Channels that learn of playback from the far end (Twilio `mark` echoes) confirm messages
themselves instead (`confirmed_by_channel=True`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from voicecalm.voice import pipecat_api as pc


@dataclass(slots=True)
class SpokenMessage:
    message_id: str
    frame_id: int
    bot_turn: int
    allow_interruptions: bool
    text: str = ""
    started_at: float | None = None  # monotonic time its audio began
    written: bool = False  # all its audio left the output transport
    heard: bool = False


@dataclass(frozen=True, slots=True)
class BargeInRecord:
    heard: list[str]
    interrupted: str | None
    unheard: list[str]
    played_ms: int
    interrupted_message: SpokenMessage | None = None
    unheard_messages: list[SpokenMessage] = field(default_factory=list)

    def playback(self) -> dict[str, object]:
        return {"heard": self.heard, "interrupted": self.interrupted, "unheard": self.unheard, "played_ms": self.played_ms}


class Playback:
    """The delivery state of one call's bot messages."""

    def __init__(self, *, confirmed_by_channel: bool = False) -> None:
        self.confirmed_by_channel = confirmed_by_channel
        self._by_frame: dict[int, SpokenMessage] = {}
        self._by_id: dict[str, SpokenMessage] = {}
        self._pending: list[SpokenMessage] = []  # queued or playing, in order
        self._drained = asyncio.Event()
        self._drained.set()

    def queued(self, message_id: str, frame_id: int, bot_turn: int, allow_interruptions: bool, text: str = "") -> None:
        message = SpokenMessage(message_id, frame_id, bot_turn, allow_interruptions, text)
        self._by_frame[frame_id] = message
        self._by_id[message_id] = message
        self._pending.append(message)
        self._drained.clear()

    def announced(self, frame_id: int, text: str) -> None:
        """The TTS announced a text frame of its own (a speak frame's): tie it to its message."""
        if frame_id in self._by_frame:
            return
        message = next((m for m in self._pending if m.started_at is None and m.text == text), None)
        if message is not None:
            self._by_frame[frame_id] = message

    def started(self, frame_id: int) -> None:
        message = self._by_frame.get(frame_id)
        if message is not None and message.started_at is None:
            message.started_at = time.monotonic()

    def written(self, frame_id: int) -> None:
        message = self._by_frame.get(frame_id)
        if message is None:
            return
        message.written = True
        if not self.confirmed_by_channel:
            self._heard(message)

    def confirm(self, message_id: str) -> None:
        """The channel reports the message played to its end (a Twilio mark echoed before any clear)."""
        message = self._by_id.get(message_id)
        if message is not None:
            self._heard(message)

    def _heard(self, message: SpokenMessage) -> None:
        message.heard = True
        if message.started_at is None:
            message.started_at = time.monotonic()
        if message in self._pending:
            self._pending.remove(message)
        if not self._pending:
            self._drained.set()

    def heard(self, message_id: str) -> bool:
        message = self._by_id.get(message_id)
        return message is not None and message.heard

    @property
    def pending(self) -> list[SpokenMessage]:
        return list(self._pending)

    @property
    def playing(self) -> SpokenMessage | None:
        return next((m for m in self._pending if m.started_at is not None), None)

    def protects_playback(self) -> bool:
        """A message that must not be interrupted is playing or queued to play next."""
        return bool(self._pending) and not self._pending[0].allow_interruptions

    def barge_in(self, bot_turn: int) -> BargeInRecord:
        """Close the playback of `bot_turn`: what was heard, which message was cut, what never played."""
        turn_messages = [m for m in self._by_id.values() if m.bot_turn == bot_turn]
        playing = self.playing
        interrupted = playing if playing is not None and playing.bot_turn == bot_turn else None
        unheard = [m for m in turn_messages if not m.heard and m is not interrupted]
        played_ms = int((time.monotonic() - interrupted.started_at) * 1000) if interrupted and interrupted.started_at else 0
        for message in [*unheard, *([interrupted] if interrupted else [])]:
            if message in self._pending:
                self._pending.remove(message)
        if not self._pending:
            self._drained.set()
        return BargeInRecord(
            heard=[m.message_id for m in turn_messages if m.heard],
            interrupted=interrupted.message_id if interrupted else None,
            unheard=[m.message_id for m in unheard],
            played_ms=played_ms,
            interrupted_message=interrupted,
            unheard_messages=unheard,
        )

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until every queued message has played (bot hang-up and transfer wait for this)."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True


class DeliveryTracker(pc.FrameProcessor):
    """After `transport.output()`, which passes on each frame once it has written it: a message
    starts playing with the first audio after its text frame, and has been written when the TTS's
    `TTSTextFrame` for it (sent after its audio) comes out."""

    def __init__(self, playback: Playback, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._playback = playback
        self._announced: int | None = None  # the text frame whose audio comes next

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.TTSTextFrame):
            if frame.segment_id is not None:
                self._playback.written(frame.segment_id)
        elif isinstance(frame, pc.AggregatedTextFrame):
            self._playback.announced(frame.id, frame.text)
            self._announced = frame.id
        elif isinstance(frame, pc.OutputAudioRawFrame) and self._announced is not None:
            self._playback.started(self._announced)
            self._announced = None
        await self.push_frame(frame, direction)
