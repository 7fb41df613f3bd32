"""Silence timeout values (voice.md §5) and the asyncio timer, with short real timeouts.

Tests assert whether and with what the expiry handler ran, never how long anything took."""

from __future__ import annotations

import asyncio
import logging
import shutil
import textwrap

import pytest

from tests.dialogue.conftest import BANK, Chat, make_assistant
from voicecalm.project import Project, load_project
from voicecalm.voice.dtmf import active_collect
from voicecalm.voice.silence import SilenceTimer, silence_timeout_for

SHORT = 0.05
WAIT = 5.0  # an upper bound for an expiry that must come, not a timing assertion

TIMED_FLOWS = """
flows:
  quick_nickname:
    description: A nickname, asked with a short timeout.
    steps:
      - collect: nickname
        silence_timeout: 5
      - action: utter_nickname_saved
  phone_pin:
    description: A PIN, with a timeout per channel.
    steps:
      - collect: pin
        silence_timeout: {twilio_media_streams: 8, sip: 12.5}
      - action: utter_logged_in
"""


@pytest.fixture(scope="module")
def timed_bank(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("silence") / "bank"
    shutil.copytree(BANK, root)
    (root / "data" / "timed.yml").write_text(textwrap.dedent(TIMED_FLOWS).lstrip("\n"))
    return load_project(root)


async def asked_timeout(chat: Chat, project: Project, channel: str, default: float = 30.0) -> float:
    collect = active_collect((await chat.conversation()).stack, project)
    return silence_timeout_for(collect.step if collect is not None else None, channel, default)


async def test_the_collect_being_asked_sets_the_timeout(timed_bank: Project) -> None:
    chat = Chat(make_assistant(timed_bank))
    await chat.say("cancel flow")
    assert await asked_timeout(chat, timed_bank, "sip", default=20) == 20  # nothing asked
    await chat.say("start flow transfer_money")
    assert await asked_timeout(chat, timed_bank, "sip", default=20) == 20  # a collect without its own
    await chat.say("cancel flow", "start flow quick_nickname")
    assert await asked_timeout(chat, timed_bank, "sip") == 5.0
    await chat.say("cancel flow", "start flow phone_pin")
    assert await asked_timeout(chat, timed_bank, "twilio_media_streams") == 8.0
    assert await asked_timeout(chat, timed_bank, "sip") == 12.5
    assert await asked_timeout(chat, timed_bank, "browser_audio", default=17) == 17  # channel not in the map


class Expiries:
    """The expiry handler: records each call and lets a test wait for the n-th."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.changed = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async def reached() -> None:
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(reached(), WAIT)


async def test_an_armed_timer_fires_once_with_its_timeout() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.arm(SHORT)
    assert timer.armed
    await expiries.wait_for(1)
    assert not timer.armed
    await asyncio.sleep(SHORT * 3)
    assert expiries.calls == [SHORT]


async def test_a_disarmed_timer_never_fires() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.arm(SHORT)
    timer.disarm()
    assert not timer.armed
    await asyncio.sleep(SHORT * 4)
    assert expiries.calls == []


async def test_arming_again_replaces_the_countdown() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.arm(SHORT)
    timer.arm(SHORT * 2)
    await expiries.wait_for(1)
    await asyncio.sleep(SHORT * 3)
    assert expiries.calls == [SHORT * 2]


async def test_a_restart_counts_the_running_countdown_again_and_fires_once() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.arm(SHORT)
    timer.restart()  # a DTMF key
    timer.restart()
    assert timer.armed
    await expiries.wait_for(1)
    await asyncio.sleep(SHORT * 3)
    assert expiries.calls == [SHORT]


async def test_a_restart_of_a_disarmed_timer_arms_nothing() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.restart()
    timer.arm(SHORT)
    timer.disarm()  # the session ended
    timer.restart()  # a key that arrives afterwards
    assert not timer.armed
    await asyncio.sleep(SHORT * 4)
    assert expiries.calls == []


async def test_a_zero_timeout_arms_nothing() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.arm(0)
    assert not timer.armed
    await asyncio.sleep(SHORT * 2)
    assert expiries.calls == []


async def test_the_handler_may_arm_the_timer_again() -> None:
    """The silence prompt is spoken, then the timer runs again (second and third silence)."""
    calls: list[float] = []
    done = asyncio.Event()

    async def on_expiry(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) < 3:
            timer.arm(seconds * 2)
        else:
            done.set()

    timer = SilenceTimer(on_expiry)
    timer.arm(SHORT / 2)
    await asyncio.wait_for(done.wait(), WAIT)
    assert calls == [SHORT / 2, SHORT, SHORT * 2]


async def test_a_failing_handler_is_logged_and_the_timer_keeps_working(caplog: pytest.LogCaptureFixture) -> None:
    expiries = Expiries()
    failures = 0

    async def on_expiry(seconds: float) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("tracker store down")
        await expiries(seconds)

    async def logged() -> None:
        while "handling the silence timeout failed" not in caplog.text:
            await asyncio.sleep(SHORT)

    timer = SilenceTimer(on_expiry)
    with caplog.at_level(logging.ERROR, logger="voicecalm.voice.silence"):
        timer.arm(SHORT)
        await asyncio.wait_for(logged(), WAIT)
    assert "tracker store down" in caplog.text
    timer.arm(SHORT)
    await expiries.wait_for(1)
    assert expiries.calls == [SHORT]


async def test_close_waits_for_an_expiry_being_handled() -> None:
    order: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def on_expiry(seconds: float) -> None:
        started.set()
        await release.wait()
        order.append("handled")

    timer = SilenceTimer(on_expiry)
    timer.arm(SHORT)
    await asyncio.wait_for(started.wait(), WAIT)
    closing = asyncio.create_task(timer.close())
    await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    await asyncio.wait_for(closing, WAIT)
    order.append("closed")
    assert order == ["handled", "closed"]


async def test_close_disarms_a_pending_countdown() -> None:
    expiries = Expiries()
    timer = SilenceTimer(expiries)
    timer.arm(SHORT)
    await timer.close()
    await asyncio.sleep(SHORT * 4)
    assert expiries.calls == [] and not timer.armed
