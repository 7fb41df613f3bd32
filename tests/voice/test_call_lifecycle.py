"""A call's sessions through the real pipeline: how a call that comes back to the bot starts."""

from __future__ import annotations

import pytest

from tests.voice.test_pipeline import rms
from voicecalm.assistant import UserTurn
from voicecalm.testing.voice_call import VoiceCall
from voicecalm.tracker.events import BotUttered, SessionEnded, SessionStarted, UserUttered
from voicecalm.voice.runtime import VoiceRuntime

pytestmark = pytest.mark.slow


async def test_a_call_back_from_an_unanswered_transfer_says_so_instead_of_greeting_and_keeps_the_slots(
    runtime: VoiceRuntime,
) -> None:
    assistant = runtime.assistant
    call_id = "CA-back-from-transfer"
    # The call so far: greeted, the caller gave their number, the bot transferred them.
    await assistant.handle(call_id, UserTurn(text="/session_start", input_channel="twilio_media_streams"))
    await assistant.set_slots(call_id, {"auth_customer_number": "12345678"})
    await assistant.record(call_id, [SessionEnded(metadata={"_reason": "handoff"})])
    before = len((await assistant.conversation(call_id)).events)

    async with VoiceCall(
        runtime, call_id=call_id, channel="twilio_media_streams", parameters={"handoff_status": "no-answer"}
    ) as call:
        await call.settled()
        conversation = await call.conversation()
        spoken = call.bot.pcm

    resumed = conversation.events[before:]
    [start] = [e for e in resumed if isinstance(e, UserUttered)]
    assert start.text == "/session_start" and start.metadata["handoff_status"] == "no-answer"
    assert any(isinstance(e, SessionStarted) for e in resumed)
    said = [e.metadata.get("utter_action") for e in resumed if isinstance(e, BotUttered)]
    assert said == ["utter_human_handoff_failed"]  # and no utter_greet: pattern_session_start did not run
    assert conversation.slots["auth_customer_number"] == "12345678"  # kept, though the project carries none over
    assert conversation.slots["session_started_metadata"]["handoff_status"] == "no-answer"
    assert rms(spoken) > 0.01  # the line was spoken, not only recorded
