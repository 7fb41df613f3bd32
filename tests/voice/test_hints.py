"""Whisper hints for the collect being asked (voice.md §3 "ASR hints")."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from tests.dialogue.conftest import BANK, Chat, make_assistant
from voicecalm.project import Project, load_project
from voicecalm.voice.hints import MAX_HINT_CHARS, NO_HINTS, AsrHints, asr_hints

LONG_DESCRIPTION = "the branch where the customer opened the account " + "and a lot more detail " * 20
BRANCHES = [f"branch number {n} in the town of Springfield" for n in range(1, 12)]

EXTRA_FLOWS = f"""
flows:
  choose_branch:
    description: Pick a branch.
    steps:
      - collect: branch
        description: >-
          {LONG_DESCRIPTION}
      - action: utter_thanks
"""
EXTRA_DOMAIN = f"""
slots:
  branch:
    type: categorical
    values: {BRANCHES}
responses:
  utter_ask_branch:
    - text: Which branch?
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("hints") / "bank"
    shutil.copytree(BANK, root)
    (root / "domain").mkdir()
    shutil.move(root / "domain.yml", root / "domain" / "bank.yml")
    (root / "domain" / "branches.yml").write_text(textwrap.dedent(EXTRA_DOMAIN).lstrip("\n"))
    (root / "data" / "branches.yml").write_text(textwrap.dedent(EXTRA_FLOWS).lstrip("\n"))
    return load_project(root)


@pytest.fixture
async def chat(project: Project) -> Chat:
    chat = Chat(make_assistant(project))
    await chat.say("cancel flow")
    return chat


async def hints(chat: Chat, project: Project) -> AsrHints:
    return asr_hints(await chat.conversation(), project)


async def test_no_collect_asked_means_no_hints(chat: Chat, project: Project) -> None:
    assert await hints(chat, project) == NO_HINTS == AsrHints(None, None)


async def test_the_collect_description_becomes_the_prompt(chat: Chat, project: Project) -> None:
    await chat.say("start flow transfer_money")
    assert await hints(chat, project) == AsrHints(initial_prompt="the person who gets the money", hotwords=None)
    await chat.say("set slot recipient Jane")
    assert await hints(chat, project) == AsrHints(initial_prompt="how much to send", hotwords=None)


async def test_categorical_values_become_hotwords(chat: Chat, project: Project) -> None:
    assert await chat.say("start flow rate_service") == ["utter_ask_rating"]
    assert await hints(chat, project) == AsrHints(initial_prompt=None, hotwords="good, bad")


async def test_the_hints_follow_the_question_and_stop_with_it(chat: Chat, project: Project) -> None:
    assert await chat.say("start flow pay_bill") == ["utter_ask_pin"]
    assert await hints(chat, project) == AsrHints(None, None)  # a collect with nothing to hint
    assert await chat.say("set slot pin 1234") == ["utter_logged_in", "utter_ask_bill"]
    assert (await hints(chat, project)).hotwords == "electricity, water, phone"
    await chat.say("cancel flow")
    assert await hints(chat, project) == NO_HINTS


async def test_long_hints_are_cut_at_a_word_or_value(chat: Chat, project: Project) -> None:
    await chat.say("start flow choose_branch")
    prompt, hotwords = await hints(chat, project)
    assert prompt is not None and hotwords is not None
    assert len(prompt) <= MAX_HINT_CHARS and len(hotwords) <= MAX_HINT_CHARS
    description = LONG_DESCRIPTION.strip()
    assert description.startswith(prompt) and description[len(prompt)] == " "
    assert prompt.startswith("the branch where the customer opened the account and a lot more detail")
    kept = hotwords.split(", ")
    assert kept == BRANCHES[: len(kept)] and 1 < len(kept) < len(BRANCHES)
