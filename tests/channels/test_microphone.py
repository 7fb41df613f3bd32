"""The microphone channel through the real PortAudio path (telephony.md §4).

ALSA's `file` plugin plays the sound card: a `.asoundrc` in a temporary HOME defines `fakemic`,
whose samples come from a named pipe this test fills in real time, and `fakespk`, whose samples
go to a named pipe this test drains in real time, so both streams run at a real card's pace
(with the plugin's `null` slave alone, PortAudio would read and write as fast as it can). Each
session runs in a child process, because PortAudio reads the ALSA configuration once per process.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from audio_fixtures.fixture_audio import FIXTURES_DIR, load_transcripts, speech_16k, words_missing
from tests.channels.webrtc.example_call import EXPECTED_FLOW
from voicecalm.channels.microphone import NO_MICROPHONE, NO_PORTAUDIO, StatusLine, half_duplex_settings
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.settings import LocalAudioSettings

REPO = Path(__file__).resolve().parents[2]
PIPELINE_RATE = 16000
SPEAKER_RATE = 44100  # what ALSA's plugins report to PortAudio as their default rate
BLOCK_SECONDS = 0.02
F_SETPIPE_SZ = 1031  # fcntl: a small pipe keeps the fake card's buffer near a real one's
PIPE_BYTES = 4096
ASK_CUSTOMER_NUMBER = (  # the example assistant's first question in the transfer flow
    "First I need to verify you. What's your eight-digit customer number? You can also type it on your keypad."
)


class FakeSoundCard:
    """The two ends of `fakemic` and `fakespk`: what is said into the microphone is written in
    real time (silence in between); what the speaker plays is read in real time and kept."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.home.mkdir()
        microphone, speaker = root / "mic.fifo", root / "spk.fifo"
        os.mkfifo(microphone)
        os.mkfifo(speaker)
        (self.home / ".asoundrc").write_text(
            f'pcm.fakemic {{ type file  slave.pcm "null"  file "/dev/null"  infile "{microphone}"  format "raw" }}\n'
            f'pcm.fakespk {{ type file  slave.pcm "null"  file "{speaker}"  format "raw" }}\n'
        )
        # Opened read-write, neither end blocks waiting for its peer, and ALSA can open them too.
        self._microphone = os.open(microphone, os.O_RDWR)
        self._speaker = os.open(speaker, os.O_RDWR)
        for pipe in (self._microphone, self._speaker):
            fcntl.fcntl(pipe, F_SETPIPE_SZ, PIPE_BYTES)
        self._utterances: queue.Queue[bytes] = queue.Queue()
        self.played = bytearray()
        self._running = True
        self._threads = [
            threading.Thread(target=self._speak, daemon=True),
            threading.Thread(target=self._listen, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def say(self, pcm: bytes) -> None:
        """16 kHz mono s16 audio for the microphone, after what is already queued."""
        self._utterances.put(pcm)

    def environment(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home)}

    def _speak(self) -> None:
        block = round(PIPELINE_RATE * BLOCK_SECONDS) * 2
        pending = b""
        due = time.monotonic()
        while self._running:
            if not pending and not self._utterances.empty():
                pending = self._utterances.get()
            chunk, pending = pending[:block].ljust(block, b"\0"), pending[block:]
            os.write(self._microphone, chunk)  # blocks while the pipe is full (nobody reading yet)
            due = _paced(due, BLOCK_SECONDS)

    def _listen(self) -> None:
        block = round(SPEAKER_RATE * BLOCK_SECONDS) * 2
        due = time.monotonic()
        while self._running:
            played = os.read(self._speaker, block)  # blocks until something plays
            self.played.extend(played)
            due = _paced(due, len(played) / 2 / SPEAKER_RATE)

    def close(self) -> None:
        self._running = False
        for thread in self._threads:
            thread.join(timeout=2)
        os.close(self._microphone)
        os.close(self._speaker)


def _paced(due: float, seconds: float) -> float:
    """Sleep until `seconds` after `due`, never catching up on time spent blocked (a card's clock
    does not)."""
    due = max(due, time.monotonic()) + seconds
    time.sleep(max(0.0, due - time.monotonic()))
    return due


@pytest.fixture
def sound_card(tmp_path: Path) -> Iterator[FakeSoundCard]:
    card = FakeSoundCard(tmp_path)
    yield card
    card.close()


def tone(seconds: float, frequency: float = 440.0, rate: int = PIPELINE_RATE) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16).tobytes()


