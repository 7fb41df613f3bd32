"""`voicecalm test`: run e2e test files against a project (testing.md §3)."""

from __future__ import annotations

import asyncio
import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from voicecalm.actions import create_action_runner
from voicecalm.project import Problem, Project, ProjectError, Severity, load_project
from voicecalm.understanding.factory import create_generator
from voicecalm.testing.e2e.cases import TestCase
from voicecalm.testing.e2e.du import evaluate
from voicecalm.testing.e2e.loader import E2ELoadError, holds_e2e_tests, load_tests
from voicecalm.testing.e2e.report import (
    print_check_table,
    print_du_report,
    print_failures,
    print_final_line,
    print_spoken_summary,
    write_e2e_results,
    write_junit_xml,
)
from voicecalm.testing.e2e.results import CaseResult
from voicecalm.testing.e2e.runner import E2ERunner

if TYPE_CHECKING:
    from voicecalm.actions.runner import ActionRunner
    from voicecalm.testing.e2e.spoken import SpokenE2ERunner
    from voicecalm.understanding.understand import CommandGenerator

EXIT_FAILED = 1
EXIT_LOAD_ERROR = 2

test_app = typer.Typer(help="Test an assistant.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CommandsMode(str, Enum):
    oracle = "oracle"
    llm = "llm"
    du = "du"


def _print_problems(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for problem in problems:
        err.print(str(problem), style="red" if problem.severity is Severity.ERROR else "yellow", markup=False)


def _load_project(folder: Path) -> Project:
    try:
        project = load_project(folder)
    except ProjectError as error:
        _print_problems(error.problems)
        err.print(f"{len(error.errors)} error(s) in {folder}", style="bold red")
        raise typer.Exit(EXIT_LOAD_ERROR) from None
    _print_problems(project.warnings)
    return project


def _default_path(project: Path) -> Path:
    tests = project / "tests"
    return tests if holds_e2e_tests(tests) else project / "e2e_tests"


def _spoken_runner(
    project: Project, mode: CommandsMode, actions: ActionRunner | None, generator: CommandGenerator | None
) -> SpokenE2ERunner:
    """The runner of `--voice`: the voice pipeline (pipecat, Whisper, Piper) loads only for it."""
    import sys

    from loguru import logger

    logger.remove()  # pipecat logs every frame at DEBUG, from the moment it is imported
    logger.add(lambda message: sys.stderr.write(message), level="ERROR")  # today's stderr, even if swapped
    from voicecalm.testing.e2e.spoken import SpokenE2ERunner
    from voicecalm.voice.settings import LocalAudioSettings, VoiceSettingsError, channel_settings, require_speech_services

    try:
        # The microphone channel's speech settings, as `voicecalm voice` uses them: ASR, TTS,
        # VAD and turn end as the author hears the assistant locally.
        settings = channel_settings(project, "local_audio") or LocalAudioSettings()
        require_speech_services(settings)
    except VoiceSettingsError as error:
        err.print(f"credentials.yml: {error}", style="red", markup=False)
        raise typer.Exit(EXIT_LOAD_ERROR) from None
    return SpokenE2ERunner(project, settings=settings, mode=mode.value, actions=actions, generator=generator)


async def _run(runner: E2ERunner, cases: list[TestCase], fail_fast: bool) -> list[CaseResult]:
    try:
        if runner.mode != "oracle":
            warm_up = getattr(runner.generator, "warm_up", None)
            if warm_up is not None:
                await warm_up()
        return await runner.run(cases, fail_fast=fail_fast)
    finally:
        close = getattr(runner.actions, "close", None)  # the action-server client holds connections
        if close is not None:
            await close()


@test_app.command("e2e")
def e2e(
    path: Annotated[
        Optional[Path],
        typer.Argument(help="Test file or folder (default: tests/ when it holds e2e tests, else e2e_tests/)."),
    ] = None,
    commands: Annotated[
        CommandsMode,
        typer.Option(
            help="oracle: annotated steps use their `commands:`; llm: every step calls the generator; du: every "
            "annotated step is predicted and scored on its own, then played with its `commands:` "
            "(a dialogue understanding test: one wrong prediction does not derail the steps after it)."
        ),
    ] = CommandsMode.llm,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop after the first failed test case.")] = False,
    e2e_results: Annotated[
        Optional[Path], typer.Option("--e2e-results", "-o", help="Write e2e_results_passed/failed.yml here.")
    ] = None,
    junit_xml: Annotated[Optional[Path], typer.Option("--junit-xml", help="Write a JUnit XML report.")] = None,
    du_report: Annotated[
        Optional[Path], typer.Option("--du-report", help="Write the dialogue-understanding report as JSON.")
    ] = None,
    min_du_accuracy: Annotated[
        Optional[float],
        typer.Option("--min-du-accuracy", min=0.0, max=1.0, help="Fail when DU exact-match accuracy is below this."),
    ] = None,
    project: Annotated[Path, typer.Option("--project", help="Project folder.")] = Path("."),
    voice: Annotated[
        bool,
        typer.Option(
            "--voice",
            help="Speak each user line in a caller voice through the voice pipeline (VAD, ASR, engine, TTS, "
            "in real time); /payload lines are typed. Failures show each line as written and as heard.",
        ),
    ] = False,
) -> None:
    """Run e2e test cases; exit 0 when all pass, 1 on a failure, 2 when the tests cannot be loaded."""
    if voice and commands is CommandsMode.du:
        err.print("--voice runs --commands oracle or llm: a spoken step cannot be predicted without being sent", style="red")
        raise typer.Exit(EXIT_LOAD_ERROR)
    loaded_project = _load_project(project)
    path = path if path is not None else _default_path(project)
    try:
        loaded = load_tests(path, loaded_project)
    except E2ELoadError as error:
        _print_problems(error.problems)
        raise typer.Exit(EXIT_LOAD_ERROR) from None
    _print_problems(loaded.warnings)
    if not loaded.cases:
        err.print(f"no tests found in {path}", style="red")
        raise typer.Exit(EXIT_FAILED)
    try:
        actions = create_action_runner(loaded_project)
    except ImportError as error:
        err.print(str(error), style="red")
        raise typer.Exit(EXIT_LOAD_ERROR) from None

    generator = create_generator(loaded_project)
    spoken = _spoken_runner(loaded_project, commands, actions, generator) if voice else None
    runner = spoken or E2ERunner(loaded_project, mode=commands.value, actions=actions, generator=generator)
    results = asyncio.run(_run(runner, loaded.cases, fail_fast))

    print_failures(results, loaded_project, out)
    print_check_table(results, out)
    du_too_low = False
    if commands is not CommandsMode.oracle:
        report = evaluate([step for result in results for step in result.du_steps], loaded_project.domain.slots)
        if report.steps:
            print_du_report(report, out)
        if du_report is not None:
            du_report.parent.mkdir(parents=True, exist_ok=True)
            du_report.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
        if min_du_accuracy is not None:
            if report.accuracy is None:
                err.print("--min-du-accuracy: no annotated step reached the generator", style="yellow")
            elif report.accuracy < min_du_accuracy:
                du_too_low = True
                out.print(f"DU accuracy {report.accuracy:.2f} is below the minimum {min_du_accuracy}", style="red")
    elif du_report is not None or min_du_accuracy is not None:
        err.print("--du-report and --min-du-accuracy need --commands llm or du; ignored", style="yellow")
    if junit_xml is not None:
        write_junit_xml(results, loaded_project, junit_xml)
    if e2e_results is not None:
        write_e2e_results(results, loaded_project, e2e_results)
    if spoken is not None:
        print_spoken_summary(results, spoken.lines.describe(), out)
    print_final_line(results, out)
    if du_too_low or not all(result.passed for result in results):
        raise typer.Exit(EXIT_FAILED)
