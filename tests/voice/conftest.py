"""The example bank assistant on a voice line: real VAD, Whisper and Piper; the command
generator is a loopback OpenAI-compatible server that answers by simple rules (so a test states
what was understood and checks what the pipeline did with it)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.model_server import ModelServer
from voicecalm.assistant import Assistant
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.wav import read_wav_pcm

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "audio_fixtures"
PROJECT_PARTS = ("config.yml", "domain", "flows", "actions", "docs", "endpoints.yml", "credentials.yml")

LATEST_MESSAGE = re.compile(r'The user\'s latest message is:\n"""(.*?)"""', re.S)
REQUESTED_SLOT = re.compile(r'"requested_slot": "([a-z_]+)"')


# The model's answer to any question for the documents (knowledge.answer's prompt).
DOCUMENT_ANSWER = (
    "An overdraft costs twenty five dollars per item. We charge it at most three times a day. "
    "There is no fee when you are overdrawn by ten dollars or less."
)


def rule_based_commands(prompt: str) -> str:
    """What a good model would answer for the phrases the voice tests speak."""
    if prompt.startswith("You answer callers' questions"):
        return DOCUMENT_ANSWER
    message = (LATEST_MESSAGE.search(prompt) or [None, ""])[1].lower()
    asked = (REQUESTED_SLOT.search(prompt) or [None, None])[1]
    digits = "".join(re.findall(r"\d", message))
    if "human" in message or "person" in message:
        return "hand over"
    if "forget it" in message:
        return "cancel flow"
    if "fee" in message:
        return "provide info"
    if "balance" in message:
        return "start flow check_balance"
    if "transfer" in message:
        return "start flow transfer_money"
    if asked and digits:
        return f"set slot {asked} {digits}"
    if asked == "account_type" and ("checking" in message or "savings" in message):
        return f"set slot account_type {'checking' if 'checking' in message else 'savings'}"
    return "cannot handle"


@pytest.fixture(scope="session")
def voice_model() -> Iterator[ModelServer]:
    server = ModelServer()
    server.respond = rule_based_commands
    server.thread.start()
    while not server.server.started:
        pass
    yield server
    server.server.should_exit = True


@pytest.fixture(scope="session")
def voice_project(tmp_path_factory: pytest.TempPathFactory, voice_model: ModelServer) -> Path:
    root = tmp_path_factory.mktemp("voice_bank")
    for part in PROJECT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, root / part)
    config = (root / "config.yml").read_text()
    llm = (
        "  - name: CompactLLMCommandGenerator\n    llm:\n      provider: openai\n      model: rules\n"
        f"      api_base: http://127.0.0.1:{voice_model.port}/v1\n      api_key: none\n"
    )
    (root / "config.yml").write_text(config.replace("  - name: CompactLLMCommandGenerator\n", llm))
    return root


@pytest.fixture
async def runtime(voice_project: Path) -> AsyncIterator[VoiceRuntime]:
    assistant = Assistant.from_path(voice_project)
    runtime = VoiceRuntime(assistant)
    yield runtime
    await runtime.close()
    await assistant.close()


def caller(name: str) -> bytes:
    """A caller turn from audio_fixtures/ as 16 kHz PCM."""
    return read_wav_pcm(FIXTURES / f"{name}.wav")


def transcript(name: str) -> str:
    return json.loads((FIXTURES / "transcripts.json").read_text())[name]
