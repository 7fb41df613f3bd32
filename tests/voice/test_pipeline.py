"""Calls through the real pipeline: Silero VAD, smart-turn, Whisper tiny.en, Piper, the engine."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.model_server import ModelServer
from tests.voice.conftest import DOCUMENT_ANSWER, caller
from voicecalm.assistant import Assistant
from voicecalm.knowledge.index import split_sentences
from voicecalm.testing.voice_call import VoiceCall
from voicecalm.tracker.events import (
    BotUttered,
    FlowStarted,
    SessionEnded,
    SlotSet,
    UserBargeIn,
    UserInputSuppressed,
    UserSilenceTimeout,
    UserUttered,
)
from voicecalm.understanding.prompt import history
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.runtime import ProtectedPlaybackMute, VoiceRuntime
from voicecalm.voice.settings import VoiceChannelSettings

pytestmark = pytest.mark.slow


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


async def test_a_spoken_request_starts_its_flow_and_the_bot_answers_in_speech(runtime: VoiceRuntime) -> None:
    async with VoiceCall(runtime) as call:
        await call.settled()
        greeting_audio = len(call.bot.pcm)
        await call.say(caller("check_balance"))
        await call.say(caller("customer_number"))
        conversation = await call.conversation()

    said = [e.text for e in conversation.events if isinstance(e, UserUttered)]
    assert said[0] == "/session_start"
    assert "balance" in said[1].lower()
    assert [e.flow_id for e in conversation.events if isinstance(e, FlowStarted)][1:4] == [
        "check_balance", "authenticate_user", "pattern_collect_information",
    ]
    assert conversation.slots["auth_customer_number"] == "12345678"
    bot = [e for e in conversation.events if isinstance(e, BotUttered)]
    assert bot[0].metadata["utter_action"] == "utter_greet"
    assert [e.metadata.get("utter_action") for e in bot[1:3]] == ["utter_ask_auth_customer_number", "utter_ask_auth_passcode"]
    assert not any(isinstance(e, UserBargeIn) for e in conversation.events)
    assert greeting_audio > 16_000 * 2 and rms(call.bot.pcm[:greeting_audio]) > 0.01
    assert len(call.bot.pcm) > greeting_audio * 1.5


async def test_keypad_digits_fill_a_dtmf_collect_without_the_language_model(runtime: VoiceRuntime) -> None:
    async with VoiceCall(runtime) as call:
        await call.settled()
        await call.say(caller("check_balance"))
        await call.press("12345678")
        conversation = await call.conversation()

    keyed = [e for e in conversation.events if isinstance(e, UserUttered) and e.metadata.get("source") == "dtmf"]
    assert [e.text for e in keyed] == ["12345678"]
    assert keyed[0].commands == [{"command": "set slot", "name": "auth_customer_number", "value": "12345678", "extractor": "CUSTOM"}]
    assert conversation.slots["auth_customer_number"] == "12345678"
    asked = [e.metadata.get("utter_action") for e in conversation.events if isinstance(e, BotUttered)]
    assert asked[-1] == "utter_ask_auth_passcode"


async def test_a_caller_who_speaks_over_the_greeting_interrupts_it_and_the_tracker_knows(runtime: VoiceRuntime) -> None:
    async with VoiceCall(runtime) as call:
        async with asyncio.timeout(60):
            while call.active.playback.playing is None:  # the greeting has started to play
                await asyncio.sleep(0.05)
        greeting = call.active.playback.playing.message_id
        await call.say(caller("barge_in_human"))
        conversation = await call.conversation()

    barge_ins = [e for e in conversation.events if isinstance(e, UserBargeIn)]
    assert len(barge_ins) == 1
    playback = barge_ins[0].metadata["playback"]
    assert playback["interrupted"] == greeting and playback["heard"] == [] and playback["unheard"] == []
    assert playback["played_ms"] > 0
    events = conversation.events
    user = next(e for e in events if isinstance(e, UserUttered) and "human" in (e.text or "").lower())
    assert events.index(barge_ins[0]) < events.index(user)  # recorded before the message that cut in
    # What a model reads of this conversation (here the command router answered the request).
    assert "How can I help you today? (interrupted by the user)" in history(conversation)
    assert "human_handoff" in [e.flow_id for e in events if isinstance(e, FlowStarted)]


async def test_silence_is_handled_by_pattern_user_silence_until_the_bot_hangs_up(runtime: VoiceRuntime) -> None:
    async with VoiceCall(runtime, VoiceChannelSettings(silence_timeout=1.5)) as call:
        await call.ended()
        conversation = await call.conversation()

    timeouts = [e for e in conversation.events if isinstance(e, UserSilenceTimeout)]
    assert [e.timeout for e in timeouts] == [1.5, 1.5, 1.5]
    # The slot shows the timeout in force, set once (from the slot's default of 30 s).
    assert [e.value for e in conversation.events if isinstance(e, SlotSet) and e.slot == "silence_timeout"] == [1.5]
    said = [e.metadata.get("utter_action") for e in conversation.events if isinstance(e, BotUttered)]
    assert said == ["utter_greet", "utter_greet", "utter_ask_still_there", "utter_inform_hangup"]
    ended = [e for e in conversation.events if isinstance(e, SessionEnded)]
    assert [e.metadata["_reason"] for e in ended] == ["bot disconnected"]
    goodbye = [e for e in conversation.events if isinstance(e, BotUttered)][-1].metadata["message_id"]
    assert call.active.playback.heard(goodbye)  # played to its end before the bot hung up


@pytest.fixture
async def protected_greeting_runtime(voice_project: Path, tmp_path: Path) -> AsyncIterator[VoiceRuntime]:
    root = tmp_path / "project"
    shutil.copytree(voice_project, root)
    shared = root / "domain" / "shared.yml"
    greeting = '    - text: "Hello, this is VoiceCalm Bank\'s virtual assistant. How can I help you today?"\n'
    shared.write_text(shared.read_text().replace(greeting, greeting + "      allow_interruptions: false\n"))
    assistant = Assistant.from_path(root)
    runtime = VoiceRuntime(assistant)
    yield runtime
    await runtime.close()
    await assistant.close()


async def test_speech_over_a_message_that_allows_no_interruption_neither_cuts_it_nor_makes_a_turn(
    protected_greeting_runtime: VoiceRuntime,
) -> None:
    async with VoiceCall(protected_greeting_runtime) as call:
        async with asyncio.timeout(60):
            while call.active.playback.playing is None:
                await asyncio.sleep(0.05)
        await call.caller.say(caller("confirm_yes"))
        await call.settled()
        await call.say(caller("check_balance"))
        conversation = await call.conversation()

    assert not any(isinstance(e, UserBargeIn) for e in conversation.events)
    said = [e.text for e in conversation.events if isinstance(e, UserUttered)]
    assert said[0] == "/session_start" and len(said) == 2 and "balance" in said[1].lower()  # the "yes" was muted
    greeting = next(e for e in conversation.events if isinstance(e, BotUttered))
    assert call.active.playback.heard(greeting.metadata["message_id"])


async def test_a_transcript_arriving_while_a_protected_message_plays_is_recorded_as_suppressed(
    runtime: VoiceRuntime,
) -> None:
    async with VoiceCall(runtime) as call:
        await call.settled()
        playback = call.active.playback
        playback.queued("protected", frame_id=-1, bot_turn=99, allow_interruptions=False)
        mute = ProtectedPlaybackMute(playback, call.engine)
        assert await mute.process_frame(pc.TranscriptionFrame("I said yes", "caller", "now"))
        playback.confirm("protected")
        assert not await mute.process_frame(pc.TranscriptionFrame("and now?", "caller", "now"))
        await call.settled()
        conversation = await call.conversation()

    suppressed = [e for e in conversation.events if isinstance(e, UserInputSuppressed)]
    assert [(e.text, e.reason, e.modality) for e in suppressed] == [("I said yes", "not_interruptible", "voice")]


async def test_a_document_answer_is_spoken_while_the_model_is_still_writing_it(
    runtime: VoiceRuntime, voice_model: ModelServer
) -> None:
    voice_model.piece_delay = 0.25  # ~5 s for the whole answer
    try:
        async with VoiceCall(runtime) as call:
            await call.settled()
            before_question = len(call.bot.chunks)
            await call.say(caller("question_overdraft"))
            conversation = await call.conversation()
    finally:
        voice_model.piece_delay = 0.0

    answer = [e for e in conversation.events if isinstance(e, BotUttered) and "search" in e.metadata]
    assert [e.text for e in answer] == split_sentences(DOCUMENT_ANSWER)
    assert answer[0].metadata["search"]["sources"][0]["source"] == "overdraft.md"
    first_answer_audio = call.bot.started + call.bot.chunks[before_question][0]
    assert first_answer_audio < voice_model.streams_finished[-1], "the first sentence was heard before the model finished"
    assert rms(b"".join(pcm for _, pcm in call.bot.chunks[before_question:])) > 0.01


async def test_noise_is_not_a_turn(runtime: VoiceRuntime) -> None:
    async with VoiceCall(runtime) as call:
        await call.settled()
        await call.caller.say(caller("noise_4s"))
        await call.say(caller("check_balance"))
        conversation = await call.conversation()

    said = [e.text for e in conversation.events if isinstance(e, UserUttered)]
    assert said[0] == "/session_start" and len(said) == 2 and "balance" in said[1].lower()
