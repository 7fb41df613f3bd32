"""Jinja pre-rendering of action names and conditions with the stack context (formats.md §3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

_environment = SandboxedEnvironment(undefined=jinja2.ChainableUndefined)


@lru_cache(maxsize=2048)
def _template(source: str) -> jinja2.Template:
    return _environment.from_string(source)


def render(source: str, **variables: Any) -> str:
    if "{{" not in source and "{%" not in source:
        return source
    return _template(source).render(**variables)


def render_condition(source: str, context: Mapping[str, Any]) -> str:
    return render(source, context=context)


def readable_list(names: Sequence[str], conjunction: str = "and") -> str:
    """`a`, `a and b`, `a, b and c` (patterns.md §2)."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
