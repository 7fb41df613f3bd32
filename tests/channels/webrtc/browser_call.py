"""One browser call, run inside a private network namespace that has only `lo` (telephony.md §3):
the voicecalm server (REST, tracker and WebRTC routes) with the example assistant, and Debian's
Chromium, headless, whose microphone is a WAV file. Chromium is driven over the DevTools
protocol: it opens the demo page and starts the call. The caller's spoken request should start
the transfer flow, and the bot's question be heard; the customer number is then keyed on the
page's keypad (DTMF over the data channel) and the passcode typed into its text box (the REST
channel, same conversation). What the page showed and what the tracker holds are written to
`<out>/result.json`, with a screenshot in `<out>/page.png`; `test_browser.py` asserts on them.

    unshare -n sh -c 'ip link set lo up && exec "$@"' sh python -m tests.channels.webrtc.browser_call WAV OUT
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioice.ice
import uvicorn
import websockets
from fastapi import FastAPI

from tests.channels.webrtc.example_call import CUSTOMER_NUMBER, EXPECTED_FLOW, PASSCODE, CommandModel, example_project
from voicecalm.assistant import Assistant
from voicecalm.channels.webrtc import webrtc_router
from voicecalm.server import create_app
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import BrowserAudioSettings

SPOKEN_TIMEOUT = 150.0  # seconds for the flow to start and the bot's question to be heard
KEYED_TIMEOUT = 45.0
TYPED_TIMEOUT = 30.0
HANG_UP_TIMEOUT = 30.0
CHROMIUM_FLAGS = [  # telephony.md §3
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
PAGE_STATE = """JSON.stringify({
    status: document.getElementById("status").textContent,
    sender: document.getElementById("sender").textContent,
    flow: document.getElementById("flow").textContent,
    slots: Object.fromEntries([...document.querySelectorAll("#slots tr")]
        .filter((row) => row.cells.length === 2).map((row) => [row.cells[0].textContent, row.cells[1].textContent])),
    log: [...document.querySelectorAll("#log li")].map((item) => [item.className, item.textContent]),
    audio_energy: Number(document.getElementById("audio-energy").dataset.energy),
})"""
CLICK_CALL = 'document.getElementById("call").click()'
KEY_CUSTOMER_NUMBER = f"""
    const keys = [...document.querySelectorAll("#keypad button")];
    for (const digit of "{CUSTOMER_NUMBER}") keys.find((key) => key.textContent === digit).click();
"""
TYPE_PASSCODE = f"""
    document.getElementById("message").value = "{PASSCODE}";
    document.getElementById("typed").requestSubmit();
"""

Page = dict[str, Any]


def loopback_only_ice() -> None:
    """aioice leaves out 127.0.0.1 when it gathers host candidates; here it is the only address."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def bot_lines(page: Page) -> int:
    return sum(1 for kind, _ in page["log"] if kind == "bot")


