"""Twilio's side of a call, on loopback, for tests and benchmarks: what cannot be reached (Twilio's
cloud) is faked, speaking the real wire protocols.

- `FakeTwilioRest`: the REST API's Call resource on 127.0.0.1; the twilio package reaches it
  through its configurable base URL. It records every request.
- `FakeTwilioCall`: one phone call as Twilio makes it: the signed voice webhook, then the Media
  Streams WebSocket (signed upgrade, `connected`, `start` with the TwiML's parameters, μ-law
  20 ms frames in real time — silence when the caller is quiet —, `dtmf`, `stop`), with a
  playback buffer that plays received media in real time and echoes each `mark` when playback
  reaches it; `clear` empties the buffer and echoes every pending mark at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import time
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
FRAME_SECS = 0.02
ULAW_SILENCE = b"\xff"
TWILIO_API_VERSION = "2010-04-01"


# --- serving on loopback ----------------------------------------------------------------------


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a free 127.0.0.1 port inside this event loop; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# --- REST -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestRequest:
    account_sid: str
    call_sid: str
    form: dict[str, str]
    authorized: bool  # basic auth named the account and its auth token


RestListener = Callable[[RestRequest], None]


class FakeTwilioRest:
    """`POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json` as Twilio answers it. Calls in
    `ended_calls` answer 404 with code 20404; `failure` = (HTTP status, Twilio code) fails every
    update. `listeners` see each accepted update (a fake call leaves its media stream on it, as
    Twilio does after a hang-up or a new TwiML).

    Also the account's phone numbers (`add_number`): `GET .../IncomingPhoneNumbers.json`
    (`PhoneNumber` filter) and `POST .../IncomingPhoneNumbers/{PN}.json`, which updates
    `numbers[PN]` (snake_case keys, as Twilio's JSON has them)."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[RestRequest] = []
        self.ended_calls: set[str] = set()
        self.failure: tuple[int, int] | None = None
        self.listeners: list[RestListener] = []
        self.numbers: dict[str, dict[str, Any]] = {}  # PN sid → the IncomingPhoneNumber resource
        self.base_url = ""
        account = f"/{TWILIO_API_VERSION}/Accounts/{{account}}"
        self.app = Starlette(
            routes=[
                Route(f"{account}/Calls/{{call}}.json", self._update, methods=["POST"]),
                Route(f"{account}/IncomingPhoneNumbers.json", self._list_numbers, methods=["GET"]),
                Route(f"{account}/IncomingPhoneNumbers/{{number}}.json", self._update_number, methods=["POST"]),
            ]
        )

    def add_number(self, phone_number: str) -> str:
        """A number of the account, with no webhooks yet; returns its PN sid."""
        sid = "PN" + secrets.token_hex(16)
        self.numbers[sid] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "phone_number": phone_number,
            "voice_url": None,
            "voice_method": "POST",
            "status_callback": None,
            "status_callback_method": "POST",
            "api_version": TWILIO_API_VERSION,
        }
        return sid

    def _authorized(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.path_params["account"] == self.account_sid and request.headers.get("authorization") == expected

    async def _list_numbers(self, request: Request) -> Response:
        if not self._authorized(request):
            return _twilio_error(401, 20003, "Authenticate")
        wanted = request.query_params.get("PhoneNumber")
        found = [number for number in self.numbers.values() if wanted is None or number["phone_number"] == wanted]
        return JSONResponse(
            {
                "incoming_phone_numbers": found,
                "page": 0,
                "page_size": int(request.query_params.get("PageSize", 50)),
                "start": 0,
                "end": max(len(found) - 1, 0),
                "first_page_uri": str(request.url.path),
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": str(request.url.path),
            }
        )

    async def _update_number(self, request: Request) -> Response:
        if not self._authorized(request):
            return _twilio_error(401, 20003, "Authenticate")
        number = self.numbers.get(request.path_params["number"])
        if number is None:
            return _twilio_error(404, 20404, "The requested resource was not found")
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        number.update({_snake_case(key): value for key, value in form.items()})
        return JSONResponse(number)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeTwilioRest]:
        async with serve_app(self.app) as base_url:
            self.base_url = base_url
            yield self

    def updates(self, call_sid: str) -> list[dict[str, str]]:
        return [request.form for request in self.requests if request.call_sid == call_sid]

    async def _update(self, request: Request) -> Response:
        account, call = request.path_params["account"], request.path_params["call"]
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        recorded = RestRequest(account, call, form, request.headers.get("authorization") == expected)
        self.requests.append(recorded)
        if not recorded.authorized:
            return _twilio_error(401, 20003, "Authenticate")
        if call in self.ended_calls:
            return _twilio_error(404, 20404, f"The requested resource /Calls/{call}.json was not found")
        if self.failure is not None:
            return _twilio_error(self.failure[0], self.failure[1], "Call update refused")
        for listener in self.listeners:
            listener(recorded)
        status = form.get("Status", "in-progress")
        return JSONResponse(
            {"sid": call, "account_sid": account, "status": status, "api_version": TWILIO_API_VERSION, "uri": request.url.path}
        )


