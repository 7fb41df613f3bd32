"""Payload messages: user text starting with `/` becomes commands directly (formats.md §5)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from voicecalm.dialogue.commands import (
    CANNOT_HANDLE_INVALID_INTENT,
    PAYLOAD,
    CannotHandle,
    Command,
    Restart,
    SessionEnd,
    SessionStart,
    SetSlot,
    StartFlow,
    UserSilence,
)
from voicecalm.dialogue.slot_values import coerce
from voicecalm.project.domain import Domain
from voicecalm.project.flows import Flow

logger = logging.getLogger(__name__)

PAYLOAD_PREFIX = "/"
SET_SLOTS_PREFIX = "/SetSlots"
SET_SLOTS = re.compile(r"^/SetSlots\((.*)\)$", re.DOTALL)
SLOT_PAIR = re.compile(r"([^(),=]+)=(\[[^\]]*\]|[^(),]+)")
INTENT = re.compile(r"^/([^{\s]+)\s*(\{.*\})?$", re.DOTALL)
MAX_PAIRS = 10
NULL_WORDS = frozenset({"none", "null", "undefined"})

SYSTEM_INTENTS: Mapping[str, Callable[[], Command]] = {
    "session_start": SessionStart,
    "session_end": SessionEnd,
    "silence_timeout": UserSilence,
    "restart": Restart,
}

Pairs = tuple[tuple[str, Any], ...]


class VoidPayload(Exception):
    """A `/SetSlots` payload that sets nothing: unknown slot, too many pairs, bad syntax."""


def parse_payload(
    text: str,
    domain: Domain,
    flows: Mapping[str, Flow],
    offered_buttons: Collection[Pairs] = (),
) -> list[Command] | None:
    """Commands for a payload message, or None when `text` is not a payload.

    `offered_buttons` holds the `button_pairs` of the buttons the bot sent in its last turn.
    """
    text = text.strip()
    if not text.startswith(PAYLOAD_PREFIX):
        return None
    if text.startswith(SET_SLOTS_PREFIX):
        return _set_slots(text, domain, offered_buttons)
    return _intent(text, domain, flows)


def button_pairs(payload: str, domain: Domain) -> Pairs | None:
    """The (slot, coerced value) pairs a `/SetSlots` button sets; None for any other payload."""
    try:
        return _parsed_pairs(payload.strip(), domain)
    except VoidPayload:
        return None


def _set_slots(text: str, domain: Domain, offered_buttons: Collection[Pairs]) -> list[Command]:
    try:
        pairs = _parsed_pairs(text, domain)
    except VoidPayload as void:
        logger.warning("payload ignored: %s", void)
        return [CannotHandle()]
    assert pairs is not None
    offered = any(pairs == button for button in offered_buttons)
    commands: list[Command] = []
    for name, value in pairs:
        # A typed payload must not set what only actions and offered buttons may set.
        if domain.slots[name].definition.mapping_types != {"from_llm"} and not offered:
            logger.warning("payload pair for slot %r dropped: the slot is not from_llm and no offered button sets it", name)
            continue
        commands.append(SetSlot(name, value, PAYLOAD))
    return commands


def _parsed_pairs(text: str, domain: Domain) -> Pairs | None:
    """Valid pairs of a `/SetSlots` payload (invalid values dropped), None when not one."""
    match = SET_SLOTS.match(text)
    if match is None:
        if text.startswith(SET_SLOTS_PREFIX):
            raise VoidPayload("malformed /SetSlots payload")
        return None
    raw_pairs = SLOT_PAIR.findall(match.group(1))
    if len(raw_pairs) > MAX_PAIRS:
        raise VoidPayload(f"more than {MAX_PAIRS} slot pairs")
    pairs: list[tuple[str, Any]] = []
    for raw_name, raw_value in raw_pairs:
        name = raw_name.strip()
        slot = domain.slots.get(name)
        if slot is None:
            raise VoidPayload(f"unknown slot {name!r}")
        valid, value = coerce(slot, _payload_value(raw_value.strip()))
        if not valid:
            logger.warning("payload pair for slot %r dropped: the value does not fit the slot type %s", name, slot.type)
            continue
        pairs.append((name, value))
    return tuple(pairs)


def _payload_value(value: str) -> Any:
    if value.lower() in NULL_WORDS:
        return None
    if value.startswith("[") and value.endswith("]"):
        return [item.strip() for item in value[1:-1].split(",") if item.strip()]
    return value


def _intent(text: str, domain: Domain, flows: Mapping[str, Flow]) -> list[Command]:
    match = INTENT.match(text)
    intent = match.group(1) if match else text[len(PAYLOAD_PREFIX) :]
    if make := SYSTEM_INTENTS.get(intent):
        return [make()]
    for flow in flows.values():
        if any(_trigger_intent(trigger) == intent for trigger in flow.nlu_triggers):
            return [StartFlow(flow.id)]
    if intent in domain.intents:
        return []
    return [CannotHandle(reason=CANNOT_HANDLE_INVALID_INTENT)]


def _trigger_intent(trigger: Any) -> str:
    intent = trigger.intent
    return intent if isinstance(intent, str) else intent.name
