"""Hang-up and transfer: REST calls that reach the fake Twilio REST API through the twilio
package's base URL, and the stream-closing fallback answered by `after_stream`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.channels.twilio.conftest import (
    ACCOUNT_SID,
    AFTER_STREAM,
    AUTH_TOKEN,
    WEBHOOK,
    twilio_server,
    twilio_settings,
)
from voicecalm.channels.twilio import twiml
from voicecalm.channels.twilio.control import TwilioCallControl, TwilioRest
from voicecalm.channels.twilio.control import PendingHandoffs
from voicecalm.channels.twilio.media import MarkLedger
from voicecalm.testing.twilio_fakes import FakeTwilioRest, RestRequest

CALL_SID = "CA" + "2" * 32
HANDOFF_URL = "https://bot.example.com/webhooks/twilio_media_streams/handoff_result"


@dataclass
class Stream:
    closes: int = 0

    async def close(self) -> None:
        self.closes += 1


def control_for(rest: TwilioRest | None, stream: Stream, handoff: Any = "number") -> TwilioCallControl:
    target = {"number": twilio_settings().handoff, "sip": twilio_settings(handoff={"sip": "sip:desk@pbx.example"}).handoff}
    return TwilioCallControl(
        CALL_SID,
        marks=MarkLedger(lambda _name: None),
        close_stream=stream.close,
        handoff=target.get(handoff),
        handoff_result_url=HANDOFF_URL,
        rest=rest,
        pending=PendingHandoffs(),
    )


async def test_hang_up_sets_the_call_completed_over_rest() -> None:
    stream = Stream()
    async with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN).running() as fake:
        await control_for(TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=fake.base_url), stream).hang_up()
    assert fake.requests == [RestRequest(ACCOUNT_SID, CALL_SID, {"Status": "completed"}, authorized=True)]
    assert stream.closes == 0


async def test_a_call_that_is_already_over_counts_as_hung_up() -> None:
    stream = Stream()
    async with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN).running() as fake:
        fake.ended_calls.add(CALL_SID)
        await control_for(TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=fake.base_url), stream).hang_up()
    assert len(fake.requests) == 1
    assert stream.closes == 0


async def test_a_refused_hang_up_falls_back_to_closing_the_stream() -> None:
    refused, wrong_token = Stream(), Stream()
    async with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN).running() as fake:
        await control_for(TwilioRest(ACCOUNT_SID, "not-the-token", api_base_url=fake.base_url), wrong_token).hang_up()
        fake.failure = (500, 20500)
        await control_for(TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=fake.base_url), refused).hang_up()
    assert [r.authorized for r in fake.requests] == [False, True]
    assert (wrong_token.closes, refused.closes) == (1, 1)


async def test_a_transfer_gives_the_call_the_configured_dial() -> None:
    stream = Stream()
    async with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN).running() as fake:
        rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=fake.base_url)
        to_number = await control_for(rest, stream, "number").transfer()
        to_desk = await control_for(rest, stream, "sip").transfer()
        fake.failure = (400, 21220)
        refused = await control_for(rest, stream, "number").transfer()

    documents = [r.form["Twiml"] for r in fake.requests]
    assert (to_number, to_desk, refused) == (True, True, False)
    assert documents[0] == (
        f'<Response><Dial action="{HANDOFF_URL}" callerId="+15550009999" timeout="25">'
        "<Number>+15550002222</Number></Dial></Response>"
    )
    assert documents[1] == f'<Response><Dial action="{HANDOFF_URL}" timeout="25"><Sip>sip:desk@pbx.example</Sip></Dial></Response>'
    assert stream.closes == 0


async def test_no_transfer_without_a_configured_target() -> None:
    stream = Stream()
    async with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN).running() as fake:
        control = control_for(TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=fake.base_url), stream, handoff=None)
        assert not control.transfer_available
        assert await control.transfer() is False
    assert fake.requests == []


@dataclass
class ControllingRunner:
    """Runs one call-control operation as soon as the call starts."""

    operation: str
    results: list[Any] = field(default_factory=list)

    async def run_call(self, transport: Any, call: Any, settings: Any, *, control: Any, **_: Any) -> None:
        self.results.append(await getattr(control, self.operation)())


async def test_without_rest_credentials_the_stream_closes_and_after_stream_answers() -> None:
    settings = twilio_settings(account_sid=None)
    answers = {}
    for operation in ("transfer", "hang_up"):
        runner = ControllingRunner(operation)
        async with twilio_server(runner, settings, with_rest=False) as server:
            call = server.call()
            await call.start(await call.answer(WEBHOOK))
            await call.wait_for(lambda: call.closed.is_set(), timeout=10)
            first = await call.post(AFTER_STREAM, call.call_parameters())
            again = await call.post(AFTER_STREAM, call.call_parameters())
        answers[operation] = (call.close_code, runner.results, first.text, again.text)

    handoff = settings.handoff
    assert handoff is not None
    dial = twiml.dial(handoff, action_url=HANDOFF_URL)
    assert answers["transfer"] == (1000, [True], dial, twiml.hangup())
    assert answers["hang_up"] == (1000, [None], twiml.hangup(), twiml.hangup())
