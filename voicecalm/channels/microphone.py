"""`voicecalm voice`: talk to an assistant through the local microphone and speakers
(telephony.md §4), on sounddevice/PortAudio, with a live status line.

PortAudio runs each stream's callback on a thread of its own; blocks cross to the event loop
with `call_soon_threadsafe`, and the speaker pulls from a buffer that the pipeline fills only
as fast as the device plays it (so the bot's speech is paced by the sound card, and a barge-in
drops what has not been played yet).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import soxr
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallInfo
from voicecalm.voice.settings import InterruptionSettings, LocalAudioSettings

if TYPE_CHECKING:
    from voicecalm.voice.runtime import VoiceRuntime  # the speech models and the assistant: not needed to list devices

logger = logging.getLogger(__name__)

CHANNEL = "local_audio"
PIPELINE_SAMPLE_RATE = 16000  # what every transport hands the pipeline (voice.md §8)
BLOCK_SECONDS = 0.02
SPEAKER_BUFFER_SECONDS = 0.1  # bot audio queued ahead of the device: what a barge-in cuts off at most
EXIT_CODE = 2  # the CLI's exit code for an audio device problem

NO_MICROPHONE = "no microphone found; pick one with --input-device, or use `voicecalm shell`"
NO_SPEAKER = "no audio output device found; pick one with --output-device, or use `voicecalm shell`"
NO_PORTAUDIO = (
    "the PortAudio library is missing: install the Debian package libportaudio2 "
    "(apt-get install libportaudio2), or use `voicecalm shell`"
)
ECHO_WARNING = (
    "microphone and speakers have no echo cancellation here: the assistant may hear itself. "
    "Use headphones, or --half-duplex so it stops listening while it speaks."
)

Kind = Literal["input", "output"]


class AudioDeviceError(Exception):
    """No usable audio device, or no PortAudio. The message is the one line the CLI prints
    before exiting with `EXIT_CODE`, without a traceback."""


def _sounddevice() -> ModuleType:
    """The sounddevice module; it loads the PortAudio shared library on import."""
    try:
        import sounddevice
    except OSError as error:  # "PortAudio library not found"
        raise AudioDeviceError(NO_PORTAUDIO) from error
    return sounddevice


# --- devices ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioDevice:
    index: int
    name: str
    host_api: str
    input_channels: int
    output_channels: int
    default_sample_rate: int

    def channels(self, kind: Kind) -> int:
        return self.input_channels if kind == "input" else self.output_channels


@dataclass(frozen=True, slots=True)
class AudioDevices:
    """The devices a session uses and the rates they are opened at."""

    input: AudioDevice
    input_rate: int  # 16 kHz when the device takes it, else its own rate (resampled to 16 kHz)
    output: AudioDevice
    output_rate: int  # the device's own rate: the pipeline makes bot audio at that rate


def list_devices() -> list[AudioDevice]:
    sd = _sounddevice()
    host_apis = [api["name"] for api in sd.query_hostapis()]
    return [
        AudioDevice(
            index=device["index"],
            name=device["name"],
            host_api=host_apis[device["hostapi"]],
            input_channels=device["max_input_channels"],
            output_channels=device["max_output_channels"],
            default_sample_rate=int(device["default_samplerate"]),
        )
        for device in sd.query_devices()
    ]


def print_devices(console: Console) -> None:
    """`voicecalm voice --list-devices`."""
    devices = list_devices()
    if not devices:
        console.print("PortAudio finds no audio devices.")
        return
    default_input, default_output = _sounddevice().default.device
    table = Table("#", "name", "host API", "in", "out", "rate", "default")
    for device in devices:
        defaults = [
            kind for kind, default in (("input", default_input), ("output", default_output)) if default == device.index
        ]
        table.add_row(
            str(device.index),
            device.name,
            device.host_api,
            str(device.input_channels),
            str(device.output_channels),
            str(device.default_sample_rate),
            ", ".join(defaults),
        )
    console.print(table)


def find_device(spec: str | None, kind: Kind) -> AudioDevice:
    """The device `--input-device`/`--output-device` names: a number from `--list-devices`, a
    name or a unique part of one, or None for the system default."""
    devices = [device for device in list_devices() if device.channels(kind) > 0]
    if spec is None:
        default = _sounddevice().default.device[0 if kind == "input" else 1]
        for device in devices:
            if device.index == default:
                return device
        raise AudioDeviceError(NO_MICROPHONE if kind == "input" else NO_SPEAKER)
    spec = spec.strip()
    if spec.isdigit():
        matches = [device for device in devices if device.index == int(spec)]
    else:
        matches = [device for device in devices if device.name.lower() == spec.lower()] or [
            device for device in devices if spec.lower() in device.name.lower()
        ]
    if len(matches) == 1:
        return matches[0]
    flag = f"--{kind}-device"
    if not matches:
        listing = "`voicecalm voice --list-devices` lists them"
        raise AudioDeviceError(f"no {kind} device matches {spec!r} ({flag}); {listing}")
    names = ", ".join(f"{device.index} {device.name!r}" for device in matches)
    raise AudioDeviceError(f"{flag} {spec!r} matches several {kind} devices ({names}): give its number")


def select_devices(input_device: str | None, output_device: str | None) -> AudioDevices:
    """Resolve both devices and the rates to open them at; `AudioDeviceError` says what is wrong.
    The CLI can call it before loading any model, to fail fast."""
    sd = _sounddevice()
    microphone = find_device(input_device, "input")
    speaker = find_device(output_device, "output")
    try:
        sd.check_input_settings(device=microphone.index, samplerate=PIPELINE_SAMPLE_RATE, channels=1, dtype="int16")
        input_rate = PIPELINE_SAMPLE_RATE
    except sd.PortAudioError:
        input_rate = microphone.default_sample_rate
    return AudioDevices(microphone, input_rate, speaker, speaker.default_sample_rate)


def _block_frames(rate: int) -> int:
    return round(rate * BLOCK_SECONDS)


def _open_stream(stream_type: Any, role: str, device: AudioDevice, rate: int, callback: Any) -> Any:
    """A mono s16 PortAudio stream on `device`; one that cannot be opened is an `AudioDeviceError`."""
    try:
        return stream_type(
            samplerate=rate, blocksize=_block_frames(rate), device=device.index, channels=1, dtype="int16", callback=callback
        )
    except _sounddevice().PortAudioError as error:
        raise AudioDeviceError(f"cannot open the {role} {device.name!r}: {error}") from error


# --- transports ------------------------------------------------------------------------------


class MicrophoneInput(pc.BaseInputTransport):
    """Pushes the microphone as 16 kHz mono `InputAudioRawFrame`s, one per 20 ms block."""

    def __init__(
        self, stream: Any, rate: int, params: pc.TransportParams, on_started: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(params, name="MicrophoneInput")
        self._stream = stream
        self._blocks: asyncio.Queue[bytes] = asyncio.Queue()
        self._resampler = (
            None if rate == PIPELINE_SAMPLE_RATE else soxr.ResampleStream(rate, PIPELINE_SAMPLE_RATE, 1, dtype="int16")
        )
        self._on_started = on_started
        self._reader: asyncio.Task[None] | None = None

    def captured(self, block: bytes) -> None:
        """A block from PortAudio, on the event loop."""
        self._blocks.put_nowait(block)

    async def start(self, frame: pc.StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._reader is None:
            self._reader = self.create_task(self._push_blocks())
            self._stream.start()
            await self._on_started()

    async def _push_blocks(self) -> None:
        while True:
            block = await self._blocks.get()
            if self._resampler is not None:
                samples = np.frombuffer(block, dtype=np.int16)
                block = self._resampler.resample_chunk(samples).tobytes()
            if block:
                frame = pc.InputAudioRawFrame(audio=block, sample_rate=PIPELINE_SAMPLE_RATE, num_channels=1)
                await self.push_audio_frame(frame)

    async def stop(self, frame: pc.EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: pc.CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    async def _close(self) -> None:
        if self._reader is not None:
            await self.cancel_task(self._reader)
            self._reader = None
        await asyncio.to_thread(self._stream.close)


class _PlaybackBuffer:
    """Bot audio waiting for the speaker. The PortAudio thread takes from the front; the event
    loop adds at the back and waits while more than `limit` bytes are queued."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._lock = threading.Lock()
        self._audio = bytearray()
        self._room = asyncio.Event()

    def fill(self, outdata: Any) -> None:
        """PortAudio's output callback (its thread): the next bytes, silence when none are queued."""
        size = len(outdata)
        with self._lock:
            chunk = bytes(self._audio[:size])
            del self._audio[:size]
            queued = len(self._audio)
        outdata[: len(chunk)] = chunk
        outdata[len(chunk) :] = bytes(size - len(chunk))
        if queued <= self._limit:
            self._loop.call_soon_threadsafe(self._room.set)

    async def add(self, audio: bytes) -> None:
        with self._lock:
            self._audio.extend(audio)
        while self.queued() > self._limit:
            self._room.clear()
            await self._room.wait()

    def queued(self) -> int:
        with self._lock:
            return len(self._audio)

    def clear(self) -> None:
        with self._lock:
            self._audio.clear()
        self._room.set()


