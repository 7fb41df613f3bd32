"""Who may open a media stream: a signed upgrade, then `start` in time with the one-time token
of the call's signed webhook. Everything else is closed before any call (or tracker) begins."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.exceptions import InvalidStatus

from tests.channels.twilio.conftest import AUTH_TOKEN, PUBLIC_HOST, WEBHOOK, RecordingRunner, twilio_server
from voicecalm.channels.twilio import routes
from voicecalm.channels.twilio.security import StreamTokens
from voicecalm.channels.twilio.media import CLOSE_POLICY, CLOSE_TOO_BIG
from voicecalm.channels.twilio.messages import MAX_FRAME_BYTES
from voicecalm.testing.twilio_fakes import FakeTwilioCall

async def closed_with(call: FakeTwilioCall) -> int | None:
    async with asyncio.timeout(10):
        await call.closed.wait()
    return call.close_code


async def test_a_signed_stream_with_its_token_reaches_the_pipeline(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        await call.start(await call.answer(WEBHOOK))
        code = await closed_with(call)

    assert code == 1000  # the recording runner ends the call at once
    [info] = runner.calls
    assert (info.call_id, info.channel, info.user_phone, info.bot_phone, info.direction) == (
        call.call_sid,
        "twilio_media_streams",
        call.caller,
        call.called,
        "inbound",
    )
    assert dict(info.parameters) == {}
    assert runner.controls[0].transfer_available


async def test_unsigned_or_wrongly_signed_upgrades_are_refused(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        instructions = await call.answer(WEBHOOK)
        with pytest.raises(InvalidStatus) as unsigned:
            await call.connect(instructions, sign_as=None)
        with pytest.raises(InvalidStatus) as wrong_host:
            await call.connect(instructions, signed_url=instructions.stream_url.replace(PUBLIC_HOST, "evil.example"))
        with pytest.raises(InvalidStatus) as wrong_token:
            await FakeTwilioCall(server.base_url, public_host=PUBLIC_HOST, auth_token="f" * 32).connect(instructions)

    assert unsigned.value.response.status_code == 403
    assert wrong_host.value.response.status_code == 403
    assert wrong_token.value.response.status_code == 403
    assert runner.calls == []


async def test_the_https_form_of_the_upgrade_signature_is_accepted_and_logged(
    runner: RecordingRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicecalm.channels.twilio")
    async with twilio_server(runner) as server:
        call = server.call()
        await call.start(await call.answer(WEBHOOK), sign_as="https")
        await closed_with(call)

    assert [info.call_id for info in runner.calls] == [call.call_sid]
    assert "signed in its https:// form" in caplog.text


async def test_a_token_opens_one_stream_only(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call(call_sid="CA" + "a" * 32)
        instructions = await call.answer(WEBHOOK)
        await call.start(instructions)
        await closed_with(call)
        replay = server.call(call_sid=call.call_sid)
        await replay.start(instructions)
        code = await closed_with(replay)

    assert code == CLOSE_POLICY
    assert len(runner.calls) == 1


async def test_a_token_for_another_call_or_with_changed_parameters_is_refused(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        instructions = await call.answer(WEBHOOK)
        other_call = server.call()
        await other_call.start(instructions)
        tampered = server.call(call_sid=call.call_sid)
        await tampered.start(instructions, parameters={**instructions.parameters, "user_phone": "+15550000000"})
        no_token = server.call(call_sid=call.call_sid)
        await no_token.start(instructions, parameters={k: v for k, v in instructions.parameters.items() if k != "token"})
        codes = [await closed_with(c) for c in (other_call, tampered, no_token)]
        # The refusals did not use the token up.
        await call.start(instructions)
        await closed_with(call)

    assert codes == [CLOSE_POLICY] * 3
    assert [info.call_id for info in runner.calls] == [call.call_sid]


async def test_an_expired_token_is_refused(runner: RecordingRunner) -> None:
    now = [1_000_000.0]
    tokens = StreamTokens(AUTH_TOKEN, clock=lambda: now[0])
    async with twilio_server(runner, tokens=tokens) as server:
        call = server.call()
        instructions = await call.answer(WEBHOOK)
        now[0] += 61
        await call.start(instructions)
        code = await closed_with(call)

    assert code == CLOSE_POLICY
    assert runner.calls == []


async def test_a_stream_without_start_in_time_is_closed(
    runner: RecordingRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "START_TIMEOUT_SECS", 0.3)
    async with twilio_server(runner) as server:
        call = server.call()
        await call.connect(await call.answer(WEBHOOK))
        code = await closed_with(call)

    assert code == CLOSE_POLICY
    assert runner.calls == []


async def test_frames_before_start_that_are_not_twilio_close_the_stream(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        instructions = await server.call().answer(WEBHOOK)
        codes = []
        for frame in (
            "x" * (MAX_FRAME_BYTES + 1),
            b"\x00binary",
            "not json",
            '{"event": "media", "sequenceNumber": "2", "streamSid": "MZ1", "media": {}}',
            '{"event": "start", "sequenceNumber": 1}',
        ):
            call = server.call()
            await call.connect(instructions)
            await call.send(frame)
            codes.append(await closed_with(call))

    assert codes == [CLOSE_TOO_BIG] + [CLOSE_POLICY] * 4
    assert runner.calls == []


async def test_unknown_events_before_start_are_ignored(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        instructions = await call.answer(WEBHOOK)
        await call.connect(instructions)
        await call.send({"event": "someday", "sequenceNumber": "1"})
        await call.begin(instructions.parameters)
        code = await closed_with(call)

    assert code == 1000
    assert [info.call_id for info in runner.calls] == [call.call_sid]


async def test_a_stream_in_another_audio_format_is_refused(runner: RecordingRunner) -> None:
    async with twilio_server(runner) as server:
        call = server.call()
        instructions = await call.answer(WEBHOOK)
        await call.connect(instructions)
        await call.send(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": call.stream_sid,
                "start": {
                    "streamSid": call.stream_sid,
                    "accountSid": call.account_sid,
                    "callSid": call.call_sid,
                    "customParameters": instructions.parameters,
                    "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000, "channels": 1},
                },
            }
        )
        code = await closed_with(call)

    assert code == CLOSE_POLICY
    assert runner.calls == []
