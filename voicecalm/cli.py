"""The `voicecalm` command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from voicecalm import __version__
from voicecalm.project import Project, ProjectError, Severity, load_project

if TYPE_CHECKING:
    from voicecalm.assistant import Assistant
from voicecalm.testing.cli import test_app
from voicecalm.models.cli import models_app

app = typer.Typer(help="voicecalm: voice and text assistants from CALM flows, fully offline.", no_args_is_help=True)
app.add_typer(test_app, name="test")
app.add_typer(models_app, name="models")
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
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; more than 1 needs a shared tracker store (SQL, redis).")
    ] = 1,
    log_format: Annotated[
        str, typer.Option(envvar="VOICECALM_LOG_FORMAT", help="text, or json: one JSON object per line.")
    ] = "text",
) -> None:
    """Serve the assistant over HTTP (REST channel, tracker API, /metrics) until Ctrl-C or SIGTERM."""
    # Imported here so that the other commands start without loading the web stack.
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from voicecalm import logs
    from voicecalm.server import create_app

    level = LOG_LEVELS.get(log_level.lower())
    if level is None:
        err.print(f"unknown log level {log_level!r} (one of: {', '.join(LOG_LEVELS)})", style="red")
        raise typer.Exit(2)
    log_format = log_format.lower()
    if log_format not in logs.FORMATS:
        err.print(f"unknown log format {log_format!r} (one of: {', '.join(logs.FORMATS)})", style="red")
        raise typer.Exit(2)
    logs.configure(level, log_format)
    assistant = _assistant(project)
    if workers > 1:
        _run_workers(assistant, project, host, port, log_level.lower(), workers, log_format)
        return
    config = uvicorn.Config(
        create_app(assistant),
        host=host,
        port=port,
        log_level=level,
        log_config=_uvicorn_log_config(log_format),
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    name = assistant.project.config.assistant_id or project.resolve().name
    out.print(f"Serving {name} at http://{host}:{port} (REST: POST /webhooks/rest/webhook)")
    uvicorn.Server(config).run()


def _uvicorn_log_config(log_format: str) -> dict[str, Any] | None:
    """uvicorn's own text handlers; none for JSON, so its loggers go through the root handler."""
    from uvicorn.config import LOGGING_CONFIG

    return None if log_format == "json" else LOGGING_CONFIG


def _run_workers(
    assistant: Assistant,
    project: Path,
    host: str,
    port: int,
    log_level: str,
    workers: int,
    log_format: str = "text",
) -> None:
    """`workers` processes on one socket, each with its own assistant built from the project."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from voicecalm.logs import FORMAT_ENV
    from voicecalm.metrics import MULTIPROCESS_ENV
    from voicecalm.server import LOG_LEVEL_ENV, PROJECT_ENV
    from voicecalm.tracker.locks import InMemoryLockStore
    from voicecalm.tracker.stores import InMemoryTrackerStore

    if isinstance(assistant.store, InMemoryTrackerStore):
        err.print(
            "--workers needs a tracker store the workers share (sqlite, SQL or redis in endpoints.yml): "
            "with an in-memory store each worker would know only its own turns",
            style="red",
        )
        raise typer.Exit(2)
    if isinstance(assistant.lock_store, InMemoryLockStore):
        err.print(
            "warning: with the in-memory lock store, two turns of one conversation that reach two workers at once "
            "are not queued: one of them fails. Set `lock_store: {type: redis, ...}` in endpoints.yml.",
            style="yellow",
        )
    os.environ[PROJECT_ENV] = str(project.resolve())
    os.environ[LOG_LEVEL_ENV] = log_level
    os.environ[FORMAT_ENV] = log_format
    # Metrics of all workers in files of one folder, so that any worker's /metrics shows their sum.
    metrics_dir = None
    if not os.environ.get(MULTIPROCESS_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="voicecalm-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
    name = assistant.project.config.assistant_id or project.resolve().name
    out.print(f"Serving {name} at http://{host}:{port} with {workers} workers (REST: POST /webhooks/rest/webhook)")
    try:
        uvicorn.run(
            "voicecalm.server:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            log_config=_uvicorn_log_config(log_format),
            timeout_graceful_shutdown=30,
            lifespan="on",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


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
def train(project: ProjectArgument = Path(".")) -> None:
    """Build the document index of the project's docs/ (cached in .voicecalm/knowledge/)."""
    import asyncio

    from rich.progress import Progress as ProgressBar

    from voicecalm.knowledge import KnowledgeIndex
    from voicecalm.models.embedder import EmbeddingModelError

    if not (project / "docs").is_dir():
        out.print(f"{project}: no docs/ folder, nothing to index")
        return
    with ProgressBar(console=err, transient=True) as bar:
        task = bar.add_task("embedding documents", total=None)
        try:
            index = asyncio.run(
                KnowledgeIndex.load_or_build(project, progress=lambda done, total: bar.update(task, completed=done, total=total))
            )
        except EmbeddingModelError as error:
            err.print(f"cannot index {project / 'docs'}: {error}", style="red", markup=False)
            raise typer.Exit(1) from None
    state = "built" if index.rebuilt else "up to date"
    out.print(f"{project}: document index {state} ({len(index)} chunks from {len(index.sources)} documents)")


@app.command()
def version() -> None:
    """Print the voicecalm version."""
    out.print(__version__)
