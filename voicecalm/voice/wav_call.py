"""`voicecalm voice --input-wav A.wav --output-wav B.wav`: a recorded caller through the pipeline
every audio channel uses, played the way a caller talks: the recording is cut into turns at its
silences, the greeting is heard out, and each turn is spoken once the bot has answered the one
before (streaming the file straight through would barge into every answer).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from rich.table import Table

from voicecalm.testing.voice_call import VoiceCall
from voicecalm.voice.files import BotAudio, split_utterances, write_wav
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import VoiceChannelSettings
from voicecalm.voice.timeline import CallTimeline, TimelineObserver
from voicecalm.voice.wav import read_wav_pcm

logger = logging.getLogger(__name__)

CHANNEL = "local_audio"


async def run_wav_call(
    runtime: VoiceRuntime, settings: VoiceChannelSettings, input_wav: Path, output_wav: Path, timeline: Path
) -> CallTimeline:
    """Run the call, write the bot's side (on the call's timeline, as long as the call) and the
    JSON timeline; return the timeline."""
    utterances = split_utterances(read_wav_pcm(input_wav))
    observer = TimelineObserver()
    async with VoiceCall(runtime, settings, channel=CHANNEL, observers=[observer]) as call:
        ended = asyncio.ensure_future(call.ended(timeout=None))  # type: ignore[arg-type]  # the bot may hang up
        try:
            if await _unless_ended(call.settled(), ended):  # the greeting
                for number, pcm in enumerate(utterances, start=1):
                    try:
                        if not await _unless_ended(call.say(pcm, words=False), ended):
                            break
                    except TimeoutError:
                        logger.warning("caller turn %d of %s: no answer; going on with the next", number, input_wav)
            if not ended.done():
                await call.hang_up()
        finally:
            ended.cancel()
        conversation = await call.conversation()
    write_wav(output_wav, _bot_side(call.bot, time.monotonic() - call.bot.started), call.bot.rate)
    result = observer.timeline(conversation, CHANNEL)
    timeline.write_text(result.model_dump_json(indent=2))
    return result


async def _unless_ended(step: Awaitable[Any], ended: asyncio.Future[None]) -> bool:
    """Run `step` unless the call ends first; False when it did."""
    running = asyncio.ensure_future(step)
    await asyncio.wait([running, ended], return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        running.cancel()
        return False
    running.result()  # its error, if any
    return True


def _bot_side(bot: BotAudio, seconds: float) -> bytes:
    """The bot's audio on the call's timeline, padded with silence to the call's length, so it
    lines up with the caller's side from the call's start."""
    with wave.open(io.BytesIO(bot.to_wav())) as recorded:
        pcm = recorded.readframes(recorded.getnframes())
    return pcm.ljust(int(seconds * bot.rate) * 2, b"\0")


def summary_table(timeline: CallTimeline) -> Table:
    table = Table("#", "caller", "path", "first audio", "turn end", "ASR", "underst.", "engine", "TTS", "bot")
    for turn in timeline.turns:
        latency = turn.latency_ms
        figures = (
            [latency.total, latency.turn_end_wait, latency.asr, latency.understanding, latency.engine, latency.tts_first_chunk]
            if latency is not None
            else [None] * 6
        )
        path = "—" if turn.text is None else "fast" if turn.fast_path else "routed" if turn.routed else "model"
        if turn.barge_in is not None:
            path += ", barge-in"
        table.add_row(
            str(turn.index + 1),
            turn.transcript or "(nothing heard)",
            path,
            *("" if value is None else f"{value:.0f} ms" for value in figures),
            turn.bot[0] if turn.bot else "",
        )
    return table
