"""Engine throughput: scripted turns over the example assistant with the commands given.

No language model runs: each user turn carries its commands, so the figures are the dialogue
manager's own cost (cleanup, stack, flows, responses, in-process rasa-sdk actions, tracker).
Prints p50/p99 latency per turn, turns per second and memory per conversation; writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import time
import tracemalloc
from pathlib import Path

from voicecalm.actions import create_action_runner
from voicecalm.assistant import Assistant, UserTurn
from voicecalm.dialogue.dsl import parse_commands
from voicecalm.project import load_project
from voicecalm.tracker.stores import InMemoryTrackerStore, SQLiteTrackerStore

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "engine_turns.json"
LOGIN = ["set slot auth_customer_number 12345678", "set slot auth_passcode 2468"]

# Each script is one conversation; every string is one user turn of DSL command lines.
SCRIPTS: list[list[str]] = [
    ["start flow check_balance", *LOGIN, "set slot account_type checking", "set slot continue_conversation False",
     "set slot csat_score satisfied"],
    ["start flow transfer_money", *LOGIN, "set slot transfer_from_account checking",
     "set slot transfer_recipient Anna Schmidt", "set slot transfer_amount 9000", "set slot transfer_amount 120",
     "set slot transfer_amount 80", "set slot transfer_confirmation True", "set slot continue_conversation True"],
    ["start flow block_card", *LOGIN, "set slot card_type debit", "set slot card_block_reason lost",
     "set slot block_card_confirmation True", "set slot wants_replacement False", "cancel flow"],
    ["start flow find_branch", "offtopic reply", "set slot branch_city Springfield", "repeat message",
     "set slot continue_conversation False"],
    ["start flow transfer_money", *LOGIN, "start flow check_balance", "set slot account_type savings",
     "set slot continue_interrupted_flow_confirmation True", "set slot transfer_from_account savings",
     "cancel flow"],
]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build_assistant(store_kind: str, db: Path) -> Assistant:
    project = load_project(REPOSITORY)
    store = SQLiteTrackerStore(db) if store_kind == "sqlite" else InMemoryTrackerStore()
    return Assistant(project, store, actions=create_action_runner(project))


async def drive(assistant: Assistant, turns: int, prefix: str) -> tuple[list[float], int, float]:
    """Run scripted conversations until `turns` turns are done: (latencies, conversations, seconds)."""
    scripts = [[parse_commands(turn) for turn in script] for script in SCRIPTS]
    latencies: list[float] = []
    conversations = 0
    started = time.perf_counter()
    while len(latencies) < turns:
        script = scripts[conversations % len(scripts)]
        sender = f"{prefix}-{conversations}"
        conversations += 1
        for commands in script[: turns - len(latencies)]:
            begin = time.perf_counter()
            await assistant.handle(sender, UserTurn(text="scripted", commands=commands, input_channel="rest"))
            latencies.append(time.perf_counter() - begin)
    return latencies, conversations, time.perf_counter() - started


async def timing(turns: int, store_kind: str, db: Path) -> dict:
    assistant = build_assistant(store_kind, db)
    latencies, conversations, elapsed = await drive(assistant, turns, "timed")
    await assistant.close()
    return {
        "turns": len(latencies),
        "conversations": conversations,
        "store": store_kind,
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "turns_per_second": round(len(latencies) / elapsed, 1),
        "seconds": round(elapsed, 3),
    }


async def memory(turns: int, store_kind: str, db: Path) -> dict:
    """Memory held per conversation (cached state and in-memory events), measured separately
    because tracemalloc slows everything down."""
    assistant = build_assistant(store_kind, db)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    _, conversations, _ = await drive(assistant, turns, "memory")
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await assistant.close()
    return {"memory_per_conversation_kib": round((after - before) / conversations / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    db = args.out.parent / "engine_turns.db"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    figures = asyncio.run(timing(args.turns, args.store, db))
    db.unlink(missing_ok=True)
    figures |= asyncio.run(memory(min(args.turns, 2_000), args.store, db))
    db.unlink(missing_ok=True)
    figures |= {"python": platform.python_version(), "machine": platform.machine(), "single_process": True}
    for key, value in figures.items():
        print(f"{key:32} {value}")
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
