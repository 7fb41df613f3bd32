"""Spoken numbers to digits in a transcript, for the slot being asked (voice.md §3).

Whisper often writes numbers as words ("two hundred and fifty dollars"); a small command
generator copies digits far more reliably than it does arithmetic on words. Two kinds of asked
slot get their transcript normalised, every other answer is left as it was heard:

- a float slot (amounts, counts): number words become numbers with `text2num`
  ("two hundred and fifty dollars" → "250 dollars", "twenty five point five" → "25.5"), and a run
  of single digits read one by one becomes one number ("one two three four" → "1234");
- a digit string held in a text slot (customer number, PIN, ZIP code): the collect has `dtmf`, or
  its description or slot name says "digit", "PIN", "passcode", "code", "ZIP" or names an
  identifier number ("account number", "customer number", "phone number", ...). Every run
  of numbers becomes one digit string ("twelve thirty four" → "1234", "zero four one two" →
  "0412"), and "oh" inside a run is a zero ("five oh seven" → "507").

Groups of several digits in a float answer are not joined: "twenty five fifty" stays "25 50",
because it may mean 25.50 or 2550, and a wrong guess moves the wrong amount of money; the
command generator sees both numbers and the bot's confirmation catches a misreading. Words that
are not numbers are never changed; `text2num` leaves isolated small numbers ("the blue one")
as words.
"""

from __future__ import annotations

import re

from text_to_num import alpha2digit

from voicecalm.project import Project, Slot
from voicecalm.project.flows import CollectStep
from voicecalm.tracker.conversation import Conversation
from voicecalm.voice.dtmf import active_collect

LANGUAGE = "en"
# Bare "number" is not enough: "street address with house number" is no digit string.
_DIGITS_WORDS = re.compile(
    r"\b(digits?|pin|passcode|code|zip|(account|customer|card|phone|telephone|reference|member|policy|order) number)\b",
    re.IGNORECASE,
)
# Number groups separated by spaces, commas or hyphens, the way a transcript writes dictation.
# A run never starts or ends inside a word or a decimal number ("2.5").
_START, _END = r"(?<!\w)(?<!\d\.)", r"(?!\w)(?!\.\d)"
_SINGLE_DIGIT_RUN = re.compile(_START + r"\d(?:[ ,-]+\d)+" + _END)
_NUMBER_RUN = re.compile(_START + r"\d+(?:[ ,-]+(?:\d+|oh|o)\b)*[ ,-]+\d+" + _END, re.IGNORECASE)
_OH = re.compile(r"\b(?:oh|o)\b", re.IGNORECASE)
_SEPARATORS = re.compile(r"[ ,-]+")


def expects_digit_string(slot: Slot, step: CollectStep | None) -> bool:
    """A text slot whose answer is a string of digits."""
    if slot.type != "text":
        return False
    if step is not None and step.dtmf is not None:
        return True
    described = f"{slot.name.replace('_', ' ')} {step.description if step is not None else ''}"
    return bool(_DIGITS_WORDS.search(described))


def normalise_for_slot(text: str, slot: Slot, step: CollectStep | None = None) -> str:
    """The transcript with spoken numbers as digits, when `slot` (asked by `step`) wants a
    number or a digit string; otherwise `text` unchanged."""
    if slot.type == "float":
        return _SINGLE_DIGIT_RUN.sub(_joined, alpha2digit(text, LANGUAGE))
    if expects_digit_string(slot, step):
        return _NUMBER_RUN.sub(_joined, alpha2digit(text, LANGUAGE))
    return text


def normalise_transcript(text: str, conversation: Conversation, project: Project) -> str:
    """`normalise_for_slot` for the collect being asked, if any."""
    collect = active_collect(conversation.stack, project)
    if collect is None or collect.slot is None:
        return text
    return normalise_for_slot(text, collect.slot, collect.step)


def _joined(run: re.Match[str]) -> str:
    return _SEPARATORS.sub("", _OH.sub("0", run.group(0)))
