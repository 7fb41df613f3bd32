"""ASR hints for the question being asked (voice.md §3).

While a collect is asked, Whisper gets the collect's description as `initial_prompt` (it reads
as preceding context: "the customer's eight-digit customer number, e.g. 12345678" makes digits
come out as digits) and a categorical slot's values as `hotwords`. Both go into the decoder
prompt of every utterance (faster-whisper cuts each at 223 tokens), and a long prompt costs
time and drowns the audio, so each is kept under ~200 characters.
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation
from voicecalm.voice.dtmf import active_collect

MAX_HINT_CHARS = 200


class AsrHints(NamedTuple):
    """What the next utterance is transcribed with; both None: no hints (clear earlier ones)."""

    initial_prompt: str | None = None
    hotwords: str | None = None


NO_HINTS = AsrHints()


def asr_hints(conversation: Conversation, project: Project) -> AsrHints:
    """The hints for the collect being asked; `NO_HINTS` when no collect is asked."""
    collect = active_collect(conversation.stack, project)
    if collect is None:
        return NO_HINTS
    description = collect.step.description
    prompt = textwrap.shorten(description, MAX_HINT_CHARS, placeholder="") if description else ""
    values = [str(v) for v in collect.slot.values] if collect.slot is not None and collect.slot.type == "categorical" else []
    return AsrHints(prompt or None, _within_limit(values) or None)


def _within_limit(values: list[str]) -> str:
    """The values joined with commas, as many whole values as fit."""
    kept: list[str] = []
    for value in values:
        if len(", ".join([*kept, value])) > MAX_HINT_CHARS:
            break
        kept.append(value)
    return ", ".join(kept)
