from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dialogue.conftest import BANK
from voicecalm.testing.action_server import action_server as serve_actions

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
    with serve_actions("server_actions", HERE) as url:
        yield url
