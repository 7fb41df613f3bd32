"""`voicecalm run` serves the voice channels credentials.yml enables: Twilio Media Streams, the
browser demo page, a SIP trunk; one voice runtime over the REST channel's assistant."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.channels.sip.sipp import free_udp_port
from tests.channels.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_HOST, STATUS, WEBHOOK
from tests.dialogue.conftest import BANK
from voicecalm.assistant import Assistant, UserTurn
from voicecalm.server import create_app
from voicecalm.testing.twilio_fakes import FakeTwilioCall, serve_app
from voicecalm.tracker.events import CallStatusChanged, event_from_dict
from voicecalm.voice.settings import VoiceSettingsError

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from voicecalm.cli import app; app()"]
TWILIO = {"server_url": PUBLIC_HOST, "auth_token": AUTH_TOKEN, "account_sid": ACCOUNT_SID}
START_TIMEOUT = 180.0  # the speech models load before the server listens; CI shares two cores
TWILIO_HEALTH = "/webhooks/twilio_media_streams/"


def project_with(root: Path, credentials: dict[str, Any]) -> Path:
    """The test bank (no language model), with `credentials` as its credentials.yml."""
    project = root / "bank"
    shutil.copytree(BANK, project)
    (project / "credentials.yml").write_text(yaml.safe_dump({"rest": {}, **credentials}))
    return project


def run_cli(*args: str, **popen: Any) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([*CLI, *args], env=environment, text=True, **popen)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_server_mounts_the_voice_channels_of_credentials_yml(tmp_path: Path) -> None:
    project = project_with(tmp_path, {"twilio_media_streams": TWILIO, "browser_audio": {}})
    assistant = Assistant.from_path(project)
    app = create_app(assistant)

    async with serve_app(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            twilio_health = await client.get(TWILIO_HEALTH)
            page = await client.get("/")
        caller = FakeTwilioCall(base_url, public_host=PUBLIC_HOST, auth_token=AUTH_TOKEN)
        stream = await caller.answer(WEBHOOK)  # signed with the auth token of credentials.yml

    assert twilio_health.json() == {"status": "ok"}
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert stream.stream_url == f"wss://{PUBLIC_HOST}/webhooks/twilio_media_streams/websocket"
    assert app.state.voice_runtime.assistant is assistant  # calls and REST turns share conversations


async def test_a_channel_that_is_not_enabled_is_not_mounted(tmp_path: Path) -> None:
    app = create_app(Assistant.from_path(project_with(tmp_path, {"browser_audio": {}})))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://server") as client:
        page = await client.get("/")
        twilio_health = await client.get(TWILIO_HEALTH)

    assert page.status_code == 200
    assert twilio_health.status_code == 404


async def test_a_status_callback_is_recorded_on_the_calls_tracker_and_nowhere_else(tmp_path: Path) -> None:
    assistant = Assistant.from_path(project_with(tmp_path, {"twilio_media_streams": TWILIO}))
    known = "CA" + "a" * 32
    await assistant.handle(known, UserTurn(text="/session_start", input_channel="twilio_media_streams"))

    async with serve_app(create_app(assistant)) as base_url:
        call = FakeTwilioCall(base_url, public_host=PUBLIC_HOST, auth_token=AUTH_TOKEN, call_sid=known)
        stranger = FakeTwilioCall(base_url, public_host=PUBLIC_HOST, auth_token=AUTH_TOKEN)
        ended = await call.post(STATUS, call.call_parameters(CallStatus="completed", CallDuration="42"))
        busy = await stranger.post(STATUS, stranger.call_parameters(CallStatus="busy"))
        async with httpx.AsyncClient(base_url=base_url) as client:
            tracker = (await client.get(f"/conversations/{known}/tracker")).json()
        strangers_events = await assistant.store.events(stranger.call_sid)

    assert ended.status_code == busy.status_code == 204
    [status] = [event for event in tracker["events"] if event["event"] == "call_status"]
    assert status["status"] == "completed"
    assert status["metadata"] == {"channel": "twilio_media_streams", "duration_secs": 42}
    assert isinstance(event_from_dict(status), CallStatusChanged)  # stores read it back
    assert strangers_events == []  # no tracker for a call this assistant never talked to


def test_a_missing_twilio_auth_token_is_a_start_up_error_naming_credentials_yml(tmp_path: Path) -> None:
    project = project_with(tmp_path, {"twilio_media_streams": {"server_url": PUBLIC_HOST}})

    with pytest.raises(VoiceSettingsError) as raised:
        create_app(Assistant.from_path(project))
    cli = run_cli("run", str(project), "--port", str(free_tcp_port()), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = cli.communicate(timeout=120)

    message = "credentials.yml: twilio_media_streams.auth_token: Field required"
    assert str(raised.value) == message
    assert cli.returncode == 1
    assert stderr.splitlines()[-1] == f"cannot start {project}: {message}"
    assert "Traceback" not in stderr and "Serving" not in stdout


def test_several_workers_are_refused_with_a_sip_trunk(tmp_path: Path) -> None:
    project = project_with(tmp_path, {"sip": {"listen": "127.0.0.1:5060", "user": "bot", "domain": "127.0.0.1"}})

    cli = run_cli("run", str(project), "--workers", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = cli.communicate(timeout=120)

    assert cli.returncode == 2
    assert "`sip` in credentials.yml needs a single worker" in stderr and "Traceback" not in stderr


async def test_run_with_a_sip_trunk_answers_sip_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    sip_port, http_port = free_udp_port(), free_tcp_port()
    project = project_with(tmp_path, {"sip": {"listen": f"127.0.0.1:{sip_port}", "user": "bot", "domain": "127.0.0.1"}})
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = run_cli("run", str(project), "--port", str(http_port), stdout=output, stderr=subprocess.STDOUT)
    try:
        await until_healthy(server, f"http://127.0.0.1:{http_port}", log)
        answer = await sip_options(sip_port)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            exit_code = server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
    output_text = log.read_text()

    assert answer.startswith("SIP/2.0 "), answer  # the user agent is up and answers on the trunk's port
    # uvicorn shuts down, then re-raises the SIGTERM it caught: the usual "stopped by signal" exit.
    assert exit_code in (0, -signal.SIGTERM), output_text
    assert "Application shutdown complete" in output_text and "baresip.runtime: runtime closed" in output_text
    assert f"SIP trunk: bot@127.0.0.1, listening on 127.0.0.1:{sip_port}" in output_text
    assert "Traceback" not in output_text and "ERROR" not in output_text, output_text
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", sip_port))  # released at shutdown


async def until_healthy(server: subprocess.Popen[str], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no answer in {START_TIMEOUT:.0f} s:\n{log.read_text()}"
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def sip_options(port: int, timeout: float = 10.0) -> str:
    """Send a SIP OPTIONS to the user agent on 127.0.0.1:`port`; its answer's first line."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not received.done():
                received.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port))
    local_port = transport.get_extra_info("sockname")[1]
    request = (
        f"OPTIONS sip:bot@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-vc-options;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:test@127.0.0.1:{local_port}>;tag=vc-options\r\n"
        f"To: <sip:bot@127.0.0.1:{port}>\r\n"
        "Call-ID: vc-options-probe@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:test@127.0.0.1:{local_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    try:
        transport.sendto(request.encode())
        data = await asyncio.wait_for(received, timeout)
    finally:
        transport.close()
    return data.decode("utf-8", "replace").splitlines()[0]
