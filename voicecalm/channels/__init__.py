"""Channels: each adapts one transport (REST, Twilio, SIP, WebRTC, microphone) to `Assistant`.

An HTTP channel is a module with an `APIRouter` factory; `voicecalm.server.create_app` mounts
every router into the one ASGI app. A channel the server runs never calls `Assistant.handle`
itself: it gets a `TurnHandler` from the server. Calling it starts the turn at once (or raises
`ShuttingDown`) and returns a future of the `TurnResult`; the turn runs as a task of its own, so
a dropped connection or a cancelled await never cuts it short, and a server shutdown waits for it
before the tracker store closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voicecalm.assistant import MessageSink, TurnResult, UserTurn

TurnHandler = Callable[[str, UserTurn, MessageSink | None], asyncio.Future[TurnResult]]


class ShuttingDown(Exception):
    """The server is stopping and takes no new turns (HTTP channels answer 503)."""

