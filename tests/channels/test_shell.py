"""`voicecalm shell` driven through a pseudo-terminal, as a person would type into it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
import yaml

BANK = Path(__file__).parents[1] / "dialogue" / "bank"
VOICECALM = shutil.which("voicecalm", path=str(Path(sys.executable).parent))
PROMPT = "Your input -> "
START_TIMEOUT = 30  # the first start imports rasa-sdk and friends


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test bank, where `/transfer` starts transfer_money and no custom action is needed."""
    root = tmp_path_factory.mktemp("bank")
    shutil.copytree(BANK, root, dirs_exist_ok=True)
    domain = yaml.safe_load((root / "domain.yml").read_text())
    domain["intents"] = ["transfer"]
    (root / "domain.yml").write_text(yaml.safe_dump(domain))
    flows = yaml.safe_load((root / "data" / "flows.yml").read_text())
    transfer = flows["flows"]["transfer_money"]
    transfer["nlu_trigger"] = [{"intent": "transfer"}]
    confirmed = transfer["steps"][2]["next"][0]
    confirmed["then"] = [step for step in confirmed["then"] if step["action"] != "action_send_money"]
    (root / "data" / "flows.yml").write_text(yaml.safe_dump(flows, sort_keys=False))
    (root / "endpoints.yml").write_text(yaml.safe_dump({"tracker_store": {"type": "InMemoryTrackerStore"}}))
    return root


def spawn_shell(project: Path, *args: str) -> pexpect.spawn:
    assert VOICECALM, "the voicecalm script is not installed next to the interpreter"
    env = {**os.environ, "TERM": "dumb", "NO_COLOR": "1"}
    child = pexpect.spawn(VOICECALM, ["shell", str(project), *args], env=env, encoding="utf-8", timeout=10)
    child.expect_exact(PROMPT, timeout=START_TIMEOUT)
    return child


def say(child: pexpect.spawn, line: str, *answers: str) -> None:
    child.sendline(line)
    for answer in answers:
        child.expect_exact(answer)
    child.expect_exact(PROMPT)


def test_a_transfer_from_start_to_end_with_a_button(project: Path) -> None:
    child = spawn_shell(project)
    say(child, "/transfer", "Who should get the money?")
    say(child, "/SetSlots(recipient=Jane)", "How much should I send to Jane?")
    say(child, "/SetSlots(amount=50)", "Send 50.0 to Jane?", "1. Yes", "2. No")
    say(child, "1", "Sent 50.0 to Jane.")
    child.sendline("/stop")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "/SetSlots(amount=50)" in (project / ".voicecalm" / "shell_history").read_text()


def test_debug_prints_commands_stack_and_changed_slots(project: Path) -> None:
    child = spawn_shell(project, "--debug")
    child.sendline("/transfer")
    for line in ["Who should get the money?", "commands:", "start flow transfer_money", "stack:"]:
        child.expect_exact(line)
    child.expect(r"transfer_money  \S*collect_recipient")
    child.expect_exact(PROMPT)
    say(child, "/SetSlots(recipient=Jane)", "set slot recipient Jane", "slots changed:", 'recipient = "Jane"')
    child.sendline("/stop")
    child.expect(pexpect.EOF)


def test_ctrl_d_ends_the_shell_cleanly(project: Path) -> None:
    child = spawn_shell(project, "--conversation-id", "ctrl-d")
    # On a dumb terminal prompt_toolkit writes the prompt before it switches to raw mode; a Ctrl-D
    # typed in between is taken by the terminal itself.
    time.sleep(0.3)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in (child.before or "")


def test_without_a_terminal_it_reads_plain_lines(project: Path) -> None:
    assert VOICECALM
    done = subprocess.run(
        [VOICECALM, "shell", str(project)], input="/transfer\n", capture_output=True, text=True, timeout=START_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "Who should get the money?" in done.stdout
