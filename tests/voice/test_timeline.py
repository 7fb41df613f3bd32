"""The call timeline on the real pipeline: a caller talks over the greeting, then answers."""

from __future__ import annotations

import asyncio

import pytest

from tests.voice.conftest import caller
from voicecalm.testing.voice_call import VoiceCall
from voicecalm.tracker.events import UserBargeIn
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.timeline import TimelineObserver

pytestmark = pytest.mark.slow


async def test_a_barge_in_is_told_from_an_ordinary_turn_and_timed_to_the_end_of_bot_audio(runtime: VoiceRuntime) -> None:
    observer = TimelineObserver()
    async with VoiceCall(runtime, observers=[observer]) as call:
        while not call.bot.chunks:  # the greeting is playing
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        await call.say(caller("check_balance"))  # over the greeting
        await call.say(caller("customer_number"))  # after the bot's question has played
        conversation = await call.conversation()
    timeline = observer.timeline(conversation, "local_audio")

    assert [e.metadata["playback"]["interrupted"] is not None for e in conversation.events if isinstance(e, UserBargeIn)] == [True]
    over_greeting, answer = timeline.turns
    assert timeline.greeting == ["Hello, this is VoiceCalm Bank's virtual assistant. How can I help you today?"]
    assert over_greeting.barge_in is not None and answer.barge_in is None
    assert timeline.barge_ins == [over_greeting.barge_in]
    barge_in = over_greeting.barge_in
    # The caller spoke, VAD noticed (start_secs later), then the bot's audio stopped, all while
    # the caller was still speaking.
    assert barge_in.speech_started == over_greeting.at.speech_started
    assert barge_in.speech_started < barge_in.interrupted <= barge_in.audio_stopped < over_greeting.at.speech_ended
    assert barge_in.reaction_ms is not None
    # The turn that barged in is still a turn: understood, answered, timed.
    assert over_greeting.flows_started[0] == "check_balance" and over_greeting.latency_ms is not None
    assert "customer number" in over_greeting.bot[0]
    assert "12345678" in (answer.text or "") and not answer.fast_path
