"""Turn pydantic validation errors into located problems (`file:line:col: message`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from voicecalm.project.problems import Location, ProblemLog
from voicecalm.project.schema import STEP_TYPE_KEYS, step_kind
from voicecalm.project.yaml_source import LocatedDict, LocatedList, node_location

Model = TypeVar("Model", bound=BaseModel)

# Union members appear in an error's path under these names; they are not keys of the file.
_MEMBER_KINDS: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "bool": bool,
    "int": int,
    "float": (int, float),
    "list": list,
    "dict": dict,
    "literal": (str, int, float, bool),
}
_MEMBER_NAME = re.compile(r"^(str|bool|int|float|list|dict|literal|function-\w+|tagged-union|constrained-\w+)\b")


def _member_matches(member: str, node: Any) -> bool:
    kind = _MEMBER_NAME.match(member)
    if kind is None:
        return True
    expected = _MEMBER_KINDS.get(kind.group(1))
    if expected is None:
        return True
    if isinstance(node, bool) and expected in (int, (int, float)):
        return False
    return isinstance(node, expected)


def _locate(raw: Any, path: tuple[Any, ...], fallback: Location | Path) -> tuple[Location | Path, str | None] | None:
    """Follow an error path through the located YAML; `None` when it belongs to a union member
    that the value never was (pydantic reports every member's complaint)."""
    # Errors about a whole item point at its key (the fallback) rather than its first inner line.
    start = fallback if isinstance(fallback, Location) else node_location(raw, fallback)
    node, location, last_key = raw, start, None
    for position, part in enumerate(path):
        is_last = position == len(path) - 1
        if isinstance(node, dict) and part in STEP_TYPE_KEYS and step_kind(node) == part and not is_last:
            continue  # the step-type tag, followed by the real key
        if isinstance(node, LocatedDict) and part in node:
            location, node, last_key = node.location_of(part), node[part], str(part)
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            location, node = node.location_of(part), node[part]
        elif isinstance(part, str) and _MEMBER_NAME.match(part):
            if not _member_matches(part, node):
                return None
        elif isinstance(part, str):
            last_key = part
    return location, last_key


def _message(error: dict[str, Any], key: str | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{key}'"
    if kind == "missing":
        return f"missing required key '{key}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("step_type", "next_branch"):
        return message
    return f"'{key}': {message}" if key else message


def report(error: ValidationError, raw: Any, fallback: Location | Path, problems: ProblemLog) -> None:
    seen: set[tuple[str, str]] = set()
    items = error.errors()
    for item in items:
        located = _locate(raw, tuple(item["loc"]), fallback)
        if located is None:
            if seen or item is not items[-1]:
                continue
            located = (node_location(raw, fallback), None)
        location, key = located
        message = _message(item, key)
        if (str(location), message) not in seen:
            seen.add((str(location), message))
            problems.error(location, message)


def parse(model: type[Model], raw: Any, fallback: Location | Path, problems: ProblemLog) -> Model | None:
    """Validate `raw` against `model`; problems are logged and give `None`."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        report(error, raw, fallback, problems)
        return None
