"""The browser channel's routes against a real WebRTC peer: aiortc plays the browser, over
loopback, and the call runs a small scripted pipeline instead of the speech models (the real
pipeline with a real browser is `test_browser.py`). It checks the offer/answer protocol,
renegotiation, trickle ICE, the page's keypad reaching the pipeline as DTMF, and the messages
the page is sent over the data channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aioice.ice
import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from fastapi import FastAPI

from tests.channels.webrtc.browser_call import serving
from tests.dialogue.conftest import BANK
from voicecalm.assistant import Assistant
from voicecalm.channels.webrtc import webrtc_router
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallInfo
from voicecalm.voice.settings import BrowserAudioSettings, VoiceChannelSettings

TONE_RATE = 48000


class KeypadEcho(pc.FrameProcessor):
    """Answers each key with what a voice pipeline would make of it: a transcript, a bot
    message, and half a second of tone played to the caller."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, pc.InputDTMFFrame):
            self.keys.append(frame.button.value)
            await self.push_frame(pc.TranscriptionFrame(f"key {frame.button.value}", "caller", pc.time_now_iso8601()))
            message = pc.AggregatedTextFrame(f"You pressed {frame.button.value}.", pc.TextType.SENTENCE)
            message.metadata["message_id"] = f"message-{len(self.keys)}"
            await self.push_frame(message)
            t = np.arange(TONE_RATE // 2) / TONE_RATE
            tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).tobytes()
            await self.push_frame(pc.TTSAudioRawFrame(tone, TONE_RATE, 1))
            await self.push_frame(pc.TTSStoppedFrame())


class ScriptedRuntime:
    """What the router needs of a `VoiceRuntime`: its assistant, and `run_call`."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.calls: list[tuple[CallInfo, int]] = []
        self.echo = KeypadEcho()
        self.ended = asyncio.Event()

    async def run_call(
        self,
        transport: pc.BaseTransport,
        call: CallInfo,
        settings: VoiceChannelSettings,
        *,
        audio_out_sample_rate: int,
        observers: list[Any],
    ) -> None:
        self.calls.append((call, audio_out_sample_rate))
        worker = pc.PipelineWorker(
            pc.Pipeline([transport.input(), self.echo, transport.output()]),
            params=pc.PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=audio_out_sample_rate),
            enable_rtvi=False,
            idle_timeout_secs=None,
            observers=observers,
        )

        @transport.event_handler("on_client_disconnected")
        async def hung_up(*_: Any) -> None:
            await worker.cancel()

        runner = pc.WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
        self.ended.set()


class Browser:
    """An aiortc peer that behaves like the demo page: microphone track, data channel, offer."""

    def __init__(self) -> None:
        self.peer = RTCPeerConnection()
        self.channel = self.peer.createDataChannel("voicecalm", ordered=True)
        self.messages: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.peer.addTrack(AudioStreamTrack())
        self.channel.on("message", lambda raw: self.messages.append(json.loads(raw)))
        self._players: list[asyncio.Task[None]] = []
        self.peer.on("track", lambda track: self._players.append(asyncio.create_task(self._play(track))))

    async def _play(self, track: Any) -> None:
        """What a speaker would play: the bot's track, until it ends."""
        try:
            while True:
                frame = await track.recv()
                self.audio.extend(frame.to_ndarray().tobytes())
        except MediaStreamError:
            return

    async def offer(self, **extra: Any) -> dict[str, Any]:
        await self.peer.setLocalDescription(await self.peer.createOffer())
        return {"sdp": self.peer.localDescription.sdp, "type": "offer", **extra}

    async def answered(self, answer: dict[str, Any]) -> None:
        await self.peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    async def wait_for(self, condition: Any, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def server(loopback_ice: None) -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedRuntime]]:
    assistant = Assistant.from_path(BANK)
    runtime = ScriptedRuntime(assistant)
    app = FastAPI()
    app.include_router(webrtc_router(lambda: runtime, BrowserAudioSettings()))
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        yield client, runtime
    await assistant.close()


async def test_the_page_and_its_files_are_served(server: tuple[httpx.AsyncClient, ScriptedRuntime]) -> None:
    client, _ = server
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("app.js", "style.css"):
        assert f"/webrtc/{name}" in page.text
        assert (await client.get(f"/webrtc/{name}")).status_code == 200
    assert (await client.get("/webrtc/index.html")).status_code == 404


