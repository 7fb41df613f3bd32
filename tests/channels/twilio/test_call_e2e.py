"""Whole phone calls: the fake Twilio calls the example bank over the real routes and a real
WebSocket, speaking μ-law fixtures in real time, into the real voice runtime (Silero VAD,
smart-turn, Whisper tiny.en, Piper, the engine; the command generator is the rule-based loopback
model of tests/voice)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from tests.channels.twilio.conftest import HANDOFF_RESULT, PUBLIC_HOST, WEBHOOK, twilio_server, twilio_settings
from tests.voice.conftest import FIXTURES, runtime, voice_model, voice_project  # noqa: F401 (fixtures)
from voicecalm.channels.twilio import twiml
from voicecalm.channels.twilio.media import CLOSE_POLICY
from voicecalm.channels.twilio.paths import HANDOFF_RESULT_PATH
from voicecalm.testing.twilio_fakes import RestRequest, parse_connect_stream
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import BotUttered, FlowCompleted, SessionEnded, SlotSet, UserBargeIn, UserUttered
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.wav import read_wav, ulaw_decode

pytestmark = pytest.mark.slow

TURN_TIMEOUT = 120.0  # two shared cores run VAD, Whisper, Piper and the engine


def ulaw(name: str) -> bytes:
    return read_wav(FIXTURES / f"{name}.ulaw.wav").telephone_ulaw()


def bot_ids(conversation: Conversation, utter_action: str) -> list[str]:
    return [
        e.metadata["message_id"]
        for e in conversation.events
        if isinstance(e, BotUttered) and e.metadata.get("utter_action") == utter_action
    ]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = TURN_TIMEOUT) -> None:
    """Wait until `check()` (which reads the tracker) holds, asking every 50 ms."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_a_caller_barges_in_keys_digits_and_completes_a_flow(runtime: VoiceRuntime) -> None:  # noqa: F811
    assistant = runtime.assistant
    async with twilio_server(runtime) as server:
        call = server.call()

        async def heard(utter_action: str) -> bool:
            ids = bot_ids(await assistant.conversation(call.call_sid), utter_action)
            return bool(ids) and ids[-1] in call.echoed_marks

        await call.start(await call.answer(WEBHOOK))
        await call.wait_for(lambda: len(call.media_payloads) >= 15, timeout=TURN_TIMEOUT)  # the greeting plays
        await call.say(ulaw("check_balance"))  # over the greeting
        await until(lambda: heard("utter_ask_auth_customer_number"))
        for key in "12345678":
            await call.press(key)
        await until(lambda: heard("utter_ask_auth_passcode"))
        for key in "2468":
            await call.press(key)
        await until(lambda: heard("utter_ask_account_type"))
        await call.say(ulaw("checking"))
        await until(lambda: heard("utter_account_balance"))
        await call.stop()

        async def session_ended() -> bool:
            return any(isinstance(e, SessionEnded) for e in (await assistant.conversation(call.call_sid)).events)

        await until(session_ended)
        conversation = await assistant.conversation(call.call_sid)

    events = conversation.events
    [greeting] = bot_ids(conversation, "utter_greet")
    [barge_in] = [e for e in events if isinstance(e, UserBargeIn)]
    said = [e for e in events if isinstance(e, UserUttered)]
    names = call.event_names()
    first_mark = names.index("mark")
    greeting_audio = b"".join(call.media_payloads[: names[: names.index("clear")].count("media")])

    # What the caller heard: μ-law speech, no WAV header; the greeting cut by a clear before any
    # other audio, so it never got its mark; every other message marked and each mark echoed once.
    assert call.protocol_errors == []
    assert all(payload[:4] != b"RIFF" for payload in call.media_payloads)
    assert np.sqrt(np.mean(ulaw_decode(greeting_audio).astype(np.float64) ** 2)) > 300
    assert names.index("clear") < first_mark
    assert greeting not in call.marks
    assert sorted(call.echoed_marks) == sorted(call.marks) and len(set(call.marks)) == len(call.marks)
    bot_messages = {e.metadata["message_id"] for e in events if isinstance(e, BotUttered)}
    assert set(call.marks) <= bot_messages
    # What the tracker recorded.
    assert barge_in.interrupted == greeting
    assert said[0].text == "/session_start" and said[0].metadata["call_id"] == call.call_sid
    assert said[0].metadata["user_phone"] == call.caller and said[0].metadata["channel"] == "twilio_media_streams"
    assert "balance" in (said[1].text or "").lower()
    assert [(e.text, e.metadata.get("source")) for e in said[2:4]] == [("12345678", "dtmf"), ("2468", "dtmf")]
    assert ("auth_customer_number", "12345678") in [(e.slot, e.value) for e in events if isinstance(e, SlotSet)]
    assert "check_balance" in [e.flow_id for e in events if isinstance(e, FlowCompleted)]
    assert said[-1].text == "/session_end"


