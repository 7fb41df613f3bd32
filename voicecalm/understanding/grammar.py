"""A GBNF grammar, built per turn, that lets a local model write only valid, plausible command lines.

The grammar names exactly the flows in the prompt and the slots it may fill, with categorical
values and booleans spelled out, so every completion parses. It does not make a small model
right, but it removes whole classes of mistakes that a 1.5B model makes at temperature 0:

- one answer-type command (`offtopic reply`, `provide info`, ...) stands alone;
- `set slot` names the slot being asked or a slot of an active flow, or follows the
  `start flow` line of its own flow; each slot at most once, in a fixed order (at temperature 0
  the model otherwise repeated a line until the length limit); one flow started per answer;
- `skip question` only while a question is pending, `cancel flow` only inside a flow; `if: False`
  flows and the flow in progress are never started;
- values are grounded in the message: a text value is a span of the user's words (or digits,
  when the user spoke numbers as words), a number one that the message holds in digits (any
  number when it spells one out; an invented one is dropped after parsing, see
  `ungrounded_numbers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from voicecalm.dialogue.commands import Command, SetSlot
from voicecalm.project import Flow, Project
from voicecalm.understanding.prompt_slots import prompt_slots

MAX_DIGITS = 12

NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
    "thousand million half dozen".split()
)
_WORD = re.compile(r"\S+")
_DIGITS = re.compile(r"\d[\d,]*(?:\.\d+)?")
# Punctuation a value never starts or ends with ("Lee." → "Lee", "(Anna" → "Anna").
_EDGE = "\"'`.,;:!?()[]{}<>"


def _literal(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid GBNF string literal


def _alternatives(options: Iterable[str]) -> str:
    return "(" + " | ".join(_literal(option) for option in options) + ")"


def _rule_name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower() or "x"


class _Message:
    """What the user's words allow as slot values."""

    def __init__(self, text: str | None) -> None:
        self.free = text is None  # no message given: values are only bounded, not grounded
        words = [match.group() for match in _WORD.finditer(text or "")]
        self.words = words
        lowered = {w.strip(_EDGE).lower() for w in words}
        self.spells_numbers = bool(lowered & NUMBER_WORDS)
        self.numbers = sorted({n.replace(",", "").rstrip(".") for n in _DIGITS.findall(text or "")})

    def span_rules(self) -> list[str]:
        """`span ::= span-0 | span-1 ...`: any run of consecutive words, its edges without
        punctuation ("to David Lee." gives "David Lee"). Linear in the message length: rule
        `span-i` is word i, optionally followed by the rest of a span through word i+1."""
        words = [w.lstrip(_EDGE) for w in self.words]  # a value never starts with a quote or bracket
        starts = [i for i, word in enumerate(words) if word.rstrip(_EDGE)]
        if not starts:
            return []
        rules = []
        for i, word in enumerate(words):
            options = [_literal(word.rstrip(_EDGE))] if word.rstrip(_EDGE) else []
            if i + 1 < len(words):
                options.append(f"{_literal((word or self.words[i]) + ' ')} span-{i + 1}")
            rules.append(f"span-{i} ::= " + (" | ".join(options) or '""'))
        rules.append("span ::= " + " | ".join(f"span-{i}" for i in starts))
        return rules

    def number(self) -> str:
        """The numbers a float slot may take: those in the message when it has digits. Without
        any number in the message the line stays writable (any number) and `grounded` drops it
        afterwards: a grammar without the line made the model, which wanted to write it anyway,
        turn its "\n" into some other line it was forced to finish."""
        if self.numbers and not self.spells_numbers:
            return _alternatives(self.numbers)
        return "number"

    def grounded(self, value: object) -> bool:
        """Whether a number the model wrote can come from the message."""
        if self.free or self.spells_numbers:
            return True
        text = str(value)
        return any(text == n or text.rstrip("0").rstrip(".") == n for n in self.numbers)

    def text(self) -> str | None:
        if self.free:
            return "text"
        options = []
        if self.words:
            options.append("span")
        if self.spells_numbers:
            options.append("digits")  # "two four six eight" → 2468
        return " | ".join(options) or None


def ungrounded_numbers(commands: list[Command], project: Project, message: str) -> list[Command]:
    """`commands` without the `set slot` lines of float slots whose number the message does not
    hold (neither in digits nor spelled out): the model invented them."""
    words = _Message(message)
    kept = []
    for command in commands:
        if isinstance(command, SetSlot):
            slot = project.domain.slots.get(command.name)
            if slot is not None and slot.type == "float" and not words.grounded(command.value):
                continue
        kept.append(command)
    return kept


