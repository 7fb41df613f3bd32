"""The example assistant for tests that make one spoken call (the browser call here, the
microphone call in tests/channels/test_microphone.py): its command generator talks to a model
server on loopback that starts the transfer flow when the caller asks to transfer money, and
fills the passcode when it is given."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from starlette.requests import Request
from starlette.responses import Response

from tests.model_server import ModelServer

EXAMPLE = Path(__file__).resolve().parents[3]
PROJECT_PARTS = ("actions", "docs", "domain", "flows", "config.yml", "credentials.yml", "endpoints.yml")
EXPECTED_FLOW = "transfer_money"
# The example bank's test customer (actions/bank_data.json).
CUSTOMER_NUMBER = "12345678"
PASSCODE = "2468"
# Where the command prompt quotes the message it is about (understanding/templates).
LATEST_MESSAGE = re.compile(r'The user\'s latest message is:\s*"""(.*?)"""', re.DOTALL)


def example_project(root: Path, model_port: int) -> Path:
    """The example assistant, its command generator pointed at the loopback model server."""
    project = root / "project"
    for part in PROJECT_PARTS:
        source = EXAMPLE / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / part)
    config_file = project / "config.yml"
    config = yaml.safe_load(config_file.read_text())
    config["pipeline"][0]["llm"] = {
        "provider": "openai",
        "model": "fake",
        "api_base": f"http://127.0.0.1:{model_port}/v1",
        "api_key": "not-a-key",
    }
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


class CommandModel(ModelServer):
    """Plays the command generator's model on loopback. It answers by the latest message: a
    request to transfer money starts the transfer flow, the example customer's passcode fills
    the passcode slot, anything else (the start-up warm-up, noise) is answered by repeating the
    last message, which changes nothing. So a flow starts or a slot fills only if what the
    caller said or typed reached the prompt."""

    ANSWERS = {
        "transfer": f"start flow {EXPECTED_FLOW}",
        PASSCODE: f"set slot auth_passcode {PASSCODE}",
    }

    def __init__(self) -> None:
        super().__init__()
        self.latest_messages: list[str] = []

    async def chat(self, request: Request) -> Response:
        prompt = (await request.json())["messages"][-1]["content"]
        latest = match.group(1).strip() if (match := LATEST_MESSAGE.search(prompt)) else ""
        self.latest_messages.append(latest)
        answers = [answer for cue, answer in self.ANSWERS.items() if cue in latest.lower()]
        self.completions[:] = ["\n".join(answers) or "repeat message"]
        return await super().chat(request)
