"""Twilio Media Streams messages (telephony.md §1.3–1.4): every frame Twilio sends is validated
here before anything acts on it."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024  # a media frame is ~300 bytes; anything this big is not Twilio
KNOWN_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})


class _Message(BaseModel):
    # Twilio adds fields over time; what we need is checked, the rest is tolerated.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Connected(_Message):
    event: Literal["connected"]
    protocol: str
    version: str


class MediaFormat(_Message):
    encoding: str
    sampleRate: int
    channels: int


class StartDetails(_Message):
    streamSid: str
    accountSid: str
    callSid: str
    tracks: list[str] = Field(default_factory=list)
    customParameters: dict[str, str] = Field(default_factory=dict)
    mediaFormat: MediaFormat


class Start(_Message):
    event: Literal["start"]
    sequenceNumber: str
    streamSid: str
    start: StartDetails


class MediaDetails(_Message):
    track: str = "inbound"
    chunk: str
    timestamp: str
    payload: bytes  # μ-law 8 kHz, decoded from base64

    @field_validator("payload", mode="before")
    @classmethod
    def _decode(cls, value: object) -> bytes:
        if not isinstance(value, str):
            raise ValueError("payload must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("payload is not valid base64") from error


class Media(_Message):
    event: Literal["media"]
    sequenceNumber: str
    streamSid: str
    media: MediaDetails


class DtmfDetails(_Message):
    track: str = "inbound_track"
    digit: str


class Dtmf(_Message):
    event: Literal["dtmf"]
    sequenceNumber: str
    streamSid: str
    dtmf: DtmfDetails


class MarkDetails(_Message):
    name: str


class Mark(_Message):
    event: Literal["mark"]
    sequenceNumber: str
    streamSid: str
    mark: MarkDetails


class StopDetails(_Message):
    accountSid: str
    callSid: str


class Stop(_Message):
    event: Literal["stop"]
    sequenceNumber: str
    streamSid: str
    stop: StopDetails


TwilioMessage = Connected | Start | Media | Dtmf | Mark | Stop
_MESSAGE = TypeAdapter[TwilioMessage](Annotated[TwilioMessage, Field(discriminator="event")])


class FrameTooLarge(Exception):
    """A frame over `MAX_FRAME_BYTES`: the socket is closed."""


class BadFrame(Exception):
    """Not a Media Streams message: binary, not JSON, or a known event with the wrong shape.
    The message says what was wrong, never what the frame held (it may carry a token)."""


def frame_size(data: str | bytes) -> int:
    if isinstance(data, bytes):
        return len(data)
    # A str frame came off the wire as UTF-8; lone surrogates cannot, but count them anyway.
    return len(data.encode("utf-8", "surrogatepass"))


def parse_frame(data: str | bytes) -> TwilioMessage | None:
    """The message in one websocket frame; None for an event this version does not know (logged
    and ignored, as Twilio may add events). Raises `FrameTooLarge` or `BadFrame`."""
    if frame_size(data) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {frame_size(data)} bytes exceeds {MAX_FRAME_BYTES}")
    if isinstance(data, bytes):
        raise BadFrame("binary frame (Media Streams sends JSON text frames)")
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as error:
        raise BadFrame(f"not JSON ({type(error).__name__})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise BadFrame("not a JSON object with a string 'event'")
    event = raw["event"]
    if event not in KNOWN_EVENTS:
        logger.info("ignoring unknown Media Streams event %r", event[:40])
        return None
    try:
        return _MESSAGE.validate_python(raw)
    except ValidationError as error:
        fields = sorted({".".join(str(part) for part in e["loc"][1:])[:60] for e in error.errors()})
        raise BadFrame(f"malformed {event!r} message (fields: {', '.join(fields)})") from None


def mark_message(stream_sid: str, name: str) -> dict[str, object]:
    """The `mark` Twilio echoes once the audio sent before it has played (or was cleared)."""
    return {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}
