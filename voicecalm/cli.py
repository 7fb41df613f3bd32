"""The `voicecalm` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from voicecalm import __version__
from voicecalm.project import Project, ProjectError, Severity, load_project

app = typer.Typer(help="voicecalm: voice and text assistants from CALM flows, fully offline.", no_args_is_help=True)
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


@app.command()
def validate(project: ProjectArgument = Path("."), data: DataOption = None) -> None:
    """Check a project and report every problem as file:line:col: message."""
    loaded = _load(project, data)
    out.print(
        f"{project}: valid ({len(loaded.user_flows)} user flows, {len(loaded.flows) - len(loaded.user_flows)} patterns, "
        f"{len(loaded.domain.slots)} slots, {len(loaded.domain.responses)} responses)"
    )


@app.command()
def run(project: ProjectArgument = Path("."), data: DataOption = None) -> None:
    """Load the assistant and show what it can do (channels are served once the server lands)."""
    loaded = _load(project, data)
    table = Table("flow", "name", "description", title=f"{loaded.config.assistant_id or project}: user flows")
    for flow in sorted(loaded.user_flows, key=lambda f: f.id):
        table.add_row(flow.id, flow.name, (flow.description or "").strip())
    out.print(table)
    out.print("No channel can serve this assistant yet: the REST, shell, browser and phone channels are not built.")


@app.command()
def version() -> None:
    """Print the voicecalm version."""
    out.print(__version__)