async def test_a_call_answers_renegotiates_and_carries_keys_and_page_messages(
    server: tuple[httpx.AsyncClient, ScriptedRuntime],
) -> None:
    client, runtime = server
    browser = Browser()
    response = await client.post("/api/offer", json=await browser.offer(requestData={"from": "page"}))
    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "answer" and answer["pc_id"].startswith("SmallWebRTCConnection")
    assert "a=candidate:" in answer["sdp"] and "127.0.0.1" in answer["sdp"]  # gathered before answering
    await browser.answered(answer)
    await browser.wait_for(lambda: browser.channel.readyState == "open" and runtime.calls)
    call, out_rate = runtime.calls[0]
    assert (call.call_id, call.channel, out_rate) == (answer["pc_id"], "browser_audio", 48000)

    # Trickle ICE: an end-of-candidates marker for a known connection; unknown ones are refused.
    patch = {"pc_id": answer["pc_id"], "candidates": [{"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]}
    assert (await client.patch("/api/offer", json=patch)).status_code == 200
    assert (await client.patch("/api/offer", json={**patch, "pc_id": "nobody"})).status_code == 404

    # The keypad: a key is an InputDTMFFrame in the pipeline; anything else on the channel is ignored.
    browser.channel.send(json.dumps({"type": "chat", "text": "hello"}))
    browser.channel.send(json.dumps({"type": "dtmf", "digit": "12"}))
    browser.channel.send(json.dumps({"type": "dtmf", "digit": "5"}))
    await browser.wait_for(lambda: any(message["type"] == "state" for message in browser.messages))
    assert runtime.echo.keys == ["5"]
    # The page is told what was heard, what the bot says, and (once the bot has spoken) the state.
    await runtime.assistant.set_slots(call.call_id, {"amount": 25.0})
    assert browser.messages[:2] == [
        {"type": "transcript", "text": "key 5"},
        {"type": "bot_text", "text": "You pressed 5.", "message_id": "message-1"},
    ]
    assert browser.messages[2]["type"] == "state" and browser.messages[2]["flow"] is None
    state = (await client.get(f"/api/state/{quote(call.call_id, safe='')}")).json()  # the id has a '#'

    assert state == {"type": "state", "flow": None, "stack": [], "slots": {"amount": 25.0}}
    # and it hears the bot.
    await browser.wait_for(lambda: np.abs(np.frombuffer(bytes(browser.audio), dtype=np.int16)).max(initial=0) > 1000)

    # The same pc_id renegotiates the connection rather than starting a second call.
    renegotiated = await client.post("/api/offer", json=await browser.offer(pc_id=answer["pc_id"]))
    assert renegotiated.json()["pc_id"] == answer["pc_id"]
    await browser.answered(renegotiated.json())
    assert len(runtime.calls) == 1

    # The browser hangs up: the call ends.
    await browser.peer.close()
    await asyncio.wait_for(runtime.ended.wait(), timeout=30)


async def test_a_bad_offer_is_refused(server: tuple[httpx.AsyncClient, ScriptedRuntime]) -> None:
    client, runtime = server
    assert (await client.post("/api/offer", json={"sdp": "v=0", "type": "answer"})).status_code == 422
    assert (await client.post("/api/offer", json={"type": "offer"})).status_code == 422
    assert runtime.calls == []


async def test_stopping_the_server_hangs_up_its_calls(loopback_ice: None) -> None:
    assistant = Assistant.from_path(BANK)
    runtime = ScriptedRuntime(assistant)
    app = FastAPI()
    app.include_router(webrtc_router(lambda: runtime, BrowserAudioSettings()))
    browser = Browser()
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        answer = (await client.post("/api/offer", json=await browser.offer())).json()
        await browser.answered(answer)
        await browser.wait_for(lambda: browser.channel.readyState == "open" and runtime.calls)
    # The server's shutdown (the router's lifespan) closed the peer connection and waited for the call.
    assert runtime.ended.is_set()
    await browser.wait_for(lambda: browser.peer.connectionState == "closed")
    await browser.peer.close()
    await assistant.close()