def _snake_case(name: str) -> str:
    """`StatusCallbackMethod` → `status_callback_method` (form parameter → JSON key)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    return JSONResponse(body, status_code=status)


# --- a call -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamInstructions:
    """What the TwiML of the voice webhook told Twilio to do."""

    stream_url: str
    parameters: dict[str, str]
    action_url: str | None


def parse_connect_stream(document: str) -> StreamInstructions:
    """`<Response><Connect action><Stream url><Parameter/>...` → its URL, parameters and action."""
    root = ElementTree.fromstring(document)
    connect_element = root.find("Connect")
    stream = connect_element.find("Stream") if connect_element is not None else None
    if connect_element is None or stream is None:
        raise ValueError(f"not a <Connect><Stream> document: {document}")
    parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return StreamInstructions(stream.attrib["url"], parameters, connect_element.attrib.get("action"))


@dataclass(slots=True)
class _Playback:
    """Twilio's playout buffer for one stream: μ-law bytes and mark names, in arrival order."""

    items: deque[bytes | str] = field(default_factory=deque)
    played: bytearray = field(default_factory=bytearray)
    mid_message: bool = False  # audio played since the last mark
    starved: bool = False  # ran dry mid-message
    underruns: int = 0  # times a message's audio ran dry and then went on (an audible gap)
    peak_buffered: int = 0  # most μ-law bytes ever waiting to play (how far the server ran ahead)

    def add_audio(self, audio: bytes) -> None:
        if self.starved:
            self.underruns += 1
            self.starved = False
        self.items.append(audio)
        buffered = sum(len(item) for item in self.items if isinstance(item, bytes))
        self.peak_buffered = max(self.peak_buffered, buffered)

    def tick(self) -> list[str]:
        """Play 20 ms; returns the marks playback passed (to echo)."""
        passed: list[str] = []
        need = FRAME_BYTES
        while self.items and (need > 0 or isinstance(self.items[0], str)):
            item = self.items[0]
            if isinstance(item, str):
                passed.append(self.items.popleft())
                # Running dry right before a mark is the pause after a message, not a gap in it.
                self.mid_message = self.starved = False
                continue
            taken = item[:need]
            self.played += taken
            need -= len(taken)
            self.mid_message = True
            if len(taken) == len(item):
                self.items.popleft()
            else:
                self.items[0] = item[len(taken) :]
        if need == FRAME_BYTES and self.mid_message:
            self.starved = True
        return passed

    def clear(self) -> list[str]:
        marks = [item for item in self.items if isinstance(item, str)]
        self.items.clear()
        self.mid_message = self.starved = False
        return marks


