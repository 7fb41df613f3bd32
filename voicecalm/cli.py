"""The `voicecalm` command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from voicecalm import __version__
from voicecalm.project import Project, ProjectError, Severity, load_project

if TYPE_CHECKING:
    from voicecalm.assistant import Assistant
from voicecalm.testing.cli import test_app

app = typer.Typer(help="voicecalm: voice and text assistants from CALM flows, fully offline.", no_args_is_help=True)
app.add_typer(test_app, name="test")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ProjectArgument = Annotated[Path, typer.Argument(help="Project folder (config.yml, domain, flows).")]
DataOption = Annotated[
    Optional[list[Path]],
    typer.Option("--data", "-d", help="Flow files or folders, relative to the project; overrides config.yml."),
]


def _load(project: Path, data: list[Path] | None) -> Project:
    try:
        loaded = load_project(project, data)
    except ProjectError as error:
        for problem in error.problems:
            style = "red" if problem.severity is Severity.ERROR else "yellow"
            err.print(str(problem), style=style, markup=False)
        err.print(f"{len(error.errors)} error(s) in {project}", style="bold red")
        raise typer.Exit(1) from None
    for warning in loaded.warnings:
        err.print(str(warning), style="yellow", markup=False)
    return loaded


def _assistant(project: Path) -> Assistant:
    """The project's assistant, or a clear message and exit code 1."""
    from voicecalm.assistant import Assistant

    loaded = _load(project, None)
    try:
        return Assistant.from_project(loaded)
    except (ValueError, ImportError) as error:  # endpoints.yml names a store or actions it cannot have
        err.print(f"cannot start {project}: {error}", style="red", markup=False)
        raise typer.Exit(1) from None


@app.command()
def validate(project: ProjectArgument = Path("."), data: DataOption = None) -> None:
    """Check a project and report every problem as file:line:col: message."""
    loaded = _load(project, data)
    out.print(
        f"{project}: valid ({len(loaded.user_flows)} user flows, {len(loaded.flows) - len(loaded.user_flows)} patterns, "
        f"{len(loaded.domain.slots)} slots, {len(loaded.domain.responses)} responses)"
    )


@app.command()
def run(
    project: ProjectArgument = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5005,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info, debug or trace.")] = "info",
) -> None:
    """Serve the assistant over HTTP (REST channel, tracker API) until Ctrl-C or SIGTERM."""
    # Imported here so that the other commands start without loading the web stack.
    import logging

    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from voicecalm.server import create_app

    level = LOG_LEVELS.get(log_level.lower())
    if level is None:
        err.print(f"unknown log level {log_level!r} (one of: {', '.join(LOG_LEVELS)})", style="red")
        raise typer.Exit(2)
    assistant = _assistant(project)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(assistant), host=host, port=port, log_level=level, timeout_graceful_shutdown=30, lifespan="on"
    )
    name = assistant.project.config.assistant_id or project.resolve().name
    out.print(f"Serving {name} at http://{host}:{port} (REST: POST /webhooks/rest/webhook)")
    uvicorn.Server(config).run()


@app.command()
def shell(
    project: ProjectArgument = Path("."),
    conversation_id: Annotated[Optional[str], typer.Option(help="Sender id; default: a new conversation.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Talk to a running server's REST channel instead.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Print commands, stack, changed slots per turn.")] = False,
) -> None:
    """Chat with the assistant in the terminal: buttons are numbered, /stop or Ctrl-D ends."""
    from voicecalm.channels.shell import ShellError, run_shell  # keeps the other commands' start-up fast

    assistant = _assistant(project) if url is None else None
    try:
        run_shell(project, assistant=assistant, url=url, conversation_id=conversation_id, debug=debug, console=out)
    except ShellError as error:
        err.print(str(error), style="red", markup=False)
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the voicecalm version."""
    out.print(__version__)
