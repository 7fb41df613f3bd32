"""Silence timeout (voice.md §5): how long the bot waits for the caller, and the timer.

The value: a collect step's `silence_timeout` while it is asked (seconds, or a map channel →
seconds), else the channel default (`settings.default_silence_timeout`). The timer belongs to the
engine processor, which arms it when the bot has finished speaking, restarts it on each DTMF
key, and disarms it when the caller speaks or types, when new bot audio starts, and at session
end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from voicecalm.project.flows import CollectStep

logger = logging.getLogger(__name__)

ExpiryHandler = Callable[[float], Awaitable[None]]


def silence_timeout_for(step: CollectStep | None, channel: str, channel_default: float) -> float:
    """Seconds of silence allowed while `step` is asked (None: no collect asked)."""
    value = step.silence_timeout if step is not None else None
    if isinstance(value, Mapping):
        value = value.get(channel)
    return channel_default if value is None else float(value)


class SilenceTimer:
    """A countdown that calls `on_expiry(seconds)` once, in its own task, unless disarmed or
    re-armed first. Must be used inside a running event loop."""

    def __init__(self, on_expiry: ExpiryHandler) -> None:
        self._on_expiry = on_expiry
        self._countdown: asyncio.TimerHandle | None = None
        self._seconds = 0.0
        self._handling: set[asyncio.Task[None]] = set()

    @property
    def armed(self) -> bool:
        return self._countdown is not None

    def arm(self, seconds: float) -> None:
        """Start counting `seconds` from now, replacing any countdown. 0 disables silence
        handling: nothing is armed."""
        self.disarm()
        self._seconds = seconds
        if seconds > 0:
            self._countdown = asyncio.get_running_loop().call_later(seconds, self._expire)

    def restart(self) -> None:
        """Count the running countdown's full time again (a DTMF key was pressed); nothing
        happens when disarmed, so a key after the session ended arms nothing."""
        if self.armed:
            self.arm(self._seconds)

    def disarm(self) -> None:
        if self._countdown is not None:
            self._countdown.cancel()
            self._countdown = None

    async def close(self) -> None:
        """Disarm, and wait for an expiry that is already being handled."""
        self.disarm()
        if self._handling:
            await asyncio.gather(*self._handling, return_exceptions=True)

    def _expire(self) -> None:
        self._countdown = None
        task = asyncio.get_running_loop().create_task(self._on_expiry(self._seconds))
        self._handling.add(task)
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling the silence timeout failed", exc_info=task.exception())
