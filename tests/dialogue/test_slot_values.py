from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import pytest

from voicecalm.dialogue.slot_values import coerce
from voicecalm.project import Domain, Slot, load_project

DOMAIN = """
slots:
  note:
    type: text
  confirmed:
    type: bool
  amount:
    type: float
    min_value: 0
    max_value: 100
  open_amount:
    type: float
  floor_only:
    type: float
    min_value: 10
  account:
    type: categorical
    values: [checking, Savings]
  level:
    type: categorical
    values: [1, 2]
  tags:
    type: list
  anything:
    type: any
"""


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    root: Path = tmp_path_factory.mktemp("slot_values")
    (root / "config.yml").write_text("recipe: default.v1\n")
    (root / "domain.yml").write_text(textwrap.dedent(DOMAIN))
    (root / "data").mkdir()
    return load_project(root).domain


def slot(domain: Domain, name: str) -> Slot:
    return domain.slots[name]


@pytest.mark.parametrize("name", ["note", "confirmed", "amount", "account", "tags", "anything"])
def test_none_always_clears(domain: Domain, name: str) -> None:
    assert coerce(slot(domain, name), None) == (True, None)


@pytest.mark.parametrize("value", ["Jane Foo", "  spaced  ", "", 5, ["x"], {"a": 1}])
def test_text_and_any_keep_the_value_as_given(domain: Domain, value: Any) -> None:
    assert coerce(slot(domain, "note"), value) == (True, value)
    assert coerce(slot(domain, "anything"), value) == (True, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (1.0, True),
        (0, False),
        (2, False),
        (0.5, False),
        ("1", True),
        (" 1 ", True),
        ("0", False),
        ("2", False),
        ("true", True),
        ("True", True),
        (" TRUE ", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("FALSE", False),
        ("no", False),
        (" No ", False),
    ],
)
def test_bool_coercion(domain: Domain, value: Any, expected: bool) -> None:
    valid, coerced = coerce(slot(domain, "confirmed"), value)
    assert valid and coerced is expected


@pytest.mark.parametrize("value", ["maybe", "", "1.0", "-1", "yes please", "²", [True], {}])
def test_bool_invalid(domain: Domain, value: Any) -> None:
    assert coerce(slot(domain, "confirmed"), value)[0] is False


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("amount", 50, 50.0),
        ("amount", 50.5, 50.5),
        ("amount", "50", 50.0),
        ("amount", " 42.5 ", 42.5),
        ("amount", "1e1", 10.0),
        ("amount", 0, 0.0),
        ("amount", 100, 100.0),
        ("open_amount", -1e9, -1e9),
        ("open_amount", "123456", 123456.0),
        ("floor_only", 5, 5.0),  # bounds apply only when both are set
    ],
)
def test_float_coercion(domain: Domain, name: str, value: Any, expected: float) -> None:
    valid, coerced = coerce(slot(domain, name), value)
    assert valid and coerced == expected and isinstance(coerced, float)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("amount", -0.01),
        ("amount", 100.5),
        ("amount", "150"),
        ("amount", True),
        ("amount", False),
        ("amount", "fifty"),
        ("amount", "50$"),
        ("amount", ""),
        ("amount", [5]),
        ("open_amount", float("nan")),
        ("open_amount", "nan"),
        ("open_amount", math.inf),
        ("open_amount", "-inf"),
    ],
)
def test_float_invalid(domain: Domain, name: str, value: Any) -> None:
    assert coerce(slot(domain, name), value)[0] is False


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("account", "checking", "checking"),
        ("account", "Savings", "Savings"),
        ("account", "CHECKING", "checking"),
        ("account", "savings", "Savings"),
        ("level", 1, 1),
        ("level", "2", 2),
    ],
)
def test_categorical_coercion(domain: Domain, name: str, value: Any, expected: Any) -> None:
    valid, coerced = coerce(slot(domain, name), value)
    assert valid and coerced == expected and type(coerced) is type(expected)


@pytest.mark.parametrize(("name", "value"), [("account", "credit"), ("account", " checking"), ("account", ""), ("level", 3)])
def test_categorical_invalid(domain: Domain, name: str, value: Any) -> None:
    assert coerce(slot(domain, name), value)[0] is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [(["a", "b"], ["a", "b"]), ([], []), (("a",), ["a"]), ("a", ["a"]), (5, [5]), ({"k": 1}, [{"k": 1}])],
)
def test_list_wraps_non_lists(domain: Domain, value: Any, expected: list[Any]) -> None:
    assert coerce(slot(domain, "tags"), value) == (True, expected)
