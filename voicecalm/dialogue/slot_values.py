"""Slot value coercion and validity per slot type (formats.md §4.1)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from voicecalm.project.domain import Slot

Coerced = tuple[bool, Any]
INVALID: Coerced = (False, None)

TRUE_WORDS = frozenset({"true", "yes"})
FALSE_WORDS = frozenset({"false", "no"})


def coerce(slot: Slot, value: Any) -> Coerced:
    """(is_valid, coerced value) for setting `slot` to `value`; `None` always clears the slot."""
    if value is None:
        return True, None
    coercer = COERCERS.get(slot.type)
    return coercer(slot, value) if coercer else (True, value)


def _as_given(slot: Slot, value: Any) -> Coerced:
    return True, value


def _bool(slot: Slot, value: Any) -> Coerced:
    if isinstance(value, bool):
        return True, value
    if isinstance(value, int | float):
        return True, value == 1
    if isinstance(value, str):
        word = value.strip()
        if word.isascii() and word.isdigit():
            return True, int(word) == 1
        if word.lower() in TRUE_WORDS:
            return True, True
        if word.lower() in FALSE_WORDS:
            return True, False
    return INVALID


def _float(slot: Slot, value: Any) -> Coerced:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return INVALID
    try:
        number = float(value)
    except ValueError:
        return INVALID
    # Infinity is rejected with NaN: neither survives a JSON tracker store.
    if not math.isfinite(number):
        return INVALID
    low, high = slot.definition.min_value, slot.definition.max_value
    if low is not None and high is not None and not low <= number <= high:
        return INVALID
    return True, number


def _categorical(slot: Slot, value: Any) -> Coerced:
    for allowed in slot.values:
        if type(allowed) is type(value) and allowed == value:
            return True, allowed
    folded = str(value).casefold()
    for allowed in slot.values:
        if str(allowed).casefold() == folded:
            return True, allowed
    return INVALID


def _list(slot: Slot, value: Any) -> Coerced:
    if isinstance(value, list):
        return True, value
    if isinstance(value, tuple):
        return True, list(value)
    return True, [value]


COERCERS: dict[str, Callable[[Slot, Any], Coerced]] = {
    "text": _as_given,
    "any": _as_given,
    "bool": _bool,
    "float": _float,
    "categorical": _categorical,
    "list": _list,
}
