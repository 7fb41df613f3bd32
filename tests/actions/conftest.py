from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dialogue.conftest import BANK

HERE = Path(__file__).parent

EXTRA_FLOWS = """
  slow_flow:
    description: Runs an action that takes too long.
    steps:
      - action: action_slow
      - action: utter_thanks
  refused_flow:
    description: Runs an action that declines to run.
    steps:
      - action: action_refuse
      - action: utter_thanks
  unknown_action_flow:
    description: Runs an action the server does not have.
    steps:
      - action: action_missing
      - action: utter_thanks
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bank_copy(root: Path, endpoints: str) -> Path:
    project = root / "bank"
    shutil.copytree(BANK, project)
    flows = project / "data" / "flows.yml"
    flows.write_text(flows.read_text() + EXTRA_FLOWS)
    domain = project / "domain.yml"
    domain.write_text(domain.read_text().replace(
        "  - action_broken\n", "  - action_broken\n  - action_slow\n  - action_refuse\n  - action_missing\n"
    ))
    (project / "endpoints.yml").write_text(endpoints)
    return project


@pytest.fixture(scope="session")
def action_server() -> Iterator[str]:
    """A real rasa-sdk action server on a free loopback port, serving tests/actions/server_actions."""
    port = free_port()
    environment = {**os.environ, "SANIC_HOST": "127.0.0.1", "PYTHONPATH": str(HERE)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", "server_actions", "-p", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the rasa-sdk action server did not start")
    yield f"{url}/webhook"
    process.terminate()
    process.wait(timeout=10)
