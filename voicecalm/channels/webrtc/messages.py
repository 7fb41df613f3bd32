"""What crosses the wire between the demo page and the server: the offer/answer bodies
(telephony.md §3) and the small JSON messages on the WebRTC data channel."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field

from voicecalm.channels.shell import HIDDEN_SLOTS
from voicecalm.dialogue.stack import CALL, is_flow_frame, is_user_flow
from voicecalm.tracker.conversation import Conversation

# --- signalling (HTTP) ------------------------------------------------------------------------


class Offer(BaseModel):
    """`POST /api/offer`: the page's SDP offer; a known `pc_id` renegotiates that connection."""

    sdp: str
    type: Literal["offer"]
    pc_id: str | None = None
    restart_pc: bool | None = None
    # pipecat's clients send `requestData`; accepted and kept for parity, voicecalm reads none of it.
    request_data: Any = Field(default=None, validation_alias=AliasChoices("request_data", "requestData"))


class Answer(BaseModel):
    sdp: str
    type: Literal["answer"]
    pc_id: str


class TrickledCandidate(BaseModel):
    candidate: str  # empty: end of candidates for this media line
    sdp_mid: str
    sdp_mline_index: int


class IcePatch(BaseModel):
    """`PATCH /api/offer`: trickled ICE candidates for a connection."""

    pc_id: str
    candidates: list[TrickledCandidate]


# --- data channel: server → page ------------------------------------------------------------


class TranscriptMessage(BaseModel):
    """What the caller said, as the ASR heard it (one per utterance)."""

    type: Literal["transcript"] = "transcript"
    text: str


class BotTextMessage(BaseModel):
    """A bot message, sent when the engine produces it (before or while it is spoken)."""

    type: Literal["bot_text"] = "bot_text"
    text: str
    message_id: str | None = None


class StateMessage(BaseModel):
    """The conversation after a turn: the flow the caller is in (the one they started, not a
    flow it calls, like authentication), the flows on the stack (bottom to top, called flows and
    patterns included) and the slots this conversation has set."""

    type: Literal["state"] = "state"
    flow: str | None
    stack: list[str]
    slots: dict[str, Any]


ServerMessage = TranscriptMessage | BotTextMessage | StateMessage
# Bookkeeping, not what the caller told the assistant (the call's metadata is the page's own).
UNSHOWN_SLOTS = HIDDEN_SLOTS | {"session_started_metadata"}


def state_message(conversation: Conversation) -> StateMessage:
    stack = conversation.stack
    active = next((frame for frame in reversed(stack) if is_user_flow(frame) and frame.get("frame_type") != CALL), None)
    return StateMessage(
        flow=active["flow_id"] if active else None,
        stack=[frame["flow_id"] for frame in stack if is_flow_frame(frame)],
        slots={
            name: value
            for name, value in conversation.slots.items()
            if value is not None and value != conversation.initial_slots.get(name) and name not in UNSHOWN_SLOTS
        },
    )


# --- data channel: page → server ------------------------------------------------------------


class DtmfMessage(BaseModel):
    """A keypad press on the page; reaches the pipeline as an `InputDTMFFrame` (voice.md §6)."""

    type: Literal["dtmf"]
    digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
