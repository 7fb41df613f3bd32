"""Concurrent phone calls over Twilio Media Streams on this machine: the most that stay real time.

Each simulated call is a `FakeTwilioCall` speaking the real protocol over a real WebSocket into
the Twilio channel on a loopback server, with the example assistant on the embedded models
(Silero, smart-turn, Whisper tiny.en, Piper, Qwen2.5-Coder-1.5B). A call hears the greeting, asks
for its balance (a μ-law fixture in real time) and hears the answer. Its playout buffer counts
underruns: a bot message whose audio ran dry before it ended (an audible gap). The level of N
concurrent calls is real time when no call had an underrun.

    .venv/bin/python benchmarks/twilio_calls.py [--max-calls 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.channels.twilio.conftest import WEBHOOK, twilio_server, twilio_settings  # noqa: E402
from voicecalm.assistant import Assistant  # noqa: E402
from voicecalm.testing.twilio_fakes import FakeTwilioCall  # noqa: E402
from voicecalm.voice.runtime import VoiceRuntime  # noqa: E402
from voicecalm.voice.wav import read_wav  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "twilio_calls.json"
CALL_TIMEOUT = 180.0


async def one_call(call: FakeTwilioCall, request: bytes) -> dict[str, object]:
    started = time.monotonic()
    await call.start(await call.answer(WEBHOOK))
    await call.wait_for(lambda: len(call.echoed_marks) >= 1, timeout=CALL_TIMEOUT)  # the greeting, heard
    await call.say(request)
    await call.wait_for(lambda: len(call.echoed_marks) >= 2, timeout=CALL_TIMEOUT)  # the answer, heard
    await call.stop()
    return {
        "underruns": call.playback.underruns,
        "peak_buffered_ms": round(call.playback.peak_buffered / 8, 1),  # μ-law 8 kHz: 8 bytes per ms
        "seconds": round(time.monotonic() - started, 1),
        "marks_heard": len(call.echoed_marks),
    }


async def level(runtime: VoiceRuntime, calls: int, request: bytes) -> dict[str, object]:
    async with twilio_server(runtime, twilio_settings()) as server:
        fakes = [server.call() for _ in range(calls)]
        try:
            results = await asyncio.gather(*(one_call(fake, request) for fake in fakes), return_exceptions=True)
        finally:
            for fake in fakes:
                await fake.aclose()
    completed = [r for r in results if isinstance(r, dict)]
    failed = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, dict)]
    underruns = sum(int(r["underruns"]) for r in completed)
    return {
        "calls": calls,
        "completed": len(completed),
        "failed": failed,
        "underruns": underruns,
        "real_time": not failed and underruns == 0,
        "per_call": completed,
        "load_average_1min": os.getloadavg()[0],
    }


async def main(max_calls: int) -> None:
    assistant = Assistant.from_path(REPO)
    runtime = VoiceRuntime(assistant)
    await runtime.warm_up(twilio_settings())
    request = read_wav(REPO / "audio_fixtures" / "check_balance.ulaw.wav").telephone_ulaw()
    levels = []
    try:
        for calls in range(1, max_calls + 1):
            result = await level(runtime, calls, request)
            levels.append(result)
            print(
                f"{calls} concurrent call(s): {result['completed']} completed, {result['underruns']} underruns, "
                f"real time: {result['real_time']}, load {result['load_average_1min']:.2f}"
            )
    finally:
        await runtime.close()
        await assistant.close()
    most = max((int(r["calls"]) for r in levels if r["real_time"]), default=0)
    print(f"most concurrent calls that stayed real time: {most} (of {max_calls} tried)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"most_real_time_calls": most, "levels": levels, "cpus": os.cpu_count(), "machine": platform.machine()},
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-calls", type=int, default=4)
    asyncio.run(main(parser.parse_args().max_calls))
