"""Dialogue stack frames in their serialised form (patterns.md §1), and queries over a stack."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from voicecalm.project.flows import START

Frame = Mapping[str, Any]

FLOW = "flow"
SEARCH = "search"
CHITCHAT = "chitchat"

REGULAR = "regular"
INTERRUPT = "interrupt"
LINK = "link"
CALL = "call"

COLLECT_INFORMATION = "pattern_collect_information"
VALIDATE_SLOT = "pattern_validate_slot"
CONTINUE_INTERRUPTED = "pattern_continue_interrupted"
COMPLETED = "pattern_completed"

_ALPHABET = string.ascii_letters


def new_frame_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def user_flow_frame(flow_id: str, frame_type: str) -> dict[str, Any]:
    return {"frame_id": new_frame_id(), "flow_id": flow_id, "step_id": START, "frame_type": frame_type, "type": FLOW}


def pattern_frame(pattern_id: str, **context: Any) -> dict[str, Any]:
    return {"frame_id": new_frame_id(), "flow_id": pattern_id, "step_id": START, "type": pattern_id, **context}


def responder_frame(kind: str) -> dict[str, Any]:
    return {"frame_id": new_frame_id(), "type": kind}


def is_user_flow(frame: Frame) -> bool:
    return frame.get("type") == FLOW


def is_flow_frame(frame: Frame) -> bool:
    """User flows and patterns: frames that run steps of a flow."""
    return "flow_id" in frame


def top(stack: Sequence[Frame]) -> Frame | None:
    return stack[-1] if stack else None


def context_of(stack: Sequence[Frame], index: int) -> Frame:
    """What `context` means for the frame at `index`: the frame itself, and for a question
    (collect or validate) also the frame it asks for, so that a pattern's own question can use
    that pattern's fields (`{{context.interrupted_flow_options}}`)."""
    frame = stack[index]
    if frame.get("type") in (COLLECT_INFORMATION, VALIDATE_SLOT) and index > 0:
        return {**stack[index - 1], **frame}
    return frame


def current_context(stack: Sequence[Frame]) -> Frame:
    return context_of(stack, len(stack) - 1) if stack else {}


def top_user_flow(stack: Sequence[Frame]) -> Frame | None:
    for frame in reversed(stack):
        if is_user_flow(frame):
            return frame
    return None


def user_flows(stack: Sequence[Frame]) -> Iterator[Frame]:
    return (frame for frame in stack if is_user_flow(frame))


def find_pattern(stack: Sequence[Frame], pattern_id: str) -> Frame | None:
    for frame in reversed(stack):
        if frame.get("type") == pattern_id:
            return frame
    return None


def index_of(stack: Sequence[Frame], frame_id: str) -> int | None:
    for index, frame in enumerate(stack):
        if frame["frame_id"] == frame_id:
            return index
    return None


def replace_frame(stack: Sequence[Frame], frame_id: str, **changes: Any) -> list[Frame]:
    """A new stack where one frame has new values (frames are never changed in place)."""
    return [{**frame, **changes} if frame["frame_id"] == frame_id else frame for frame in stack]


def asked_slot(stack: Sequence[Frame]) -> str | None:
    """The slot the bot is asking for right now, if the top frame is a collect."""
    frame = top(stack)
    if frame is not None and frame.get("type") == COLLECT_INFORMATION:
        return frame.get("collect")
    return None


def validated_slot(stack: Sequence[Frame]) -> str | None:
    frame = top(stack)
    if frame is not None and frame.get("type") == VALIDATE_SLOT:
        return frame.get("validate")
    return None


def block_of(stack: Sequence[Frame], index: int) -> tuple[int, int]:
    """The frames that belong to the user flow at `index`: it and everything above it up to the
    next user flow that is not one it called."""
    end = index + 1
    while end < len(stack) and not (is_user_flow(stack[end]) and stack[end].get("frame_type") != CALL):
        end += 1
    return index, end
