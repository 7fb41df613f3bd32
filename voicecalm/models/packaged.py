"""Models shipped as ready files inside a PyPI data package (the embedder, Whisper, Piper voices).

Unlike the assembled LLMs (`catalog.py`), these need no joining: the files are used where pip put
them, after a size and sha256 check. Any one of several packages carrying the same bytes will do.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from voicecalm.models.assemble import ModelError


@dataclass(frozen=True, slots=True)
class ModelFile:
    path: str  # relative to the model directory
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model whose files sit in a data package; (distribution, import name, folder inside it)."""

    name: str
    packages: tuple[tuple[str, str, str], ...]
    files: tuple[ModelFile, ...]


def package_dir(import_name: str) -> Path | None:
    """A package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_packaged(model: PackagedModel, *, verify: bool = True, error: type[ModelError] = ModelError) -> Path:
    """The directory holding the model's files, checked by size and sha256; else `error` saying
    which file is missing or damaged, or which package to install."""
    problems: list[str] = []
    for distribution, import_name, inside in model.packages:
        package = package_dir(import_name)
        if package is None:
            continue
        directory = package / inside
        bad = []
        for file in model.files:
            path = directory / file.path
            if not path.is_file():
                bad.append(f"{file.path} is missing")
            elif path.stat().st_size != file.size:
                bad.append(f"{file.path} has {path.stat().st_size} bytes, expected {file.size}")
            elif verify and sha256_of(path) != file.sha256:
                bad.append(f"{file.path} does not match sha256 {file.sha256}")
        if not bad:
            return directory
        problems.append(f"{distribution} ({directory}): " + "; ".join(bad))
    if problems:
        raise error(f"the {model.name} model is damaged: " + " | ".join(problems))
    wanted = " or ".join(distribution for distribution, _, _ in model.packages)
    raise error(f"the {model.name} model is not installed: pip install {wanted}")
