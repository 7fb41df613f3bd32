"""`VoiceCall`: one call through the real voice pipeline, driven from memory.

The caller's audio is streamed in real time (`say`), the bot's audio is recorded with its timing;
waiting is on pipeline events, never on fixed sleeps. Used by the voice tests, the spoken e2e
runner and the latency benchmark.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from voicecalm.tracker.conversation import Conversation
from voicecalm.voice.call import CallControl, CallInfo
from voicecalm.voice.files import BotAudio, CallerAudio, MemoryTransport
from voicecalm.voice.runtime import ActiveCall, VoiceRuntime
from voicecalm.voice.settings import VoiceChannelSettings

TURN_TIMEOUT = 120.0  # generous: CI machines share two cores between ASR, TTS and the LLM


class VoiceCall:
    def __init__(
        self,
        runtime: VoiceRuntime,
        settings: VoiceChannelSettings | None = None,
        *,
        call_id: str | None = None,
        channel: str = "local_audio",
        control: CallControl | None = None,
        observers: list[Any] | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings or VoiceChannelSettings()
        self.info = CallInfo(
            call_id=call_id or f"call-{uuid.uuid4().hex[:12]}", channel=channel, parameters=dict(parameters or {})
        )
        self.control = control
        self.observers = observers
        self.caller = CallerAudio()
        self.bot = BotAudio()
        self.transport = MemoryTransport(self.caller, self.bot)
        self.active: ActiveCall | None = None
        self._running: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "VoiceCall":
        self.active = await self.runtime.start_call(
            self.transport, self.info, self.settings, control=self.control, audio_out_sample_rate=self.bot.rate,
            observers=self.observers,
        )
        self._running = asyncio.create_task(self.active.run())
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._running is not None and not self._running.done():
            await self.hang_up()

    @property
    def engine(self) -> Any:
        assert self.active is not None
        return self.active.engine

    async def settled(self, timeout: float = TURN_TIMEOUT) -> None:
        """The bot has finished answering and everything it said has played."""
        assert self.active is not None
        await self.active.settled(timeout)

    async def say(self, pcm: bytes, *, wait: bool = True, words: bool = True, timeout: float = TURN_TIMEOUT) -> None:
        """Speak `pcm` (16 kHz mono s16, with its own silence around the words); with `wait`,
        return once the user turn it makes (one with `words`, or any) has been answered and played."""
        counter = "user_turns_with_words" if words else "user_turns_ended"
        seen = getattr(self.engine, counter)
        await self.caller.say(pcm)
        if wait:
            await asyncio.wait_for(self._turn_after(counter, seen), timeout)
            await self.settled(timeout)

    async def _turn_after(self, counter: str, seen: int) -> None:
        while getattr(self.engine, counter) <= seen:
            self.engine.user_turn_seen.clear()
            await self.engine.user_turn_seen.wait()

    async def press(self, keys: str, timeout: float = TURN_TIMEOUT) -> None:
        """Press keypad keys; return once the engine has them and has answered."""
        expected = self.engine.keys_received + len(keys)
        await self.transport.press(keys)
        async with asyncio.timeout(timeout):
            while self.engine.keys_received < expected:
                await asyncio.sleep(0.01)
        await self.settled(timeout)

    async def hang_up(self, timeout: float = TURN_TIMEOUT) -> None:
        """The caller hangs up; returns when the call's pipeline has ended."""
        await self.transport._call_event_handler("on_client_disconnected")
        if self._running is not None:
            await asyncio.wait_for(self._running, timeout)

    async def ended(self, timeout: float = TURN_TIMEOUT) -> None:
        """Wait for the bot to end the call (hang-up, transfer)."""
        assert self._running is not None
        await asyncio.wait_for(asyncio.shield(self._running), timeout)

    async def conversation(self) -> Conversation:
        return await self.runtime.assistant.conversation(self.info.call_id)
