"""Keypad input into collect steps (voice.md §6).

A collect step with `dtmf` takes its answer from the phone keypad: keys are gathered while that
collect is being asked, and the completed input becomes one user turn that sets the slot
directly (no LLM call). The load-time warning for a `dtmf` with neither `length` nor
`finish_on_key` is the project validator's (`voicecalm/project/validation.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voicecalm.assistant import UserTurn
from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import CUSTOM, SetSlot
from voicecalm.dialogue.slot_values import coerce
from voicecalm.project import Project, Slot
from voicecalm.project.flows import CollectStep
from voicecalm.tracker.conversation import Conversation

DTMF_KEYS = frozenset("0123456789*#ABCD")
DEFAULT_FINISH_KEY = "#"  # for a `dtmf` with neither `length` nor `finish_on_key`
SOURCE_DTMF = "dtmf"
AUDIO_INPUT_DISABLED = "dtmf_audio_input_disabled"  # `user_input_suppressed` reason


@dataclass(frozen=True, slots=True)
class ActiveCollect:
    """The collect being asked: the top frame is `pattern_collect_information`."""

    frame_id: str  # the collect frame: a new one means a different question
    step: CollectStep
    slot: Slot | None


def active_collect(stack: Sequence[Mapping[str, Any]], project: Project) -> ActiveCollect | None:
    """The collect step being asked, found through the flow frame that pushed the collect
    pattern (directly below it, its `step_id` on the collect step)."""
    frame = stacks.top(stack)
    if frame is None or frame.get("type") != stacks.COLLECT_INFORMATION or len(stack) < 2:
        return None
    owner = stack[-2]
    flow = project.flows.get(owner.get("flow_id", ""))
    step = flow.step_by_id.get(owner.get("step_id", "")) if flow is not None else None
    if not isinstance(step, CollectStep) or step.collect != frame.get("collect"):
        return None
    return ActiveCollect(frame["frame_id"], step, project.domain.slots.get(step.collect))


def allows_audio_input(conversation: Conversation, project: Project) -> bool:
    """False while a collect with `dtmf: {allow_audio_input: false}` is asked: transcripts are
    then recorded as `user_input_suppressed` (reason `dtmf_audio_input_disabled`), not run."""
    collect = active_collect(conversation.stack, project)
    return collect is None or collect.step.dtmf is None or collect.step.dtmf.allow_audio_input


class DtmfCollector:
    """One call's keypad buffer. `press` returns the user turn a key completes, else None."""

    def __init__(self, project: Project, *, metadata: Mapping[str, Any] | None = None, input_channel: str | None = None) -> None:
        self.project = project
        self.metadata = dict(metadata or {})  # the call parameters every user message carries
        self.input_channel = input_channel
        self._buffer = ""
        self._collect_frame: str | None = None

    @property
    def buffer(self) -> str:
        return self._buffer

    def clear(self) -> None:
        """Discard a partial input (silence timeout, end of the collect)."""
        self._buffer = ""
        self._collect_frame = None

    def press(self, key: str, conversation: Conversation) -> UserTurn | None:
        """Add one key. Keys are ignored (and the buffer cleared) unless a collect with `dtmf`
        is asked; a different collect than the one the buffer was typed for starts afresh.
        Completion: `length` keys, or `finish_on_key` (not part of the input; alone it completes
        nothing)."""
        if key not in DTMF_KEYS:
            raise ValueError(f"{key!r} is not a DTMF key (0-9, *, #, A-D)")
        collect = active_collect(conversation.stack, self.project)
        if collect is None or collect.step.dtmf is None:
            self.clear()
            return None
        if collect.frame_id != self._collect_frame:
            self._buffer, self._collect_frame = "", collect.frame_id
        dtmf = collect.step.dtmf
        finish_key = dtmf.finish_on_key or (DEFAULT_FINISH_KEY if dtmf.length is None else None)
        if key == finish_key:
            if not self._buffer:
                return None
        else:
            self._buffer += key
            if dtmf.length is None or len(self._buffer) < dtmf.length:
                return None
        digits = self._buffer
        self.clear()
        return self._turn(collect, digits)

    def _turn(self, collect: ActiveCollect, digits: str) -> UserTurn:
        value: Any = digits
        if collect.slot is not None:
            valid, coerced = coerce(collect.slot, digits)
            value = coerced if valid else digits  # an invalid value is left to the slot's rejections
        return UserTurn(
            text=digits,
            commands=[SetSlot(collect.step.collect, value, CUSTOM)],
            metadata={**self.metadata, "source": SOURCE_DTMF},
            input_channel=self.input_channel,
        )
