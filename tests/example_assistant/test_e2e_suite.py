"""The example assistant's e2e suite, in oracle mode: with in-process actions, with the same
actions on a real rasa-sdk server, and on a deliberately broken copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicecalm.testing.action_server import action_server

REPOSITORY = Path(__file__).parents[2]
VOICECALM = str(Path(sys.executable).with_name("voicecalm"))
PROJECT_PARTS = ("config.yml", "credentials.yml", "domain", "flows", "actions", "docs", "e2e_tests")


def run_suite(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICECALM, "test", "e2e", "e2e_tests", "--commands", "oracle", "--project", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def copy_project(target: Path, endpoints: str) -> Path:
    target.mkdir(parents=True)
    for part in PROJECT_PARTS:
        source = REPOSITORY / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / part)
    (target / "endpoints.yml").write_text(endpoints)
    return target


def summary_line(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def in_process_run() -> subprocess.CompletedProcess[str]:
    return run_suite(REPOSITORY)


def test_suite_passes_with_in_process_actions(in_process_run: subprocess.CompletedProcess[str]) -> None:
    assert in_process_run.returncode == 0, in_process_run.stdout + in_process_run.stderr
    passed = int(summary_line(in_process_run.stdout).split()[0])
    assert passed >= 40 and summary_line(in_process_run.stdout).endswith(" 0 failed")


@pytest.fixture
def actions_server() -> Iterator[str]:
    """The example assistant's own `actions` package served by `python -m rasa_sdk`."""
    with action_server("actions", REPOSITORY) as url:
        yield url


def test_same_suite_passes_with_the_actions_on_a_server(
    tmp_path: Path, actions_server: str, in_process_run: subprocess.CompletedProcess[str]
) -> None:
    project = copy_project(tmp_path / "bank", f'action_endpoint:\n  url: "{actions_server}"\n')
    shutil.rmtree(project / "actions")  # the actions can only come from the server
    finished = run_suite(project)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert summary_line(finished.stdout) == summary_line(in_process_run.stdout)


def test_broken_copy_fails_readably(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "bank", (REPOSITORY / "endpoints.yml").read_text())
    responses = project / "domain" / "transfers.yml"
    # The transfer flow now confirms with a different response than its tests expect.
    text = (project / "flows" / "transfers.yml").read_text()
    (project / "flows" / "transfers.yml").write_text(text.replace("action: utter_transfer_cancelled", "action: utter_ask_rephrase"))
    assert responses.exists()
    finished = run_suite(project)
    assert finished.returncode == 1
    assert "--- " in finished.stdout and " failed ---" in finished.stdout
    assert "utter_transfer_cancelled" in finished.stdout, "the failure names what was expected"
    assert summary_line(finished.stdout).endswith("failed") and " 0 failed" not in summary_line(finished.stdout)
