"""YAML reading that remembers where every key and item came from.

PyYAML's C parser does the parsing; our constructor keeps each node's position so that later
checks (schema and semantic) can point at `file:line:col`. Scalars follow YAML 1.2's core schema,
as Rasa's loader does: `yes`/`no`/`on` stay strings and `12:30` is not a number.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from voicecalm.project.problems import Location, ProblemLog

_ENV_VARIABLE = re.compile(r"\$\{([^}^{]+)\}")


class LocatedDict(dict):
    """A YAML mapping with the position of the mapping, each key and each value."""

    __slots__ = ("location", "key_locations", "value_locations")

    location: Location
    key_locations: dict[Any, Location]
    value_locations: dict[Any, Location]

    def location_of(self, key: Any) -> Location:
        return self.key_locations.get(key, self.location)

    def value_location_of(self, key: Any) -> Location:
        return self.value_locations.get(key, self.location_of(key))


class LocatedList(list):
    """A YAML sequence with the position of the sequence and of each item."""

    __slots__ = ("location", "item_locations")

    location: Location
    item_locations: list[Location]

    def location_of(self, index: int) -> Location:
        if 0 <= index < len(self.item_locations):
            return self.item_locations[index]
        return self.location


def location_of(container: Any, key: Any, fallback: Location | Path) -> Location | Path:
    """The position of `container[key]`'s key (or item) when known."""
    if isinstance(container, (LocatedDict, LocatedList)):
        return container.location_of(key)
    return fallback


def node_location(value: Any, fallback: Location | Path) -> Location | Path:
    if isinstance(value, (LocatedDict, LocatedList)):
        return value.location
    return fallback


class _Resolver(yaml.resolver.Resolver):
    yaml_implicit_resolvers: dict = {}


def _add_resolver(tag: str, pattern: str, first: str) -> None:
    _Resolver.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


# YAML 1.2 core schema.
_add_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_add_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])
_add_resolver("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_add_resolver(
    "tag:yaml.org,2002:float",
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    "-+0123456789.",
)
_add_resolver("tag:yaml.org,2002:merge", r"^(?:<<)$", "<")


def _mark_location(file: Path, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _LocatingConstructor(yaml.constructor.SafeConstructor):
    file: Path
    problems: ProblemLog

    def construct_located_map(self, node: yaml.MappingNode):
        data = LocatedDict()
        data.location = _mark_location(self.file, node.start_mark)
        data.key_locations = {}
        data.value_locations = {}
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                self.problems.error(_mark_location(self.file, key_node.start_mark), "a mapping key must be a plain value")
                continue
            if key in data:
                self.problems.error(_mark_location(self.file, key_node.start_mark), f"duplicate key '{key}'")
            data[key] = self.construct_object(value_node, deep=True)
            data.key_locations[key] = _mark_location(self.file, key_node.start_mark)
            data.value_locations[key] = _mark_location(self.file, value_node.start_mark)

    def construct_located_seq(self, node: yaml.SequenceNode):
        data = LocatedList()
        data.location = _mark_location(self.file, node.start_mark)
        data.item_locations = [_mark_location(self.file, child.start_mark) for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_expanded_str(self, node: yaml.ScalarNode) -> str:
        value = self.construct_scalar(node)
        if "${" not in value:
            return value

        def expand(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                self.problems.error(
                    _mark_location(self.file, node.start_mark), f"environment variable '{name}' is not set"
                )
                return match.group(0)
            return os.environ[name]

        return _ENV_VARIABLE.sub(expand, value)

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text, 10)

    def construct_core_float(self, node: yaml.ScalarNode) -> float:
        text = self.construct_scalar(node).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        return float(text)


_LocatingConstructor.add_constructor("tag:yaml.org,2002:map", _LocatingConstructor.construct_located_map)
_LocatingConstructor.add_constructor("tag:yaml.org,2002:seq", _LocatingConstructor.construct_located_seq)
_LocatingConstructor.add_constructor("tag:yaml.org,2002:str", _LocatingConstructor.construct_expanded_str)
_LocatingConstructor.add_constructor("tag:yaml.org,2002:int", _LocatingConstructor.construct_core_int)
_LocatingConstructor.add_constructor("tag:yaml.org,2002:float", _LocatingConstructor.construct_core_float)

if yaml.__with_libyaml__:
    from yaml._yaml import CParser as _Parser
else:  # pragma: no cover - PyYAML built without libyaml

    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)


class _LocatingLoader(_Parser, _LocatingConstructor, _Resolver):
    def __init__(self, stream: str, file: Path, problems: ProblemLog) -> None:
        _Parser.__init__(self, stream)
        _LocatingConstructor.__init__(self)
        _Resolver.__init__(self)
        self.file = file
        self.problems = problems


def read_yaml(path: Path, display_path: Path, problems: ProblemLog) -> Any:
    """Parse one YAML file; syntax errors are logged at their line and give `None`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.error(display_path, f"cannot read file: {error}")
        return None
    loader = _LocatingLoader(text, display_path, problems)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = _mark_location(display_path, mark) if mark else display_path
        problems.error(location, f"YAML syntax error: {error.problem or error.context}")
    except yaml.YAMLError as error:
        problems.error(display_path, f"YAML error: {error}")
    finally:
        loader.dispose()
    return None
