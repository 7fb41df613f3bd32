"""Answers that need no language model (commands.md §3, fast path).

When the bot has just asked for slot S and the whole message is one value of S's type, the
message sets S. For a text slot that is a bare number ("2468" for a passcode, "1234 5678" for a
customer number): a number can only be the answer, while any other text might be a request, so
words go to the model. Anything more than a bare value (a correction, a second request) is left to the
model, so the fast path never changes what a conversation means, only how quickly it is read.
"""

from __future__ import annotations

import re
from typing import Any

from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.commands import LLM, SetSlot
from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation

YES = frozenset({"yes", "yeah", "yep", "yup", "sure", "correct", "yes please", "of course"})
NO = frozenset({"no", "nope", "nah", "no thanks", "no thank you", "not really"})
_AMOUNT = re.compile(r"^(?:\$|€|£)?\s*(-?\d{1,9}(?:[.,]\d{1,2})?)\s*(?:\$|€|£|dollars?|bucks|euros?|pounds?|usd)?$")
_DIGITS = re.compile(r"^\d+(?:[ -]\d+)*$")
_EDGE_PUNCTUATION = " \t.!?,;:'\""
_INNER_PAUSE = re.compile(r"[,;:!?]\s")


def _normalised(text: str) -> str:
    # Transcripts punctuate inside short answers ("Yes, please."); "2,500" keeps its comma.
    return " ".join(_INNER_PAUSE.sub(" ", text).strip(_EDGE_PUNCTUATION).lower().split())


def _value(kind: str, text: str, allowed: tuple[Any, ...]) -> tuple[bool, Any]:
    words = _normalised(text)
    if kind == "bool":
        if words in YES:
            return True, True
        if words in NO:
            return True, False
    elif kind == "float":
        match = _AMOUNT.match(words)
        if match:
            return True, float(match.group(1).replace(",", "."))
    elif kind == "text":
        if _DIGITS.match(words):
            return True, words
    elif kind == "categorical":
        matches = [value for value in allowed if str(value).lower() == words]
        if len(matches) == 1:
            return True, matches[0]
    return False, None


def fast_path(text: str, conversation: Conversation, project: Project) -> list[SetSlot] | None:
    """`[set slot S value]` when the message is only a value of the asked slot, else None."""
    asked = stacks.asked_slot(conversation.stack)
    slot = project.domain.slots.get(asked) if asked else None
    if slot is None:
        return None
    found, value = _value(slot.type, text, slot.values)
    return [SetSlot(slot.name, value, LLM)] if found else None