async def test_a_refused_stream_writes_no_tracker(runtime: VoiceRuntime) -> None:  # noqa: F811
    async with twilio_server(runtime) as server:
        call = server.call()
        instructions = await call.answer(WEBHOOK)
        impostor = server.call()  # another CallSid presenting this call's token
        await impostor.start(instructions)
        untokened = server.call()
        await untokened.start(instructions, parameters={"call_id": untokened.call_sid})
        for refused in (impostor, untokened):
            async with asyncio.timeout(TURN_TIMEOUT):
                await refused.closed.wait()
        codes = [impostor.close_code, untokened.close_code]
        trackers = [await runtime.assistant.store.events(c.call_sid, 0) for c in (call, impostor, untokened)]

    assert codes == [CLOSE_POLICY, CLOSE_POLICY]
    assert trackers == [[], [], []]


async def test_a_caller_asks_for_a_person_and_is_transferred_then_comes_back_when_nobody_answers(
    runtime: VoiceRuntime, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("VOICECALM_BANK_AGENTS_AVAILABLE", "true")
    assistant = runtime.assistant
    async with twilio_server(runtime) as server:
        assert server.rest is not None
        call = server.call()
        unplayed_at_transfer: list[list[str]] = []

        def transferred(request: RestRequest) -> None:
            unplayed_at_transfer.append([name for name in call.marks if name not in call.echoed_marks])
            call.leave_on_update(request)

        server.rest.listeners.append(transferred)
        await call.start(await call.answer(WEBHOOK))
        await call.wait_for(lambda: len(call.echoed_marks) == 1, timeout=TURN_TIMEOUT)  # the greeting, heard
        await call.say(ulaw("barge_in_human"))
        await call.wait_for(lambda: call.closed.is_set(), timeout=TURN_TIMEOUT)
        # Nobody took the call: Twilio asks what next, and the bot comes back on a new stream.
        back = parse_connect_stream((await call.post(HANDOFF_RESULT, call.call_parameters(DialCallStatus="no-answer"))).text)
        again = server.call(call_sid=call.call_sid)
        await again.start(back)

        async def restarted() -> bool:
            conversation = await assistant.conversation(call.call_sid)
            starts = [e for e in conversation.events if isinstance(e, UserUttered) and e.text == "/session_start"]
            return len(starts) == 2

        await until(restarted)
        await again.stop()
        conversation = await assistant.conversation(call.call_sid)

    [request] = server.rest.requests
    handoff = twilio_settings().handoff
    assert handoff is not None
    transfer_line = bot_ids(conversation, "utter_transfer_to_agent")
    ended = [e for e in conversation.events if isinstance(e, SessionEnded)]
    starts = [e for e in conversation.events if isinstance(e, UserUttered) and e.text == "/session_start"]
    assert request.form == {"Twiml": twiml.dial(handoff, action_url=f"https://{PUBLIC_HOST}{HANDOFF_RESULT_PATH}")}
    # The transfer line was played to its end (its mark echoed) before Twilio got the <Dial>.
    assert transfer_line and transfer_line[-1] in call.echoed_marks
    assert unplayed_at_transfer == [[]]
    assert ended and ended[0].metadata.get("_reason") == "handoff"
    assert back.parameters["handoff_status"] == "no-answer"
    assert starts[1].metadata["handoff_status"] == "no-answer" and starts[1].metadata["call_id"] == call.call_sid
    assert call.protocol_errors == again.protocol_errors == []
