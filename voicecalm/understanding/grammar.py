"""A GBNF grammar, built per turn, that lets a local model write only valid command lines.

The grammar names exactly the flows in the prompt and the slots they collect, with categorical
values and booleans spelled out and numbers bounded, so every completion parses. It does not make
a small model right; it makes it impossible for it to be wrong in form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from voicecalm.project import Flow, Project
from voicecalm.understanding.prompt import prompt_slots

MAX_LINES = 5
MAX_TEXT_CHARACTERS = 60


def _literal(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid GBNF string literal


def _alternatives(options: Sequence[str]) -> str:
    return "(" + " | ".join(_literal(option) for option in options) + ")"


def command_grammar(
    flows: Sequence[Flow],
    active: Sequence[Flow],
    project: Project,
    *,
    offtopic: bool,
    handoff: bool,
) -> str:
    flow_ids = sorted({flow.id for flow in [*flows, *active]})
    slot_rules: list[str] = []
    for slot in sorted({s.name: s for f in [*flows, *active] for s in prompt_slots(f, project, called=True)}.values(), key=lambda s: s.name):
        definition = project.domain.slots.get(slot.name)
        kind = definition.type if definition else "text"
        if kind == "categorical" and definition is not None:
            value = _alternatives([str(v) for v in definition.values] + ["null"])
        elif kind == "bool":
            value = '("True" | "False" | "null")'
        elif kind == "float":
            value = '(number | "null")'
        else:
            value = "text"
        slot_rules.append(f"{_literal(slot.name + ' ')} {value}")
    lines = []
    if flow_ids:
        lines += ['"start flow " flow', '"disambiguate flows " flow (" " flow){1,3}']
    if slot_rules:
        lines.append('"set slot " slot')
    lines += ['"cancel flow"', '"provide info"', '"repeat message"', '"skip question"', '"cannot handle"']
    if offtopic:
        lines.append('"offtopic reply"')
    if handoff:
        lines.append('"human handoff"')
    rules = [
        f'root ::= line ("\\n" line){{0,{MAX_LINES - 1}}}',
        "line ::= " + " | ".join(lines),
        f"text ::= [^\\n]{{1,{MAX_TEXT_CHARACTERS}}}",
        'number ::= "-"? [0-9]{1,9} ("." [0-9]{1,2})?',
    ]
    if flow_ids:
        rules.append("flow ::= " + _alternatives(flow_ids))
    if slot_rules:
        rules.append("slot ::= " + " | ".join(f"({rule})" for rule in slot_rules))
    return "\n".join(rules) + "\n"
