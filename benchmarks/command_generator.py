"""Dialogue understanding of the configured command generator on the example assistant.

Runs the annotated e2e cases (default `e2e_tests/understanding`) through the real generator (by
default the embedded model) and prints the exact-match rate, precision/recall per command type and
the generator's latency per turn (p50/p90). `--mode du` (the default) scores every annotated step
on its own, in the conversation as written (Rasa's dialogue understanding tests); `--mode llm`
plays the model's commands, so a wrong prediction also changes the turns after it.

`--every 3` runs every third case (a fixed subset for quick iteration); `--timeout` raises the
model's timeout for accuracy runs (report latency at the configured one); the mismatching steps
are also written one per block next to the JSON (`*.mismatches.txt`) for error analysis.
`--router-only` asks no model: it scores only what the command router answers (seconds, not
minutes). Latency is given per generator call (router and model) and, in du mode, per step
(`step_latency`: fast path, router and model, what a caller waits for understanding).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from voicecalm.actions import create_action_runner
from voicecalm.assistant import Assistant
from voicecalm.dialogue.commands import Command, Error
from voicecalm.project import Project, load_project
from voicecalm.testing.e2e.du import DuReport, command_lines, evaluate
from voicecalm.testing.e2e.loader import load_tests
from voicecalm.testing.e2e.report import print_du_report
from voicecalm.testing.e2e.runner import CommandsMode, E2ERunner
from voicecalm.tracker.conversation import Conversation
from voicecalm.understanding.factory import create_generator
from voicecalm.understanding.llm import LlmSettings
from voicecalm.understanding.understand import CommandGenerator

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "command_generator.json"


class TimedGenerator:
    """Times the generator's calls (router and model) and records what the router answered."""

    def __init__(self, generator: CommandGenerator) -> None:
        self.generator = generator
        self.seconds: list[float] = []
        self.routed: set[str] = set()

    async def route(self, text: str, conversation: Conversation) -> list[Command] | None:
        started = time.perf_counter()
        commands = await self.generator.route(text, conversation)
        if commands is not None:
            self.record(text, commands, time.perf_counter() - started)
            self.routed.add(text)
        return commands

    async def predict(self, text: str, conversation: Conversation, project: Project) -> list[Command]:
        started = time.perf_counter()
        commands = await self.generator.predict(text, conversation, project)
        self.record(text, commands, time.perf_counter() - started)
        return commands

    def record(self, text: str, commands: list[Command], seconds: float) -> None:
        self.seconds.append(seconds)
        # One line per call as it happens: a long run can be read (and judged) before it ends.
        print(f"{seconds:6.2f}s {text!r} -> {' | '.join(command_lines(commands))}", file=sys.stderr, flush=True)


def timed_assistant(seconds: list[float]) -> type[Assistant]:
    """An assistant that times each step's whole understanding: fast path, router and model."""

    class TimedAssistant(Assistant):
        async def predict(self, sender_id: str, text: str) -> list[Command]:
            started = time.perf_counter()
            commands = await super().predict(sender_id, text)
            seconds.append(time.perf_counter() - started)
            return commands

    return TimedAssistant


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    ordered = sorted(seconds)
    if not ordered:
        return {"p50_ms": None, "p90_ms": None}
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
    }


