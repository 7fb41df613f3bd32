"""Audio from and to memory/files, paced in real time: `voicecalm voice --input-wav/--output-wav`,
spoken e2e tests and benchmarks all drive the same pipeline the phone channels use.

`CallerAudio` is the caller's side: utterances queued with `say()` are streamed as 20 ms frames in
real time, silence in between. `BotAudio` records what the bot played, each chunk at the moment it
was written, so `to_wav()` lines the bot's side up with the caller's.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.wav import PIPELINE_RATE

FRAME_MS = 20
FRAME_BYTES = PIPELINE_RATE * FRAME_MS // 1000 * 2


def write_wav(path: Path | str, pcm: bytes, rate: int = PIPELINE_RATE) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


def split_utterances(pcm: bytes, rate: int = PIPELINE_RATE, min_silence_s: float = 1.2, threshold: float = 0.01) -> list[bytes]:
    """A recording of several caller turns, cut at silences of at least `min_silence_s` (each
    piece keeps its silences, so the VAD sees speech start and end as in a live call)."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    window = rate // 50
    loud = [float(np.sqrt(np.mean(samples[i : i + window] ** 2))) > threshold for i in range(0, len(samples), window)]
    cuts, quiet_run = [0], 0
    for index, is_loud in enumerate(loud):
        if is_loud:
            if quiet_run * window >= min_silence_s * rate and any(loud[: index]):
                cuts.append((index - quiet_run // 2) * window)
            quiet_run = 0
        else:
            quiet_run += 1
    cuts.append(len(samples))
    pieces = [pcm[start * 2 : end * 2] for start, end in zip(cuts, cuts[1:]) if end > start]
    return [piece for piece in pieces if _has_speech(piece, threshold)]


def _has_speech(pcm: bytes, threshold: float) -> bool:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    return samples.size > 0 and float(np.max(np.abs(samples))) > threshold * 3


@dataclass
class CallerAudio:
    """The caller's microphone: what `say()` queues is streamed in real time, silence otherwise."""

    _queue: asyncio.Queue[tuple[bytes, asyncio.Future[None]]] = field(default_factory=asyncio.Queue)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    async def say(self, pcm: bytes) -> None:
        """Stream `pcm` (16 kHz mono s16) and return once its last frame has been sent."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((pcm, done))
        await done

    def hang_up(self) -> None:
        self.hung_up.set()

    async def frames(self) -> "asyncio.AsyncIterator[bytes]":  # type: ignore[name-defined]
        """20 ms frames forever, on a real-time clock (silence between utterances)."""
        clock = time.monotonic()
        silence = bytes(FRAME_BYTES)
        current, done, offset = b"", None, 0
        while True:
            if offset >= len(current):
                if done is not None and not done.done():
                    done.set_result(None)
                current, done, offset = b"", None, 0
                if not self._queue.empty():
                    current, done = self._queue.get_nowait()
            chunk = current[offset : offset + FRAME_BYTES] if current else silence
            offset += FRAME_BYTES
            yield chunk.ljust(FRAME_BYTES, b"\0")
            clock += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, clock - time.monotonic()))


class CallerInputTransport(pc.BaseInputTransport):
    def __init__(self, caller: CallerAudio, params: pc.TransportParams, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        self._caller = caller
        self._feeder: asyncio.Task[None] | None = None

    async def start(self, frame: pc.StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._feeder is None:
            self._feeder = self.create_task(self._feed(), name="caller-audio")

    async def press(self, key: str) -> None:
        """A keypad key, as phone channels deliver it (RFC 4733, Twilio `dtmf`)."""
        await self.push_frame(pc.InputDTMFFrame(button=pc.KeypadEntry(key)))

    async def _feed(self) -> None:
        async for chunk in self._caller.frames():
            await self.push_audio_frame(pc.InputAudioRawFrame(audio=chunk, sample_rate=PIPELINE_RATE, num_channels=1))

    async def _stop_feeder(self) -> None:
        if self._feeder is not None:
            await self.cancel_task(self._feeder)
            self._feeder = None

    async def stop(self, frame: pc.EndFrame) -> None:
        await self._stop_feeder()
        await super().stop(frame)

    async def cancel(self, frame: pc.CancelFrame) -> None:
        await self._stop_feeder()
        await super().cancel(frame)


@dataclass
class BotAudio:
    """What the bot played: (seconds since the call started, PCM at `rate`) per written chunk."""

    rate: int = PIPELINE_RATE
    started: float = field(default_factory=time.monotonic)
    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    def write(self, pcm: bytes) -> None:
        self.chunks.append((time.monotonic() - self.started, pcm))

    @property
    def pcm(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)

    def to_wav(self, path: Path | str | None = None) -> bytes:
        """The bot's side on the call's timeline (silence where it said nothing)."""
        timeline = bytearray()
        for at, chunk in self.chunks:
            position = int(at * self.rate) * 2
            if position > len(timeline):
                timeline.extend(bytes(position - len(timeline)))
            timeline[position : position + len(chunk)] = chunk
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(bytes(timeline))
        if path is not None:
            Path(path).write_bytes(buffer.getvalue())
        return buffer.getvalue()


class BotOutputTransport(pc.BaseOutputTransport):
    """Writes each chunk to `BotAudio` and sleeps for its duration, as a phone line would take it."""

    def __init__(self, bot: BotAudio, params: pc.TransportParams, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        self._bot = bot
        self._clock: float | None = None

    async def start(self, frame: pc.StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: pc.OutputAudioRawFrame) -> bool:
        now = time.monotonic()
        if self._clock is None or self._clock < now:
            self._clock = now
        self._bot.write(frame.audio)
        self._clock += len(frame.audio) / 2 / frame.sample_rate
        await asyncio.sleep(max(0.0, self._clock - time.monotonic()))
        return True


class MemoryTransport(pc.BaseTransport):
    """A call whose caller is `CallerAudio` and whose line is `BotAudio`."""

    def __init__(self, caller: CallerAudio, bot: BotAudio) -> None:
        super().__init__()
        params = pc.TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=PIPELINE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=bot.rate,
        )
        self._input = CallerInputTransport(caller, params, name="caller-in")
        self._output = BotOutputTransport(bot, params, name="bot-out")
        self._register_event_handler("on_client_disconnected")

    async def press(self, keys: str) -> None:
        for key in keys:
            await self._input.press(key)

    def input(self) -> pc.BaseInputTransport:
        return self._input

    def output(self) -> pc.BaseOutputTransport:
        return self._output