class FakeTwilioCall:
    """One call as Twilio makes it to the server at `server_base_url` (http://127.0.0.1:PORT),
    which believes itself to be `public_host`.

    `answer()` posts the signed voice webhook; `start()` opens the media stream from its TwiML;
    `say()` plays μ-law audio as the caller; `events` holds every message from the server in
    order; `played` is the μ-law the caller has heard."""

    def __init__(
        self,
        server_base_url: str,
        *,
        public_host: str,
        auth_token: str,
        account_sid: str = "AC" + "0" * 32,
        call_sid: str | None = None,
        caller: str = "+15550001111",
        called: str = "+15550009999",
    ) -> None:
        self.server_base_url = server_base_url.rstrip("/")
        self.public_host = public_host
        self.account_sid = account_sid
        self.call_sid = call_sid or "CA" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.caller = caller
        self.called = called
        self._validator = RequestValidator(auth_token)
        self.events: list[dict[str, Any]] = []  # every message from the server, in order
        self.echoed_marks: list[str] = []
        self.protocol_errors: list[str] = []  # what the server sent that Twilio would reject
        self.playback = _Playback()
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._socket: ClientConnection | None = None
        self._outgoing = bytearray()  # caller audio waiting for its 20 ms slot
        self._outgoing_drained = asyncio.Event()
        self._sequence = 0
        self._chunk = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()

    # --- HTTP ---------------------------------------------------------------------------------

    def signature(self, url: str, params: dict[str, str] | None = None) -> str:
        return self._validator.compute_signature(url, params or {})

    def call_parameters(self, **extra: str) -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.caller,
            "To": self.called,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": TWILIO_API_VERSION,
            **extra,
        }

    async def post(
        self, path: str, params: dict[str, str], *, signature: str | None = None, auth: tuple[str, str] | None = None
    ) -> httpx.Response:
        """A signed form POST as Twilio sends it (`signature` overrides the correct one)."""
        signed = signature if signature is not None else self.signature(f"https://{self.public_host}{path}", params)
        headers = {"X-Twilio-Signature": signed} if signed else {}
        async with httpx.AsyncClient(base_url=self.server_base_url, timeout=10) as client:
            return await client.post(path, data=params, headers=headers, auth=auth)

    async def answer(self, path: str, *, auth: tuple[str, str] | None = None) -> StreamInstructions:
        """The voice webhook of an incoming call; its TwiML must be a `<Connect><Stream>`."""
        response = await self.post(path, self.call_parameters(), auth=auth)
        response.raise_for_status()
        return parse_connect_stream(response.text)

    # --- media stream -------------------------------------------------------------------------

    async def start(
        self, instructions: StreamInstructions, *, sign_as: str | None = "wss", parameters: dict[str, str] | None = None
    ) -> None:
        """Open the stream as Twilio would: `connect()`, then `begin()`."""
        await self.connect(instructions, sign_as=sign_as)
        await self.begin(instructions.parameters if parameters is None else parameters)

    async def connect(
        self, instructions: StreamInstructions, *, sign_as: str | None = "wss", signed_url: str | None = None
    ) -> None:
        """The WebSocket upgrade, signed over the TwiML's stream URL (`sign_as` "https" signs its
        https:// form, None sends no signature; `signed_url` signs another URL), then `connected`."""
        parts = urlsplit(instructions.stream_url)
        headers = {}
        if signed_url is None and sign_as is not None:
            signed_url = instructions.stream_url if sign_as == "wss" else instructions.stream_url.replace("wss://", "https://", 1)
        if signed_url is not None:
            headers["X-Twilio-Signature"] = self.signature(signed_url)
        local = urlsplit(self.server_base_url)
        self._socket = await connect(f"ws://{local.netloc}{parts.path}", additional_headers=headers, max_size=2**20)
        self._tasks.append(asyncio.create_task(self._receive()))
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    async def begin(self, parameters: dict[str, str]) -> None:
        """`start` with these custom parameters, then 20 ms media frames until `stop()`."""
        await self.send(
            {
                "event": "start",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "start": {
                    "streamSid": self.stream_sid,
                    "accountSid": self.account_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self._tasks.append(asyncio.create_task(self._media_clock()))

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        """Send one frame (a dict is sent as JSON text)."""
        assert self._socket is not None, "start() first"
        await self._socket.send(json.dumps(message) if isinstance(message, dict) else message)

    async def say(self, ulaw: bytes) -> None:
        """Speak `ulaw` as the caller, in real time; returns once the last frame is sent."""
        self._outgoing += ulaw
        self._outgoing_drained.clear()
        await self._outgoing_drained.wait()

    async def pause(self, seconds: float) -> None:
        """Stay quiet (the stream carries silence) for `seconds`."""
        await self.say(ULAW_SILENCE * int(seconds * 8000))

    async def press(self, digit: str) -> None:
        await self.send(
            {
                "event": "dtmf",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        """The caller hangs up: `stop`, then the socket closes."""
        if self._socket is not None and not self.closed.is_set():
            try:
                await self.send(
                    {
                        "event": "stop",
                        "sequenceNumber": self._next_sequence(),
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                    }
                )
                await self._socket.close()
            except ConnectionClosed:
                pass
        await self.aclose()

    def leave_on_update(self, request: RestRequest) -> None:
        """A `FakeTwilioRest` listener: Twilio leaves the stream once the call got new
        instructions (hang-up or new TwiML)."""
        if request.call_sid == self.call_sid:
            asyncio.get_running_loop().create_task(self.stop())

    async def aclose(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not asyncio.current_task()), return_exceptions=True)
        if self._socket is not None:
            await self._socket.close()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds (checked on every message and playback step)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    # --- what was heard -----------------------------------------------------------------------

    @property
    def media_payloads(self) -> list[bytes]:
        return [base64.b64decode(e["media"]["payload"]) for e in self.events if e.get("event") == "media"]

    @property
    def marks(self) -> list[str]:
        return [e["mark"]["name"] for e in self.events if e.get("event") == "mark"]

    def event_names(self) -> list[str]:
        return [e.get("event", "?") for e in self.events]

    # --- internals ----------------------------------------------------------------------------

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def _media_clock(self) -> None:
        """Every 20 ms of real time: send the next caller frame (silence when quiet) and play
        20 ms of what the server sent."""
        started = time.monotonic()
        while not self.closed.is_set():
            frame = bytes(self._outgoing[:FRAME_BYTES])
            del self._outgoing[:FRAME_BYTES]
            frame += ULAW_SILENCE * (FRAME_BYTES - len(frame))
            self._chunk += 1
            await self._send_quietly(
                {
                    "event": "media",
                    "sequenceNumber": self._next_sequence(),
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(self._chunk),
                        "timestamp": str(int((self._chunk - 1) * FRAME_SECS * 1000)),
                        "payload": base64.b64encode(frame).decode(),
                    },
                }
            )
            if not self._outgoing:
                self._outgoing_drained.set()
            for name in self.playback.tick():
                await self._echo(name)
            await self._notify()
            # Absolute schedule: a late tick is followed by a short one, so no drift builds up.
            await asyncio.sleep(max(0.0, started + self._chunk * FRAME_SECS - time.monotonic()))

    async def _receive(self) -> None:
        assert self._socket is not None
        try:
            async for data in self._socket:
                self._handle(data)
                if self.events and self.events[-1].get("event") == "clear":
                    for name in self.playback.clear():
                        await self._echo(name)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._socket.close_code
            self.closed.set()
            self._outgoing_drained.set()
            await self._notify()

    def _handle(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.protocol_errors.append("binary frame (Twilio accepts JSON text only)")
            return
        message = json.loads(data)
        self.events.append(message)
        event = message.get("event")
        if message.get("streamSid") != self.stream_sid:
            self.protocol_errors.append(f"{event} for stream {message.get('streamSid')!r}")
        if event == "media":
            audio = base64.b64decode(message["media"]["payload"], validate=True)
            if audio[:4] == b"RIFF":
                self.protocol_errors.append("media payload with a WAV header")
            self.playback.add_audio(audio)
        elif event == "mark":
            self.playback.items.append(message["mark"]["name"])
        elif event != "clear":
            self.protocol_errors.append(f"unknown event {event!r}")

    async def _echo(self, name: str) -> None:
        self.echoed_marks.append(name)
        await self._send_quietly(
            {"event": "mark", "sequenceNumber": self._next_sequence(), "streamSid": self.stream_sid, "mark": {"name": name}}
        )

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        """Send unless the server has closed the socket meanwhile (that shows in `close_code`)."""
        try:
            await self.send(message)
        except ConnectionClosed:
            pass

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