async def run(
    path: Path,
    every: int = 1,
    offset: int = 0,
    timeout: float | None = None,
    mode: CommandsMode = "du",
    router_only: bool = False,
) -> tuple[dict, DuReport, set[str]]:
    project = load_project(REPOSITORY)
    generator = create_generator(project)
    if generator is None:
        raise SystemExit("the example assistant configures no command generator")
    if router_only:

        async def no_model() -> LlmSettings:
            raise RuntimeError("--router-only: the model is not asked")

        generator.settings = no_model
        logging.getLogger("voicecalm.understanding.generator").setLevel(logging.CRITICAL)
    elif timeout is not None:
        configured = generator.settings

        async def longer() -> LlmSettings:
            return replace(await configured(), timeout=timeout)

        generator.settings = longer
    timed = TimedGenerator(generator)
    cases = load_tests(path, project).cases[offset::every]
    runner = E2ERunner(project, mode=mode, generator=timed, actions=create_action_runner(project))
    step_seconds: list[float] = []
    runner.assistant_type = timed_assistant(step_seconds)
    # Starts the model and reads the prompt's fixed part once (as the assistant does at start-up).
    if not router_only:
        await generator.warm_up()
    await timed.predict("hello", Conversation("warm-up", {}), project)  # not counted
    timed.seconds.clear()
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = await runner.run(cases)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    report = evaluate([step for result in results for step in result.du_steps], project.domain.slots)
    print_du_report(report, Console())
    ordered = sorted(timed.seconds)
    errors = sum(any(isinstance(c, Error) for c in s.step.predicted) for s in report.steps)
    routed = timed.routed
    routed_steps = [s for s in report.steps if s.step.text in routed]
    call_latency = percentiles(ordered)
    figures = {
        "mode": mode,
        "cases": len(cases),
        "cases_passed": sum(result.passed for result in results),
        "annotated_steps": len(report.steps),
        "exact_match": report.accuracy,
        "du": report.to_json(),
        "generator_calls": len(ordered),
        "error_steps": errors,  # timeouts and model errors (with --router-only: every unrouted step)
        # Steps the router answered without the model, and how many of those were right.
        "routed_steps": len(routed_steps),
        "routed_correct": sum(s.match for s in routed_steps),
        "timeout_s": None if router_only else (await generator.settings()).timeout,
        # Per generator call (router and model); per step in du mode (fast path included).
        "latency_p50_ms": call_latency["p50_ms"],
        "latency_p90_ms": call_latency["p90_ms"],
        "step_latency": percentiles(step_seconds) | {"steps": len(step_seconds)},
        # With a raised --timeout: the calls that the configured timeout would have cut off.
        "calls_over_7s": sum(seconds > 7.0 for seconds in ordered),
        "wall_s": round(wall, 1),
        # The machine is shared: latency means little without the load it was measured under.
        "load_average_1m": [round(load_before[0], 2), round(load_after[0], 2)],
        "load_average_15m_after": round(load_after[2], 2),
    }
    return figures, report, routed


def mismatches(report: DuReport, routed: set[str]) -> str:
    blocks = []
    for scored in report.steps:
        if not scored.match:
            step = scored.step
            blocks.append(
                f"{step.file.name}:{step.line} [{step.test}]{' (routed)' if step.text in routed else ''}\n  user: {step.text}\n"
                f"  expected: {' | '.join(command_lines(step.expected)) or '(none)'}\n"
                f"  predicted: {' | '.join(command_lines(step.predicted)) or '(none)'}"
            )
    return "\n".join(blocks) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=REPOSITORY / "e2e_tests" / "understanding")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--mode", choices=["du", "llm"], default="du", help="du: each step judged on its own; llm: e2e as played")
    parser.add_argument("--every", type=int, default=1, help="run every N-th case only")
    parser.add_argument("--offset", type=int, default=0, help="first case of the subset")
    parser.add_argument("--timeout", type=float, help="model timeout in seconds (default: the configured one)")
    parser.add_argument("--model", help="embedded model from the catalog (default: the default one), e.g. qwen2.5-coder-0.5b")
    parser.add_argument("--router-only", action="store_true", help="ask no model: score only what the router answers")
    parser.add_argument("--server-log", type=Path, help="write the llama.cpp server's log (timings, prefix hits) here")
    args = parser.parse_args()
    if args.server_log is not None:
        handler = logging.FileHandler(args.server_log, mode="w")
        server_logger = logging.getLogger("voicecalm.understanding.local_llm")
        server_logger.addHandler(handler)
        server_logger.setLevel(logging.DEBUG)
    if args.model is not None:
        from functools import partial

        from voicecalm.models.catalog import MODELS
        from voicecalm.understanding import factory, local_llm

        factory.local_endpoint = partial(local_llm.local_endpoint, MODELS[args.model])  # type: ignore[assignment]
    figures, report, routed = asyncio.run(
        run(args.path, args.every, args.offset, args.timeout, args.mode, args.router_only)
    )
    summary = {k: v for k, v in figures.items() if k != "du"}
    summary["per_command"] = {
        name: [round(c.precision or 0, 2), round(c.recall or 0, 2), c.count] for name, c in report.per_command.items()
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    args.out.with_suffix(".mismatches.txt").write_text(mismatches(report, routed))


if __name__ == "__main__":
    main()