class SpeakerOutput(pc.BaseOutputTransport):
    """Plays bot audio (mono s16 at the device's rate) through the output device."""

    def __init__(self, stream: Any, playback: _PlaybackBuffer, params: pc.TransportParams) -> None:
        super().__init__(params, name="SpeakerOutput")
        self._stream = stream
        self._playback = playback
        self._started = False

    async def start(self, frame: pc.StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if not self._started:
            self._started = True
            self._stream.start()

    async def write_audio_frame(self, frame: pc.OutputAudioRawFrame) -> bool:
        await self._playback.add(frame.audio)
        return True

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.InterruptionFrame):
            self._playback.clear()  # what the device has not played yet is never heard

    async def stop(self, frame: pc.EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: pc.CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    async def _close(self) -> None:
        self._playback.clear()
        await asyncio.to_thread(self._stream.close)


class LocalAudioTransport(pc.BaseTransport):
    """The microphone and speakers as one pipecat transport. Both streams are opened here, so a
    device that cannot be opened fails before the call starts. `hang_up()` (Ctrl-C) fires
    `on_client_disconnected`, as a caller leaving a phone call does."""

    def __init__(self, devices: AudioDevices, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")
        sd = _sounddevice()
        params = pc.TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=devices.output_rate,
        )
        playback = _PlaybackBuffer(loop, limit=round(devices.output_rate * SPEAKER_BUFFER_SECONDS) * 2)

        def captured(indata: Any, frames: int, time: Any, status: Any) -> None:
            if status:
                logger.debug("microphone: %s", status)
            loop.call_soon_threadsafe(self._input.captured, bytes(indata))

        def play(outdata: Any, frames: int, time: Any, status: Any) -> None:
            if status:
                logger.debug("speaker: %s", status)
            playback.fill(outdata)

        microphone = _open_stream(sd.RawInputStream, "microphone", devices.input, devices.input_rate, captured)
        try:
            speaker = _open_stream(sd.RawOutputStream, "speaker", devices.output, devices.output_rate, play)
        except AudioDeviceError:
            microphone.close()
            raise
        self._input = MicrophoneInput(microphone, devices.input_rate, params, self._connected)
        self._output = SpeakerOutput(speaker, playback, params)

    def input(self) -> MicrophoneInput:
        return self._input

    def output(self) -> SpeakerOutput:
        return self._output

    async def _connected(self) -> None:
        await self._call_event_handler("on_client_connected", self)

    async def hang_up(self) -> None:
        await self._call_event_handler("on_client_disconnected", self)


# --- status line -----------------------------------------------------------------------------

Status = Literal["listening", "thinking", "speaking"]
STATUS_STYLE = {"listening": "green", "thinking": "yellow", "speaking": "cyan"}


class StatusLine(pc.BaseObserver):
    """The live line under the conversation: listening / thinking / speaking, and the caller's
    latest transcript. Transcripts and bot messages are also printed above it as they come.
    An observer of the call's worker, like `BrowserStatePublisher`."""

    def __init__(self, console: Console) -> None:
        super().__init__(observe_every_push=False)
        self.console = console
        self.status: Status = "listening"
        self.heard = ""  # the caller's latest transcript, or what is happening to it
        self._live: Live | None = None

    def render(self) -> Text:
        line = Text("● ", style=STATUS_STYLE[self.status])
        line.append(self.status, style=f"bold {STATUS_STYLE[self.status]}")
        if self.heard:
            line.append(f"  {self.heard}", style="dim")
        return line

    def attach(self, live: Live) -> None:
        self._live = live
        self._refresh()

    def show(self, status: Status | None = None, heard: str | None = None) -> None:
        self.status = status or self.status
        self.heard = self.heard if heard is None else heard
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)

    async def on_push_frame(self, data: pc.FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, pc.UserStartedSpeakingFrame):
            self.show("listening", "hearing you…")
        elif isinstance(frame, pc.UserStoppedSpeakingFrame):
            self.show("thinking")
        elif isinstance(frame, pc.BotStartedSpeakingFrame):
            self.show("speaking")
        elif isinstance(frame, pc.BotStoppedSpeakingFrame):
            self.show("listening")
        elif isinstance(frame, pc.TranscriptionFrame):
            self.console.print(Text.assemble(("you: ", "bold green"), frame.text))
            self.show(heard=f"heard: {frame.text}")
        elif isinstance(frame, pc.AggregatedTextFrame) and not isinstance(frame, pc.TTSTextFrame):
            self.console.print(Text.assemble(("bot: ", "bold cyan"), frame.text))