def _value(project: Project, slot_name: str, message: _Message) -> str | None:
    definition = project.domain.slots.get(slot_name)
    kind = definition.type if definition else "text"
    if kind == "categorical" and definition is not None:
        return _alternatives([str(v) for v in definition.values])
    if kind == "bool":
        return '("True" | "False")'
    if kind == "float":
        return message.number()
    if kind in ("text", "any"):
        return message.text()
    return None  # list slots and the like: the model does not fill them


def _slot_lines(names: Iterable[str], project: Project, message: _Message) -> list[str]:
    """One `"set slot name " (value)` expression per slot that has something to be filled with."""
    lines = []
    for name in dict.fromkeys(names):  # in the order given, once each
        value = _value(project, name, message)
        if value is not None:
            lines.append(f"{_literal('set slot ' + name + ' ')} ({value})")
    return lines


def _sequence(name: str, lines: Sequence[str], rules: list[str]) -> str | None:
    """A rule for one or more of `lines`, in their order, each at most once (a small model at
    temperature 0 otherwise repeats a line until the length limit)."""
    if not lines:
        return None
    for i, line in enumerate(lines):
        later = " | ".join(f"{name}-{j}" for j in range(i + 1, len(lines)))
        rules.append(f"{name}-{i} ::= {line}" + (f' ("\\n" ({later}))?' if later else ""))
    rules.append(f"{name} ::= " + " | ".join(f"{name}-{i}" for i in range(len(lines))))
    return name


def command_grammar(
    flows: Sequence[Flow],
    active: Sequence[Flow],
    project: Project,
    *,
    offtopic: bool,
    handoff: bool,
    asked_slot: str | None = None,
    message: str | None = None,
    current_flow: str | None = None,
    skip: bool = True,
) -> str:
    """The grammar for one turn. `flows` are the flows in the prompt, `active` those on the stack
    (their slots, called flows' included, may be set or corrected), `asked_slot` the pending
    question's slot (also a pattern's, e.g. continue_interrupted_flow_confirmation), `message`
    the user's text that values must come from (None: any bounded value), `current_flow` the
    flow in progress: it is not started again (cleanup would drop that), its slots are set.
    `skip`: `skip question` may be written while a question is pending."""
    words = _Message(message)
    rules: list[str] = []

    singles = ['"provide info"', '"repeat message"', '"cannot handle"']
    if offtopic:
        singles.append('"offtopic reply"')
    if handoff:
        singles.append('"human handoff"')
    if asked_slot is not None and skip:
        singles.append('"skip question"')
    # `if: False` flows (reached by call or link) are never started by the model, even when active.
    startable = sorted({flow.id: flow for flow in flows if flow.guard is not False}.values(), key=lambda f: f.id)
    if len(startable) >= 2:
        singles.append('"disambiguate flows " flow (" " flow){1,3}')
        rules.append("flow ::= " + _alternatives(flow.id for flow in startable))

    # The asked slot first: it is the likeliest answer.
    active_slots = [asked_slot] if asked_slot is not None else []
    active_slots += [s.name for flow in reversed(active) for s in prompt_slots(flow, project, called=True)]
    sets = _sequence("set", _slot_lines(active_slots, project, words), rules)

    blocks: dict[str, str] = {}
    for flow in startable:
        if flow.id == current_flow:
            continue
        name = f"slots-{_rule_name(flow.id)}"
        slots = _sequence(name, _slot_lines((s.name for s in prompt_slots(flow, project)), project, words), rules)
        blocks[flow.id] = f'{_literal(flow.id)} ("\\n" {slots})?' if slots else _literal(flow.id)
    if blocks:
        rules.append('start ::= "start flow " (' + " | ".join(f"({block})" for block in blocks.values()) + ")")

    # One flow per answer (or one after `cancel flow`). A second `start flow` line was allowed
    # at first, for "check my balance and then pay Anna", but it was mostly written by force: a
    # model that wanted to invent one more slot line ("\nset slot transfer_amount ..." with no
    # amount in the message) had its "\n" accepted and then only `start flow` left to write.
    plans = []
    if sets:
        plans.append("set")
    if blocks:
        plans.append("start")
    if active:
        plans.append('"cancel flow"' + (' ("\\n" start)?' if blocks else ""))

    rules.insert(0, "root ::= (" + " | ".join(["single", *(f"({plan})" for plan in plans)]) + ') "\\n"{0,2}')
    rules.insert(1, "single ::= " + " | ".join(singles))
    rules += [
        'text ::= [^\\n]{1,60}',
        'number ::= "-"? [0-9]{1,9} ("." [0-9]{1,2})?',
        f"digits ::= [0-9]{{1,{MAX_DIGITS}}}",
    ]
    rules += words.span_rules()
    return "\n".join(rules) + "\n"
