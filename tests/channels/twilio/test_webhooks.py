"""The Twilio HTTP routes over real HTTP: signatures checked against the configured public URL,
basic auth, the TwiML answers, and the status callback."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import httpx

from tests.channels.twilio.conftest import (
    AFTER_STREAM,
    HANDOFF_RESULT,
    PUBLIC_HOST,
    STATUS,
    WEBHOOK,
    RecordingRunner,
    twilio_server,
    twilio_settings,
)
from voicecalm.channels.twilio import twiml
from voicecalm.channels.twilio.security import StreamGrant
from voicecalm.channels.twilio.paths import HANDOFF_RESULT_PATH
from voicecalm.testing.twilio_fakes import parse_connect_stream

TEMPLATES = Path(__file__).resolve().parents[3] / "telephony" / "twilio"
STREAM_URL = f"wss://{PUBLIC_HOST}/webhooks/twilio_media_streams/websocket"


async def test_a_signed_call_is_answered_with_a_bidirectional_stream_and_a_one_time_token(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        first, second = server.call(), server.call()
        response = await first.post(WEBHOOK, first.call_parameters())
        other = parse_connect_stream((await second.post(WEBHOOK, second.call_parameters())).text)
    instructions = parse_connect_stream(response.text)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert instructions.stream_url == STREAM_URL
    assert instructions.action_url == f"https://{PUBLIC_HOST}/webhooks/twilio_media_streams/after_stream"
    token = instructions.parameters.pop("token")
    assert instructions.parameters == {
        "call_id": first.call_sid,
        "user_phone": first.caller,
        "bot_phone": first.called,
        "direction": "inbound",
    }
    assert len(token) >= 22  # 128 random bits and more, base64
    assert other.parameters["token"] != token


async def test_the_health_route_answers_ok(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            response = await client.get("/webhooks/twilio_media_streams/")
    assert response.json() == {"status": "ok"}


async def test_unsigned_tampered_or_host_signed_webhooks_are_refused(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        params = call.call_parameters()
        good = call.signature(f"https://{PUBLIC_HOST}{WEBHOOK}", params)
        missing = await call.post(WEBHOOK, params, signature="")
        tampered = await call.post(WEBHOOK, {**params, "From": "+15559999999"}, signature=good)
        # Signed for the URL the request really went to: the Host header must not be trusted.
        host_signed = await call.post(WEBHOOK, params, signature=call.signature(f"{server.base_url}{WEBHOOK}", params))
        wrong_path = await call.post(WEBHOOK, params, signature=call.signature(f"https://{PUBLIC_HOST}{STATUS}", params))
        accepted = await call.post(WEBHOOK, params, signature=good)

    assert [r.status_code for r in (missing, tampered, host_signed, wrong_path)] == [403, 403, 403, 403]
    assert all("token" not in r.text for r in (missing, tampered, host_signed, wrong_path))
    assert accepted.status_code == 200


async def test_basic_auth_is_required_on_the_webhook_when_configured(runner: RecordingRunner) -> None:
    settings = twilio_settings(username="twilio", password="s3cret-pass")
    async with twilio_server(runner, settings) as server:
        call = server.call()
        params = call.call_parameters()
        challenged = await call.post(WEBHOOK, params)
        wrong = await call.post(WEBHOOK, params, auth=("twilio", "guess"))
        accepted = await call.post(WEBHOOK, params, auth=("twilio", "s3cret-pass"))
        unsigned = await call.post(WEBHOOK, params, auth=("twilio", "s3cret-pass"), signature="")

    assert challenged.status_code == 401
    assert challenged.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert accepted.status_code == 200
    assert unsigned.status_code == 403


async def test_after_stream_hangs_up_when_no_transfer_is_pending(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        answered = await call.post(AFTER_STREAM, call.call_parameters())
        unsigned = await call.post(AFTER_STREAM, call.call_parameters(), signature="")

    assert _tags(answered.text) == ["Response", "Hangup"]
    assert unsigned.status_code == 403


async def test_handoff_result_hangs_up_when_the_human_took_the_call_else_brings_the_bot_back(
    runner: RecordingRunner,
) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        taken = await call.post(HANDOFF_RESULT, call.call_parameters(DialCallStatus="completed"))
        busy = await call.post(HANDOFF_RESULT, call.call_parameters(DialCallStatus="busy"))
        no_answer = await call.post(HANDOFF_RESULT, call.call_parameters(DialCallStatus="no-answer"))
        unsigned = await call.post(HANDOFF_RESULT, call.call_parameters(DialCallStatus="busy"), signature="")

    assert _tags(taken.text) == ["Response", "Hangup"]
    for response, outcome in ((busy, "busy"), (no_answer, "no-answer")):
        back = parse_connect_stream(response.text)
        assert back.stream_url == STREAM_URL
        assert back.parameters["handoff_status"] == outcome
        assert back.parameters["call_id"] == call.call_sid
    assert parse_connect_stream(busy.text).parameters["token"] != parse_connect_stream(no_answer.text).parameters["token"]
    assert unsigned.status_code == 403


async def test_the_status_callback_reports_the_call_end(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        unsigned = await call.post(STATUS, call.call_parameters(CallStatus="completed"), signature="")
        recorded = await call.post(STATUS, call.call_parameters(CallStatus="completed", CallDuration="42"))
        busy = await call.post(STATUS, call.call_parameters(CallStatus="busy"))

    assert unsigned.status_code == 403
    assert (recorded.status_code, busy.status_code) == (204, 204)
    assert [(r.call_sid, r.status, r.duration_secs) for r in server.statuses] == [
        (call.call_sid, "completed", 42),
        (call.call_sid, "busy", None),
    ]


async def test_a_signed_request_without_call_parameters_is_a_bad_request(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        response = await call.post(WEBHOOK, {"AccountSid": call.account_sid})
    assert response.status_code == 400


def test_the_twiml_examples_in_telephony_twilio_are_what_the_server_sends() -> None:
    grant = StreamGrant(
        call_sid="CA00000000000000000000000000000001", user_phone="+15550001111", bot_phone="+15550009999"
    )
    urls = {
        "stream_url": STREAM_URL,
        "after_stream_url": f"https://{PUBLIC_HOST}/webhooks/twilio_media_streams/after_stream",
    }
    handoff_url = f"https://{PUBLIC_HOST}{HANDOFF_RESULT_PATH}"
    handoff = twilio_settings().handoff
    sip = twilio_settings(handoff={"sip": "sip:desk@pbx.example", "timeout": 25}).handoff
    assert handoff is not None and sip is not None
    expected = {
        "connect_stream.xml": twiml.connect_stream(token="TOKEN", grant=grant, **urls),
        "handoff_retry.xml": twiml.connect_stream(
            token="TOKEN",
            grant=StreamGrant(grant.call_sid, grant.user_phone, grant.bot_phone, handoff_status="no-answer"),
            **urls,
        ),
        "dial_number.xml": twiml.dial(handoff, action_url=handoff_url),
        "dial_sip.xml": twiml.dial(sip, action_url=handoff_url),
        "hangup.xml": twiml.hangup(),
    }
    for name, document in expected.items():
        assert _shape((TEMPLATES / name).read_text()) == _shape(document), name


def _tags(document: str) -> list[str]:
    return [element.tag for element in ElementTree.fromstring(document).iter()]


def _shape(document: str) -> list[tuple[str, dict[str, str], str]]:
    return [
        (element.tag, dict(element.attrib), (element.text or "").strip())
        for element in ElementTree.fromstring(document.encode()).iter()
    ]
