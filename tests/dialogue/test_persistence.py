"""Conversations in SQLite survive the process: a new process continues where the old one stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.dialogue.conftest import BANK
from voicecalm.assistant import Assistant, UserTurn
from voicecalm.dialogue.dsl import parse_commands

FIRST_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from voicecalm.assistant import Assistant, UserTurn
    from voicecalm.dialogue.dsl import parse_commands

    async def main(path):
        assistant = Assistant.from_path(path)
        result = await assistant.handle(
            "caller-7", UserTurn(text="send Jane money", commands=parse_commands("start flow transfer_money\\nset slot recipient Jane"))
        )
        print(json.dumps([m.response for m in result.messages]))
        await assistant.close()

    asyncio.run(main(sys.argv[1]))
    """
)


def _project_with_sqlite(tmp_path: Path) -> Path:
    project = tmp_path / "bank"
    shutil.copytree(BANK, project)
    (project / "endpoints.yml").write_text("tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: trackers.db\n")
    return project


async def test_conversation_continues_in_a_new_process(tmp_path: Path) -> None:
    project = _project_with_sqlite(tmp_path)
    first = subprocess.run(
        [sys.executable, "-c", FIRST_PROCESS, str(project)], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(first.stdout.strip().splitlines()[-1]) == ["utter_ask_amount"]
    assert (project / "trackers.db").exists()

    assistant = Assistant.from_path(project)
    conversation = await assistant.conversation("caller-7")
    assert conversation.slots["recipient"] == "Jane"
    assert [frame.get("flow_id") for frame in conversation.stack] == ["transfer_money", "pattern_collect_information"]
    result = await assistant.handle("caller-7", UserTurn(text="50", commands=parse_commands("set slot amount 50")))
    assert [m.response for m in result.messages] == ["utter_ask_confirmed"]
    assert result.messages[0].text == "Send 50.0 to Jane?"
    await assistant.close()

    reopened = Assistant.from_path(project)
    events = await reopened.store.events("caller-7")
    assert [e.name for e in events].count("user") == 2
    await reopened.close()
