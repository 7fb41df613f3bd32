"""Categorical values a message names outright, for the flow the model starts in that turn.

"Check my savings balance": the embedded model writes `start flow check_balance` and stops, in
about half of such first messages, although `savings` is one of `account_type`'s values and the
grammar offers the line. When the message holds exactly one allowed value of a slot of the
started flow, word for word, and the model set nothing for that slot, the slot is set. A value
named for two of the flow's slots, or two values for one slot ("from checking to savings"), are
left to the model: only an unambiguous mention is read.
"""

from __future__ import annotations

import re

from voicecalm.dialogue.commands import Command, SetSlot, StartFlow
from voicecalm.project import Project
from voicecalm.understanding.prompt_slots import prompt_slots


def names(message: str, value: str) -> bool:
    """Whether `message` holds `value` as a whole word or phrase, in any case."""
    return re.search(rf"(?<![\w-]){re.escape(value.lower())}(?![\w-])", message.lower()) is not None


def named_values(commands: list[Command], project: Project, message: str) -> list[Command]:
    """`commands` plus a `set slot` for each slot of a started flow whose one allowed value the
    message names and that the commands leave unset."""
    already = {command.name for command in commands if isinstance(command, SetSlot)}
    added: list[Command] = []
    for command in commands:
        if not isinstance(command, StartFlow) or command.flow not in project.flows:
            continue
        found: dict[str, list[str]] = {}
        for slot in prompt_slots(project.flows[command.flow], project):
            definition = project.domain.slots.get(slot.name)
            if definition is None or definition.type != "categorical":
                continue
            found[slot.name] = [str(value) for value in slot.allowed_values or () if names(message, str(value))]
        values = [value for named in found.values() for value in named]
        for name, named in found.items():
            if name not in already and len(named) == 1 and values.count(named[0]) == 1:
                added.append(SetSlot(name, named[0]))
                already.add(name)
    return commands + added
