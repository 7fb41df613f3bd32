"""Channels: each adapts one transport (REST, Twilio, SIP, WebRTC, microphone) to `Assistant`.

An HTTP channel is a module with a FastAPI `APIRouter` factory; `voicecalm.server.create_app`
mounts every router into the one ASGI app. A channel never calls `Assistant.handle` itself: it
gets a `TurnHandler` (same signature) from the server, which counts the turn as in flight so a
shutdown waits for it, and raises `ShuttingDown` once the server has begun to stop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from voicecalm.assistant import MessageSink, TurnResult, UserTurn

TurnHandler = Callable[[str, UserTurn, MessageSink | None], Awaitable[TurnResult]]


class ShuttingDown(Exception):
    """The server is stopping and takes no new turns (HTTP channels answer 503)."""
