"""Render domain responses into bot messages (formats.md §4.2).

Variation choice: the first non-empty group wins, then a random pick inside it:
1. condition true and matching channel; 2. no condition, matching channel;
3. condition true, no channel; 4. no condition, no channel.

Interpolation follows Rasa: `{slot}` placeholders by default, full Jinja with
`metadata: {template: jinja}`. Anything that fails to interpolate (an unknown
placeholder, a Jinja error, a sandbox violation) leaves that string as written
and logs, so a broken template never breaks the turn.
"""

from __future__ import annotations

import copy
import functools
import logging
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from voicecalm.conditions import parse_predicate
from voicecalm.nlg.message import BotMessage
from voicecalm.project import schema
from voicecalm.project.domain import Domain, Response

logger = logging.getLogger("voicecalm.nlg")

INTERNAL_ERROR_RESPONSE = "utter_internal_error_rasa"
GENERIC_ERROR_TEXT = "Sorry, something went wrong on my side. Please try again later."

# Rasa turns `{name}` into `{0[name]}` and calls str.format, so `{{`/`}}` are escapes and a
# placeholder is anything without newline or braces. Matching the same shapes directly keeps
# JSON-ish payloads such as `/intent{"a": "b"}` intact (an unknown placeholder → text as written).
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^\n{}]+?)\}")

# Response texts come from project files but are rendered with user-influenced values on
# every turn; the sandbox stops templates from reaching Python internals.
_jinja = SandboxedEnvironment(autoescape=False)


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    return _jinja.from_string(source)


def _render_jinja(text: str, variables: Mapping[str, Any]) -> str:
    if "{" not in text:  # no `{{`, `{%` or `{#`: nothing to render
        return text
    try:
        return _compile(text).render(variables)
    except Exception as error:
        logger.warning("Could not render Jinja template %r, sending it as written: %s: %s",
                       text, type(error).__name__, error)
        return text


def _render_format(text: str, variables: Mapping[str, Any]) -> str:
    if "{" not in text and "}" not in text:
        return text
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key is None:  # `{{` or `}}`
            return match.group(0)[0]
        if key in variables:
            return str(variables[key])
        unknown.append(key)
        return match.group(0)

    result = _PLACEHOLDER.sub(replace, text)
    if unknown:
        logger.warning("Placeholder {%s} in %r names no slot or value; sending the text unformatted",
                       unknown[0], text)
        return text
    return result


class _Interpolator:
    """Applies one variation's interpolation method; builds the variables only if a string needs them."""

    __slots__ = ("_render", "_build", "_variables")

    def __init__(self, jinja: bool, build: Callable[[], dict[str, Any]]) -> None:
        self._render = _render_jinja if jinja else _render_format
        self._build = build
        self._variables: dict[str, Any] | None = None

    def text(self, text: str) -> str:
        if "{" not in text and "}" not in text:
            return text
        if self._variables is None:
            self._variables = self._build()
        return self._render(text, self._variables)

    def value(self, value: Any) -> Any:
        """Strings anywhere inside dicts and lists are interpolated; the result is a fresh copy."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value


class ResponseRenderer:
    def __init__(self, domain: Domain, rng: random.Random | None = None) -> None:
        self._responses = domain.responses
        self._rng = rng if rng is not None else random.Random()
        # Every declared slot is a known name even when the caller's mapping leaves it out.
        self._unset_slots: dict[str, Any] = dict.fromkeys(domain.slots)

    def has(self, name: str) -> bool:
        return name in self._responses

    def render(
        self,
        name: str,
        *,
        slots: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        channel: str | None = None,
        extra: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> BotMessage | None:
        """The message for response `name`; None when the domain has no such response."""
        response = self._responses.get(name)
        if response is None:
            return None
        all_slots = {**self._unset_slots, **slots}
        variation = self._choose(response, all_slots, channel)
        if variation is None:
            logger.warning("No variation of response '%s' fits channel %r and the current slots; "
                           "sending %s instead", name, channel, INTERNAL_ERROR_RESPONSE)
            return self._internal_error(name, all_slots, context, channel, extra, language)
        return self._fill(name, variation, all_slots, context, extra, language)

    def _choose(
        self, response: Response, all_slots: dict[str, Any], channel: str | None
    ) -> schema.ResponseVariation | None:
        groups: tuple[list[schema.ResponseVariation], ...] = ([], [], [], [])
        for variation in response.variations:
            if variation.channel and variation.channel != channel:
                continue
            if not variation.condition:
                groups[1 if variation.channel else 3].append(variation)
            elif _condition_holds(variation.condition, all_slots):
                groups[0 if variation.channel else 2].append(variation)
        for group in groups:
            if group:
                return group[0] if len(group) == 1 else self._rng.choice(group)
        return None

    def _fill(
        self,
        name: str,
        variation: schema.ResponseVariation,
        all_slots: dict[str, Any],
        context: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None,
        language: str | None,
    ) -> BotMessage:
        def variables() -> dict[str, Any]:
            # Rasa's order: slots, then `context`, then the caller's kwargs win.
            merged = dict(all_slots)
            merged["context"] = context if context is not None else {}
            if extra:
                merged.update(extra)
            return merged

        fill = _Interpolator(variation.metadata.get("template") == "jinja", variables)
        text = variation.text
        if language is not None and variation.translation:
            text = variation.translation.get(language, text)
        metadata = dict(variation.metadata)
        if variation.id is not None:
            metadata.setdefault("id", variation.id)
        return BotMessage(
            text=fill.text(text) if text is not None else None,
            buttons=tuple(
                {"title": fill.text(button.title), "payload": fill.text(button.payload)}
                for button in variation.buttons
            ),
            image=fill.text(variation.image) if variation.image is not None else None,
            custom=fill.value(variation.custom) if variation.custom is not None else None,
            attachment=fill.value(variation.attachment),
            quick_replies=fill.value(variation.quick_replies),
            elements=copy.deepcopy(variation.elements) if variation.elements is not None else None,
            response=name,
            allow_interruptions=variation.allow_interruptions,
            metadata=metadata,
        )

    def _internal_error(
        self,
        failed: str,
        all_slots: dict[str, Any],
        context: Mapping[str, Any] | None,
        channel: str | None,
        extra: Mapping[str, Any] | None,
        language: str | None,
    ) -> BotMessage:
        fallback = self._responses.get(INTERNAL_ERROR_RESPONSE)
        if fallback is not None and failed != INTERNAL_ERROR_RESPONSE:
            variation = self._choose(fallback, all_slots, channel)
            if variation is not None:
                return self._fill(INTERNAL_ERROR_RESPONSE, variation, all_slots, context, extra, language)
        logger.warning("Response %s is missing or has no fitting variation; sending a generic text",
                       INTERNAL_ERROR_RESPONSE)
        return BotMessage(text=GENERIC_ERROR_TEXT, response=INTERNAL_ERROR_RESPONSE)


def _condition_holds(condition: str | list[schema.LegacyCondition], all_slots: dict[str, Any]) -> bool:
    if isinstance(condition, list):
        return all(all_slots.get(item.name) == item.value for item in condition)
    text = condition
    if "{{" in text:
        text = _render_jinja(text, {"slots": all_slots})
    try:
        predicate = parse_predicate(text)
    except Exception as error:
        logger.warning("Response condition %r does not parse, treating it as false: %s", text, error)
        return False
    return predicate.evaluate({"slots": all_slots})
