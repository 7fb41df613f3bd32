"""Custom-action round trip: in-process rasa-sdk vs a rasa-sdk action server on loopback HTTP.

Both run the example assistant's `action_find_branch` on the same conversation state (a few
turns of history), so the difference is the transport: JSON over HTTP, the server's Sanic loop.
Prints p50/p99 per call for each and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from voicecalm.actions import ActionServerClient, InProcessActions
from voicecalm.actions.runner import ActionRunner
from voicecalm.assistant import Assistant, UserTurn
from voicecalm.dialogue.dsl import parse_commands
from voicecalm.project import load_project
from voicecalm.project.schema import ActionEndpoint
from voicecalm.testing.action_server import action_server
from voicecalm.tracker.stores import InMemoryTrackerStore

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "action_roundtrip.json"
ACTION = "action_find_branch"


async def measure(runner: ActionRunner, calls: int, conversation) -> list[float]:
    await runner.run(ACTION, conversation)  # warm-up (and the 449 domain round trip for HTTP)
    latencies = []
    for _ in range(calls):
        begin = time.perf_counter()
        await runner.run(ACTION, conversation)
        latencies.append(time.perf_counter() - begin)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


async def run(calls: int) -> dict:
    project = load_project(REPOSITORY)
    in_process = InProcessActions("actions", project)
    assistant = Assistant(project, InMemoryTrackerStore(), actions=in_process)
    for line in ("start flow find_branch", "set slot branch_city Springfield", "set slot continue_conversation True"):
        await assistant.handle("bench", UserTurn(text="scripted", commands=parse_commands(line)))
    conversation = await assistant.conversation("bench")
    with action_server("actions", REPOSITORY) as url:
        remote = ActionServerClient(ActionEndpoint(url=url), project)
        figures = {
            "action": ACTION,
            "events_in_tracker": len(conversation.events),
            "calls": calls,
            "in_process": summary(await measure(in_process, calls, conversation)),
            "http_loopback": summary(await measure(remote, calls, conversation)),
        }
        await remote.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    figures = asyncio.run(run(args.calls))
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
