"""Dialogue understanding of the configured command generator on the example assistant.

Runs the annotated e2e cases (default `e2e_tests/understanding`) in `llm` mode, so every step
goes through the real generator (by default the embedded model), and prints the exact-match
rate, precision/recall per command type and the generator's latency per turn (p50/p90).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from rich.console import Console

from voicecalm.actions import create_action_runner
from voicecalm.dialogue.commands import Command
from voicecalm.project import Project, load_project
from voicecalm.testing.e2e.du import evaluate
from voicecalm.testing.e2e.loader import load_tests
from voicecalm.testing.e2e.report import print_du_report
from voicecalm.testing.e2e.runner import E2ERunner
from voicecalm.tracker.conversation import Conversation
from voicecalm.understanding.factory import create_generator
from voicecalm.understanding.understand import CommandGenerator

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "command_generator.json"


class TimedGenerator:
    def __init__(self, generator: CommandGenerator) -> None:
        self.generator = generator
        self.seconds: list[float] = []

    async def predict(self, text: str, conversation: Conversation, project: Project) -> list[Command]:
        started = time.perf_counter()
        commands = await self.generator.predict(text, conversation, project)
        self.seconds.append(time.perf_counter() - started)
        return commands


async def run(path: Path) -> dict:
    project = load_project(REPOSITORY)
    generator = create_generator(project)
    if generator is None:
        raise SystemExit("the example assistant configures no command generator")
    timed = TimedGenerator(generator)
    cases = load_tests(path, project).cases
    runner = E2ERunner(project, mode="llm", generator=timed, actions=create_action_runner(project))
    await timed.predict("hello", Conversation("warm-up", {}), project)  # starts the model; not counted
    timed.seconds.clear()
    results = await runner.run(cases)
    report = evaluate([step for result in results for step in result.du_steps], project.domain.slots)
    print_du_report(report, Console())
    ordered = sorted(timed.seconds)
    return {
        "cases": len(cases),
        "cases_passed": sum(result.passed for result in results),
        "annotated_steps": len(report.steps),
        "exact_match": report.accuracy,
        "du": report.to_json(),
        "generator_calls": len(ordered),
        "latency_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "latency_p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=REPOSITORY / "e2e_tests" / "understanding")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    figures = asyncio.run(run(args.path))
    summary = {k: v for k, v in figures.items() if k != "du"}
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