class DevTools:
    """A minimal Chrome DevTools protocol client: commands with replies, and the events seen."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._connection:
            message = json.loads(raw)
            if "id" in message:
                self._replies.pop(message["id"]).set_result(message)
            else:
                self.events.append(message)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        request: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params}
        if session is not None:
            request["sessionId"] = session
        reply = asyncio.get_running_loop().create_future()
        self._replies[request["id"]] = reply
        await self._connection.send(json.dumps(request))
        message = await asyncio.wait_for(reply, timeout=30)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]

    async def wait_for_event(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(event["method"] == method for event in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            await asyncio.sleep(0.1)

    def console_lines(self) -> list[str]:
        """What the page logged, and its uncaught exceptions."""
        lines = []
        for event in self.events:
            if event["method"] == "Runtime.consoleAPICalled":
                args = event["params"]["args"]
                lines.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in args))
            elif event["method"] == "Runtime.exceptionThrown":
                lines.append(event["params"]["exceptionDetails"].get("text", "exception"))
        return lines


class DemoPage:
    """The demo page in a Chromium tab."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    @classmethod
    async def open(cls, devtools: DevTools, url: str) -> DemoPage:
        target = await devtools.call("Target.createTarget", url="about:blank")
        session = (await devtools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
        page = cls(devtools, session)
        size = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}  # for the screenshot
        await devtools.call("Emulation.setDeviceMetricsOverride", session, **size)
        await devtools.call("Page.enable", session)
        await devtools.call("Runtime.enable", session)
        await devtools.call("Page.navigate", session, url=url)
        await devtools.wait_for_event("Page.loadEventFired", timeout=30)
        return page

    async def run(self, script: str) -> Any:
        result = await self.devtools.call("Runtime.evaluate", self.session, expression=script, returnByValue=True)
        return result["result"].get("value")

    async def state(self) -> Page:
        return json.loads(await self.run(PAGE_STATE))

    async def until(self, done: Callable[[Page], bool], timeout: float) -> Page:
        """The page once `done` holds for it, or as it is when `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.sleep(1)
            page = await self.state()
            if done(page) or time.monotonic() > deadline:
                return page

    async def screenshot(self, path: Path) -> None:
        shot = await self.devtools.call("Page.captureScreenshot", self.session, format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[int]:
    """Serve `app` on a free loopback port until the block ends (lifespan included); yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=15))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def chromium(caller_wav: Path, profile: Path, log: Path) -> AsyncIterator[DevTools]:
    """Debian's Chromium with `caller_wav` as its microphone, ended (that process) when the block ends."""
    with log.open("wb") as output:
        browser = subprocess.Popen(
            [
                shutil.which("chromium") or "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--use-file-for-fake-audio-capture={caller_wav}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            async with websockets.connect(await devtools_endpoint(profile, browser), max_size=None) as connection:
                yield DevTools(connection)
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=15)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


async def devtools_endpoint(profile: Path, browser: subprocess.Popen[bytes]) -> str:
    """The browser's DevTools websocket URL, from the file Chromium writes once it listens."""
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not active_port.exists() or len(active_port.read_text().splitlines()) < 2:
        if browser.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Chromium did not start its DevTools server (exit code {browser.poll()})")
        await asyncio.sleep(0.1)
    port, path = active_port.read_text().splitlines()[:2]
    return f"ws://127.0.0.1:{port}{path}"


async def session_ended(assistant: Assistant, sender: str, timeout: float) -> list[dict[str, Any]]:
    """The conversation's events once the hung-up call has recorded the end of its session."""
    deadline = time.monotonic() + timeout
    while True:
        events = (await assistant.conversation(sender)).event_dicts()
        if any(event["event"] == "session_ended" for event in events) or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.5)


async def browser_call(caller_wav: Path, out: Path, work: Path) -> dict[str, Any]:
    model = CommandModel()
    model.thread.start()
    assistant = Assistant.from_path(example_project(work, model.port))
    runtime = VoiceRuntime(assistant)
    settings = BrowserAudioSettings()
    await runtime.warm_up(settings)  # the speech models load before the browser starts its call
    app = create_app(assistant)
    app.include_router(webrtc_router(lambda: runtime, settings))
    try:
        async with (
            serving(app) as port,
            chromium(caller_wav, work / "chromium-profile", out / "chromium.log") as devtools,
        ):
            page = await DemoPage.open(devtools, f"http://127.0.0.1:{port}/")
            await page.run(CLICK_CALL)
            spoken = await page.until(
                lambda page: page["flow"] == EXPECTED_FLOW and page["audio_energy"] > 0 and bot_lines(page) >= 2,
                SPOKEN_TIMEOUT,
            )
            await page.run(KEY_CUSTOMER_NUMBER)
            keyed = await page.until(lambda page: "auth_customer_number" in page["slots"], KEYED_TIMEOUT)
            await page.run(TYPE_PASSCODE)
            typed = await page.until(lambda page: page["slots"].get("authenticated") == "true", TYPED_TIMEOUT)
            await page.screenshot(out / "page.png")
            await page.run(CLICK_CALL)  # hang up
            events = await session_ended(assistant, typed["sender"], HANG_UP_TIMEOUT)
            console = devtools.console_lines()
    finally:
        model.server.should_exit = True
    return {
        "spoken": spoken,
        "keyed": keyed,
        "typed": typed,
        "console": console,
        "latest_messages": model.latest_messages,
        "events": events,
    }


def main() -> None:
    caller_wav, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    loopback_only_ice()
    with tempfile.TemporaryDirectory(prefix="browser-call-") as work:
        result = asyncio.run(browser_call(caller_wav, out, Path(work)))
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
