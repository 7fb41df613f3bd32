"""Fuzzing what a Media Streams socket may receive: any bytes, any JSON, Twilio-shaped messages
with wrong fields. Parsing never raises anything but its two refusals; the serializer never
raises; a socket never opens a call (nor writes a tracker) without a token; a call survives
garbage and goes on."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.channels.twilio.conftest import AUTH_TOKEN, PUBLIC_HOST, WEBHOOK, RecordingRunner, twilio_server, twilio_settings
from voicecalm.channels.twilio.routes import twilio_router
from voicecalm.channels.twilio.media import MarkLedger, MediaStreamSerializer
from voicecalm.channels.twilio.messages import BadFrame, FrameTooLarge, parse_frame
from voicecalm.channels.twilio.paths import WEBSOCKET_PATH
from voicecalm.testing.action_server import free_port
from voicecalm.testing.twilio_fakes import FakeTwilioCall
from voicecalm.voice import pipecat_api as pc

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENTS = ["connected", "start", "media", "dtmf", "mark", "stop", "clear", "someday", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=()), max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
payloads = st.one_of(st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=40), scalars)
bodies = {
    "media": st.fixed_dictionaries(
        {"payload": payloads}, optional={"track": scalars, "chunk": scalars, "timestamp": scalars}
    ),
    "dtmf": st.fixed_dictionaries({"digit": st.one_of(st.sampled_from(list("0123456789*#ABCDx")), scalars)}),
    "mark": st.fixed_dictionaries({"name": st.one_of(st.text(max_size=20), scalars)}),
    "stop": st.fixed_dictionaries({"accountSid": scalars, "callSid": scalars}),
    "start": st.fixed_dictionaries(
        {"streamSid": scalars, "callSid": scalars, "customParameters": st.one_of(json_values, st.dictionaries(st.text(max_size=10), st.text(max_size=40)))},
        optional={"mediaFormat": json_values, "accountSid": scalars},
    ),
}


@st.composite
def twilio_shaped(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(EVENTS))
    message: dict[str, Any] = {
        "event": event,
        "sequenceNumber": draw(st.one_of(st.integers(0, 10).map(str), scalars)),
        "streamSid": draw(st.sampled_from(["MZ1", "MZ2", ""])),
    }
    if event in bodies and draw(st.booleans() | st.just(True)):
        message[event] = draw(bodies[event])
    elif draw(st.booleans()):
        message[event or "x"] = draw(json_values)
    return message


frames = st.one_of(
    st.binary(max_size=300),
    st.text(st.characters(blacklist_categories=()), max_size=300),
    json_values.map(json.dumps),
    twilio_shaped().map(json.dumps),
)


@FUZZ
@given(frames)
def test_parsing_any_frame_gives_a_message_or_one_of_two_refusals(data: str | bytes) -> None:
    try:
        parse_frame(data)
    except (BadFrame, FrameTooLarge):
        pass


def test_parsing_refuses_deep_nesting_and_huge_frames() -> None:
    with pytest.raises(BadFrame):
        parse_frame("[" * 5000 + "]" * 5000)
    with pytest.raises(FrameTooLarge):
        parse_frame("[" * 70_000)


@FUZZ
@given(st.lists(frames, min_size=1, max_size=8))
def test_the_serializer_never_raises_and_yields_only_audio_or_keys(batch: list[str | bytes]) -> None:
    async def run() -> list[pc.Frame | None]:
        closed: list[int] = []

        async def close(code: int, reason: str) -> None:
            closed.append(code)

        serializer = MediaStreamSerializer("MZ1", MarkLedger(lambda _name: None), close)
        await serializer.setup(SimpleNamespace(audio_in_sample_rate=16_000))  # type: ignore[arg-type]
        return [await serializer.deserialize(data) for data in batch]

    results = asyncio.run(run())
    assert all(r is None or isinstance(r, (pc.InputAudioRawFrame, pc.InputDTMFFrame)) for r in results)


# --- over a real socket ------------------------------------------------------------------------


@dataclass
class ThreadedServer:
    runner: RecordingRunner
    port: int
    server: uvicorn.Server = field(repr=False)

    def upgrade_headers(self) -> dict[str, str]:
        url = f"wss://{PUBLIC_HOST}{WEBSOCKET_PATH}"
        return {"X-Twilio-Signature": FakeTwilioCall("", public_host=PUBLIC_HOST, auth_token=AUTH_TOKEN).signature(url)}


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[ThreadedServer]:
    """The channel in a server thread of its own, for the synchronous Hypothesis tests."""
    runner = RecordingRunner()
    app = FastAPI()
    app.include_router(twilio_router(lambda: runner, twilio_settings()))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield ThreadedServer(runner, port, server)
    server.should_exit = True
    thread.join(timeout=10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(frames, min_size=1, max_size=5))
def test_no_frames_without_a_token_open_a_call(threaded_server: ThreadedServer, batch: list[str | bytes]) -> None:
    url = f"ws://127.0.0.1:{threaded_server.port}{WEBSOCKET_PATH}"
    with connect(url, additional_headers=threaded_server.upgrade_headers(), open_timeout=10) as socket:
        try:
            for data in batch:
                socket.send(data)
        except ConnectionClosed:
            pass
    assert threaded_server.runner.calls == []


@dataclass
class KeysRunner:
    """input → a key recorder → output, until the caller leaves."""

    keys: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run_call(self, transport: Any, call: Any, settings: Any, *, audio_out_sample_rate: int, **_: Any) -> None:
        keys = self.keys

        class KeyRecorder(pc.FrameProcessor):
            async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
                await super().process_frame(frame, direction)
                if isinstance(frame, pc.InputDTMFFrame):
                    keys.append(frame.button.value)
                await self.push_frame(frame, direction)

        worker = pc.PipelineWorker(
            pc.Pipeline([transport.input(), KeyRecorder(), transport.output()]),
            params=pc.PipelineParams(audio_in_sample_rate=16_000, audio_out_sample_rate=audio_out_sample_rate),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def caller_left(*_: Any) -> None:
            await worker.cancel()

        runner = pc.WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        self.started.set()
        await runner.run()


async def test_a_call_survives_garbage_frames_and_goes_on() -> None:
    runner = KeysRunner()
    garbage: list[str | bytes] = [
        b"\x00\xff" * 50,
        "not json",
        "[]",
        '{"event": 5}',
        '{"event": "media", "sequenceNumber": "9", "streamSid": "MZ-other", "media": {"payload": "AAAA"}}',
        '{"event": "media", "streamSid": "MZ", "media": {"payload": "%%%"}}',
        '{"event": "dtmf", "sequenceNumber": "3", "dtmf": {"digit": 7}}',
        '{"event": "mark", "sequenceNumber": "4", "mark": {"name": "never-sent"}}',
        '{"event": "start", "sequenceNumber": "1"}',
        '{"event": "future", "sequenceNumber": "5"}',
        "[" * 5000,
    ]
    async with twilio_server(runner) as server:
        call = server.call()
        await call.start(await call.answer(WEBHOOK))
        async with asyncio.timeout(10):
            await runner.started.wait()
        for data in garbage:
            await call.send(data)
        await call.press("7")
        await call.wait_for(lambda: runner.keys == ["7"], timeout=10)
        still_open = not call.closed.is_set()
        await call.stop()

    assert still_open
    assert call.protocol_errors == []
