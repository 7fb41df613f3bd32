"""Values a message names outright, added where the embedded model left them out.

"Check my savings balance", "send money to Anna", "I want to pay Anna 10 dollars": the embedded
model writes `start flow ...` and stops in about half of such first messages, although the
grammar offers the slot lines. After the model, a slot of the started flow that it left unset
is set when the message names its value unambiguously:

- a categorical slot: the message holds exactly one of its allowed values, word for word;
- a float slot, the flow's only one left: the message holds exactly one number (digits or
  words, "a hundred and twenty" → 120);
- a name slot (free text whose description gives a capitalised example, "e.g. Anna Schmidt"),
  the flow's only one left: the message holds exactly one run of capitalised words after its
  first word ("David Lee", "Riverside Apartments"), as a transcriber or a typist writes names.

A value named for two slots, two values for one slot ("from checking to savings"), two numbers
or two names are left to the model: only an unambiguous mention is read. The same literal rule
completes an answer in a flow under way ("the credit card, it was stolen" answers the card
question and names the reason), and the answer to a clarification question carries the values of
the request it clarifies ("my savings account" → "just the balance").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from text_to_num import alpha2digit

from voicecalm.dialogue.commands import CancelFlow, Command, SetSlot, StartFlow
from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import ActionExecuted, UserUttered
from voicecalm.understanding.prompt_slots import PromptSlot, active_slots, prompt_slots

CLARIFY_ACTION = "action_clarify_flows"
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_CAPITALISED = re.compile(r"^[A-Z][\w'&.-]*$")
_NAME_EXAMPLE = re.compile(r"\be\.g\.\s*([A-Z][a-z]+(?: [A-Z][a-z]+)*)\s*(?:$|[,;.]| or )")
_EDGE = ".,;:!?\"'()"


def names(message: str, value: str) -> bool:
    """Whether `message` holds `value` as a whole word or phrase, in any case."""
    return re.search(rf"(?<![\w-]){re.escape(value.lower())}(?![\w-])", message.lower()) is not None


def numbers_in(message: str) -> list[float]:
    """The numbers a message holds, in digits or in words."""
    found = []
    for text in _NUMBER.findall(alpha2digit(message, "en")):
        try:
            found.append(float(text.replace(",", "")))
        except ValueError:
            continue
    return found


def capitalised_runs(message: str) -> list[str]:
    """Runs of capitalised words after the first word ("I" is no name), a comma or full stop
    ending a run: names as they are written ("pay David Lee" → ["David Lee"])."""
    runs: list[str] = []
    continues = False  # the next capitalised word belongs to the last run
    for index, raw in enumerate(message.split()):
        word = raw.strip(_EDGE)
        capitalised = index > 0 and bool(_CAPITALISED.match(word)) and word != "I" and not word.startswith("I'")
        if capitalised:
            if continues:
                runs[-1] += " " + word
            else:
                runs.append(word)
        continues = capitalised and not raw.endswith((",", ".", ";", ":", "!", "?"))
    return runs


def _is_name_slot(slot: PromptSlot) -> bool:
    return bool(_NAME_EXAMPLE.search(slot.description))


def _slot_type(project: Project, name: str) -> str | None:
    definition = project.domain.slots.get(name)
    return definition.type if definition else None


def _literal_values(slots: Iterable[PromptSlot], project: Project, message: str) -> dict[str, str]:
    """slot → the one allowed value the message names, for categorical slots whose value is
    named unambiguously (once, and for no other of these slots)."""
    found = {
        slot.name: [str(value) for value in slot.allowed_values or () if names(message, str(value))]
        for slot in slots
        if _slot_type(project, slot.name) == "categorical"
    }
    values = [value for named in found.values() for value in named]
    return {name: named[0] for name, named in found.items() if len(named) == 1 and values.count(named[0]) == 1}


def _started_flow_values(slots: list[PromptSlot], project: Project, message: str, unset: set[str]) -> dict[str, object]:
    values: dict[str, object] = dict(_literal_values(slots, project, message))
    left = [slot for slot in slots if slot.name in unset and slot.name not in values]
    floats = [slot for slot in left if _slot_type(project, slot.name) == "float"]
    numbers = numbers_in(message)
    if len(floats) == 1 and len(numbers) == 1:
        values[floats[0].name] = numbers[0]
    name_slots = [slot for slot in left if _slot_type(project, slot.name) == "text" and _is_name_slot(slot)]
    runs = capitalised_runs(message)
    if len(name_slots) == 1 and len(runs) == 1:
        values[name_slots[0].name] = runs[0]
    return values


def clarified_request(conversation: Conversation) -> str | None:
    """The user message the bot's last turn asked to clarify ("which one do you mean?")."""
    clarifying = False
    for event in reversed(conversation.events):
        if isinstance(event, ActionExecuted) and event.action_name == CLARIFY_ACTION:
            clarifying = True
        elif isinstance(event, UserUttered):
            return event.text if clarifying else None
    return None


def named_values(commands: list[Command], project: Project, message: str, conversation: Conversation) -> list[Command]:
    """`commands` plus a `set slot` for each slot the message (or the request it clarifies)
    names a value for, unambiguously, and that the commands leave unset."""
    already = {command.name for command in commands if isinstance(command, SetSlot)}
    added: list[Command] = []

    def add(values: dict[str, object]) -> None:
        for name, value in values.items():
            if name not in already:
                added.append(SetSlot(name, value))
                already.add(name)

    starts = [c for c in commands if isinstance(c, StartFlow) and c.flow in project.flows]
    earlier = clarified_request(conversation) if starts else None
    for start in starts:
        slots = prompt_slots(project.flows[start.flow], project)
        add(_started_flow_values(slots, project, message, {s.name for s in slots} - already))
        if earlier:
            add(_literal_values(slots, project, earlier))
    if not starts and not any(isinstance(c, CancelFlow) for c in commands):
        under_way = active_slots(conversation, project)
        if already & {slot.name for slot in under_way}:  # the message answers in the flow under way
            named = _literal_values(under_way, project, message)
            add({name: value for name, value in named.items() if str(conversation.slots.get(name)) != value})
    return commands + added