def run_child(code: str, environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=90
    )


# --- no device, no PortAudio -----------------------------------------------------------------

REPORT_DEVICE_ERROR = """
import asyncio
from voicecalm.channels.microphone import AudioDeviceError, run_microphone
try:
    asyncio.run(run_microphone(None, None, None, None, False))
except AudioDeviceError as error:
    print(error)
"""


def test_without_a_sound_card_the_error_is_one_clear_line(tmp_path: Path) -> None:
    # This container has no sound card: with no .asoundrc, PortAudio finds no device at all.
    done = run_child(REPORT_DEVICE_ERROR, {**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == NO_MICROPHONE
    assert "Traceback" not in done.stderr


def test_without_portaudio_the_error_names_the_debian_package(tmp_path: Path) -> None:
    # sounddevice finds libportaudio through ctypes; a machine without the library gets None.
    without_library = "import ctypes.util\nctypes.util.find_library = lambda name: None\n" + REPORT_DEVICE_ERROR
    done = run_child(without_library, {**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == NO_PORTAUDIO
    assert "libportaudio2" in NO_PORTAUDIO


# --- devices ---------------------------------------------------------------------------------

SELECT = """
import json, sys
from voicecalm.channels.microphone import AudioDeviceError, select_devices
for input_device, output_device in json.loads(sys.argv[1]):
    try:
        devices = select_devices(input_device, output_device)
        print(json.dumps([devices.input.name, devices.input_rate, devices.output.name, devices.output_rate]))
    except AudioDeviceError as error:
        print(json.dumps(str(error)))
"""


def test_devices_are_chosen_by_number_name_or_part_of_a_name(sound_card: FakeSoundCard) -> None:
    choices = [("fakemic", "fakespk"), ("0", "spk"), ("headset", None), ("fake", "fakespk")]
    done = run_child(SELECT, sound_card.environment(), json.dumps(choices))
    assert done.returncode == 0, done.stderr
    by_name, by_number, unknown, ambiguous = (json.loads(line) for line in done.stdout.splitlines())
    # The microphone opens at the pipeline's rate when the device takes it; the speaker at its own.
    assert by_name == ["fakemic", PIPELINE_RATE, "fakespk", SPEAKER_RATE]
    assert by_number == by_name
    assert unknown == "no input device matches 'headset' (--input-device); `voicecalm voice --list-devices` lists them"
    assert ambiguous.startswith("--input-device 'fake' matches several input devices")


LIST = """
from rich.console import Console
from voicecalm.channels.microphone import print_devices
print_devices(Console(width=200))
"""


def test_list_devices_shows_each_device_and_the_defaults(sound_card: FakeSoundCard) -> None:
    done = run_child(LIST, sound_card.environment())
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[2].strip(): line for line in done.stdout.splitlines() if line.count("│") == 8}
    assert set(rows) == {"fakemic", "fakespk"}
    assert "input, output" in rows["fakemic"]  # ALSA's first device is the default both ways here


def test_half_duplex_turns_interruptions_off() -> None:
    settings = LocalAudioSettings(interruptions={"vad_start_secs": 0.5})
    assert settings.interruptions.enabled
    assert not half_duplex_settings(settings).interruptions.enabled


def test_status_line_follows_the_call_and_prints_both_sides() -> None:
    console = Console(record=True, width=120)
    status = StatusLine(console)

    async def push(*frames: pc.Frame) -> None:
        for frame in frames:
            await status.on_push_frame(pc.FramePushed(None, None, frame, pc.FrameDirection.DOWNSTREAM, 0))  # type: ignore[arg-type]

    async def call() -> list[str]:
        seen = [status.status]
        await push(pc.UserStartedSpeakingFrame())
        seen.append(status.status)
        await push(pc.UserStoppedSpeakingFrame(), pc.TranscriptionFrame("I want to transfer money", "caller", "now"))
        seen.append(status.status)
        spoken = pc.TTSTextFrame("Sure.", pc.TextType.SENTENCE)
        await push(pc.AggregatedTextFrame("Sure.", pc.TextType.SENTENCE), pc.BotStartedSpeakingFrame(), spoken)
        seen.append(status.status)
        await push(pc.BotStoppedSpeakingFrame())
        return [*seen, status.status]

    assert asyncio.run(call()) == ["listening", "listening", "thinking", "speaking", "listening"]
    assert console.export_text().splitlines() == ["you: I want to transfer money", "bot: Sure."]
    assert "heard: I want to transfer money" in status.render().plain


# --- audio through PortAudio -----------------------------------------------------------------

ECHO = """
import asyncio, sys
from voicecalm.channels.microphone import LocalAudioTransport, select_devices
from voicecalm.voice import pipecat_api as pc

class Echo(pc.FrameProcessor):
    '''Keeps what the microphone sent and plays it straight back.'''
    def __init__(self):
        super().__init__()
        self.heard = bytearray()

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.InputAudioRawFrame):
            assert frame.sample_rate == 16000 and frame.num_channels == 1
            self.heard.extend(frame.audio)
            frame = pc.OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate, num_channels=1)
        await self.push_frame(frame, direction)

async def main(seconds, heard_path):
    devices = select_devices("fakemic", "fakespk")
    transport = LocalAudioTransport(devices, asyncio.get_running_loop())
    echo = Echo()
    worker = pc.PipelineWorker(
        pc.Pipeline([transport.input(), echo, transport.output()]),
        params=pc.PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=devices.output_rate),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    async def end_later():
        await asyncio.sleep(seconds)
        await worker.queue_frame(pc.EndFrame())
    runner = pc.WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    ending = asyncio.create_task(end_later())
    await runner.run()
    await ending
    open(heard_path, "wb").write(bytes(echo.heard))

asyncio.run(main(float(sys.argv[1]), sys.argv[2]))
"""


def test_microphone_samples_reach_the_pipeline_unchanged_and_the_speaker_plays_them(
    sound_card: FakeSoundCard, tmp_path: Path
) -> None:
    said = tone(1.0, 440) + tone(1.0, 660)
    sound_card.say(said)
    heard_file = tmp_path / "heard.raw"
    done = run_child(ECHO, sound_card.environment(), "4", str(heard_file))
    assert done.returncode == 0, done.stderr[-3000:]
    heard = heard_file.read_bytes()
    # The microphone was opened at 16 kHz, so what the pipeline got is the very bytes said
    # (the card may have delivered a little silence before them).
    start = heard.find(said[:640])
    assert start >= 0 and heard[start : start + len(said)] == said
    assert not any(heard[:start])

    # The speaker played them back, resampled to its rate (an echo in real time may leave a gap
    # or two): the first tone, then the second, each for about its second.
    played = np.frombuffer(bytes(sound_card.played), dtype=np.int16).astype(np.float32)
    window = SPEAKER_RATE // 10
    tones = []
    for start in range(0, played.size - window, window):
        chunk = played[start : start + window]
        if np.sqrt(np.mean(chunk**2)) > 1000:
            spectrum = np.abs(np.fft.rfft(chunk))
            tones.append(round(float(np.argmax(spectrum)) * SPEAKER_RATE / window))
    assert sorted(set(tones)) == [440, 660]
    assert tones == sorted(tones)  # 440 Hz first
    assert tones.count(440) >= 8 and tones.count(660) >= 8


# --- a real turn ------------------------------------------------------------------------------

CALL = """
import asyncio, json, sys
from pathlib import Path
from rich.console import Console
from tests.channels.webrtc.example_call import CommandModel, example_project
from voicecalm.assistant import Assistant
from voicecalm.channels.microphone import run_microphone
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import LocalAudioSettings

async def main(work, events_file):
    model = CommandModel()
    model.thread.start()
    assistant = Assistant.from_path(example_project(Path(work), model.port))
    runtime = VoiceRuntime(assistant)
    settings = LocalAudioSettings()
    try:
        await runtime.warm_up(settings)
        sender = await run_microphone(runtime, settings, "fakemic", "fakespk", False, console=Console(width=200))
        events = (await assistant.conversation(sender)).event_dicts()
        Path(events_file).write_text(json.dumps(events, default=str))
    finally:
        await runtime.close()
        await assistant.close()
        model.server.should_exit = True

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


class ChildOutput:
    """The lines a child process prints, collected as they come."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(child,), daemon=True)
        self._reader.start()

    def _read(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, contains: str, timeout: float, after: int = 0) -> int:
        """The index of the first line from `after` on that starts with `prefix` and contains `contains`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, line in enumerate(self.lines[after:], start=after):
                if line.startswith(prefix) and contains in line:
                    return index
            time.sleep(0.2)
        raise AssertionError(f"no {prefix!r} line with {contains!r} in {self.lines}")


def played_until_quiet(sound_card: FakeSoundCard, after: int, quiet_seconds: float, timeout: float) -> np.ndarray:
    """What the speaker plays from byte `after` on, once it has played something and then
    `quiet_seconds` of silence."""
    quiet = round(SPEAKER_RATE * quiet_seconds)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        played = np.frombuffer(bytes(sound_card.played[after:]), dtype=np.int16)
        sounding = np.flatnonzero(np.abs(played) > 500)
        if sounding.size and played.size - sounding[-1] >= quiet:
            return played
        time.sleep(0.2)
    raise AssertionError("the speaker played nothing, or never went quiet again")


@pytest.mark.slow
def test_one_spoken_turn_through_microphone_and_speaker(sound_card: FakeSoundCard, tmp_path: Path) -> None:
    events_file = tmp_path / "events.json"
    child = subprocess.Popen(
        [sys.executable, "-c", CALL, str(tmp_path / "work"), str(events_file)],
        cwd=REPO,
        env=sound_card.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        output = ChildOutput(child)
        greeting = output.wait_for("bot: ", "How can I help you", timeout=120)
        played_until_quiet(sound_card, 0, quiet_seconds=1.5, timeout=30)  # the greeting
        before_reply = len(sound_card.played)
        sound_card.say(speech_16k(FIXTURES_DIR / "transfer_money.wav").tobytes())
        heard = output.wait_for("you: ", "", timeout=60, after=greeting)
        question = output.wait_for("bot: ", "customer number", timeout=60, after=heard)
        reply = played_until_quiet(sound_card, before_reply, quiet_seconds=1.5, timeout=60)
        child.send_signal(signal.SIGINT)  # Ctrl-C hangs up
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, stderr[-3000:]
    assert "KeyboardInterrupt" not in stderr  # Ctrl-C hung up; it did not tear the process down

    caller_text = load_transcripts()["transfer_money"]
    assert not words_missing(caller_text, output.lines[heard].removeprefix("you: "))
    assert output.lines[question] == f"bot: {ASK_CUSTOMER_NUMBER}"
    # The speaker played the question: seconds of sound, not a click.
    assert np.count_nonzero(np.abs(reply) > 500) > SPEAKER_RATE

    events = json.loads(events_file.read_text())
    request = next(event for event in events if event["event"] == "user" and not event["text"].startswith("/"))
    assert not words_missing(caller_text, request["text"])
    assert request["input_channel"] == "local_audio"
    assert EXPECTED_FLOW in [event["flow_id"] for event in events if event["event"] == "flow_started"]
    ended = [event for event in events if event["event"] == "session_ended"]
    assert ended and ended[-1]["metadata"]["_reason"] == "user disconnected"
