"""Twilio Media Streams (telephony.md §1): a phone number answered by the voice pipeline.

`twilio_router` gives the routes `voicecalm run` mounts; a call's media runs through
`TwilioMediaTransport` (pipecat's websocket transport and Twilio serializer, plus marks and
real-time pacing) into `VoiceRuntime.run_call`, with `TwilioCallControl` for hang-up and transfer.
"""

from voicecalm.channels.twilio.control import TwilioCallControl, TwilioRest
from voicecalm.channels.twilio.media import MarkLedger, TwilioMediaTransport
from voicecalm.channels.twilio.routes import CHANNEL_NAME, PREFIX, CallStatusReport, twilio_router
from voicecalm.channels.twilio.security import StreamGrant, StreamTokens

__all__ = [
    "CHANNEL_NAME",
    "PREFIX",
    "CallStatusReport",
    "MarkLedger",
    "StreamGrant",
    "StreamTokens",
    "TwilioCallControl",
    "TwilioMediaTransport",
    "TwilioRest",
    "twilio_router",
]