# --- the session -----------------------------------------------------------------------------


def half_duplex_settings(settings: LocalAudioSettings) -> LocalAudioSettings:
    return settings.model_copy(update={"interruptions": InterruptionSettings(enabled=False)})


async def run_microphone(
    runtime: VoiceRuntime,
    settings: LocalAudioSettings,
    input_device: str | None,
    output_device: str | None,
    half_duplex: bool,
    *,
    console: Console | None = None,
) -> str:
    """One conversation through the microphone and speakers, until Ctrl-C (the first hangs up
    cleanly: the call ends as if the caller had left; a second one stops at once) or until the
    assistant ends the call. Returns the conversation's sender id. Raises `AudioDeviceError` for
    a missing or unusable device."""
    console = console or Console()
    devices = select_devices(input_device, output_device)
    if half_duplex:
        settings = half_duplex_settings(settings)
    elif settings.interruptions.enabled:
        console.print(ECHO_WARNING, style="yellow")
    loop = asyncio.get_running_loop()
    transport = LocalAudioTransport(devices, loop)
    status = StatusLine(console)
    call = CallInfo(call_id=f"local-{uuid.uuid4().hex[:12]}", channel=CHANNEL)
    console.print(
        f"microphone: {devices.input.name} ({devices.input_rate} Hz), speaker: {devices.output.name} "
        f"({devices.output_rate} Hz). Ctrl-C hangs up.",
        style="dim",
    )
    running = asyncio.create_task(
        runtime.run_call(transport, call, settings, audio_out_sample_rate=devices.output_rate, observers=[status])
    )
    hanging_up: list[asyncio.Task[None]] = []

    def interrupted() -> None:
        if hanging_up:
            running.cancel()
            return
        status.show(heard="hanging up…")
        hanging_up.append(loop.create_task(transport.hang_up()))

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        with Live(status.render(), console=console, auto_refresh=False, transient=True) as live:
            status.attach(live)
            await running
    except asyncio.CancelledError:
        if not running.cancelled():
            raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return call.call_id
