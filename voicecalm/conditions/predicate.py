"""Parse flow conditions once, evaluate them on every turn.

The language and its semantics follow pypred 0.4, which Rasa CALM uses for
flow guards, step `next` conditions, conditional responses and slot
rejections. A condition compiles to nested closures, so evaluation never
touches the lark parse tree.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

logger = logging.getLogger("voicecalm.conditions")

Evaluator = Callable[[Mapping[str, Any]], Any]


class _Sentinel:
    """Base of the two non-values; ordering comparisons with them are false."""

    __slots__ = ()

    def __hash__(self) -> int:
        # Same hash as pypred, so membership tests in sets behave alike.
        return hash(None)

    def __bool__(self) -> bool:
        return False


class _Undefined(_Sentinel):
    """What an unknown name resolves to: equal only to `undefined`/`empty`."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Sentinel)

    # Defining __eq__ would otherwise reset the inherited hash to None.
    __hash__ = _Sentinel.__hash__

    def __contains__(self, item: object) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"


class _Empty(_Sentinel):
    """The `empty` literal: equal to anything of length zero (not to None)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Sentinel):
            return True
        try:
            return len(other) == 0  # type: ignore[arg-type]
        except TypeError:
            return False

    __hash__ = _Sentinel.__hash__

    def __repr__(self) -> str:
        return "EMPTY"


UNDEFINED = _Undefined()
EMPTY = _Empty()


class ConditionSyntaxError(ValueError):
    """A condition that cannot be parsed; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        # Both arguments go to args so the exception survives pickling.
        super().__init__(message, column)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (column {self.column})"


@dataclass(frozen=True, slots=True)
class Comparison:
    """A name compared with a literal, normalised so the name comes first.

    `{'a' 'b'} contains slots.x` is reported as operator "contains" with a
    frozenset value; the grammar forbids a set right of `contains`, so the
    value type tells it apart from `slots.x contains 'a'`.
    """

    name: str
    operator: str
    value: object


@dataclass(frozen=True, slots=True)
class Predicate:
    source: str | bool
    names: frozenset[str]
    comparisons: tuple[Comparison, ...]
    _root: Evaluator = field(repr=False, compare=False)

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        try:
            return bool(self._root(document))
        except Exception as error:  # a broken condition must not break the turn
            logger.warning(
                "Condition %r could not be evaluated, treating it as false: %s: %s",
                self.source,
                type(error).__name__,
                error,
            )
            return False


@functools.lru_cache(maxsize=4096)
def parse_predicate(text: str | bool) -> Predicate:
    if isinstance(text, bool):
        # YAML `if: False` arrives as a bool, not as the word.
        return Predicate(text, frozenset(), (), lambda document, value=text: value)
    if not isinstance(text, str):
        raise TypeError(f"a condition must be a string or a bool, not {type(text).__name__}")
    compiler = _Compiler()
    try:
        tree = _parser().parse(text)
        root = compiler.expression(tree.children[0])
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    except RecursionError:
        raise ConditionSyntaxError("the condition is nested too deeply", 1) from None
    return Predicate(text, frozenset(compiler.names), tuple(compiler.comparisons), root)


@functools.cache
def _parser() -> Lark:
    grammar = Path(__file__).with_name("grammar.lark").read_text(encoding="utf-8")
    # The basic lexer sees every keyword in every state, so a misplaced
    # keyword is a syntax error rather than silently becoming a name.
    return Lark(grammar, parser="lalr", lexer="basic")


def _syntax_error(error: UnexpectedInput, text: str) -> ConditionSyntaxError:
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        return ConditionSyntaxError(f"unexpected token {error.token.value!r}", error.token.column)
    if isinstance(error, UnexpectedCharacters):
        return ConditionSyntaxError(f"unexpected character {error.char!r}", error.column)
    last_line = text.rstrip().rsplit("\n", 1)[-1]
    return ConditionSyntaxError("unexpected end of condition", len(last_line) + 1)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_MIRRORED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
_OPERATOR_SPELLINGS = {"=": "==", "is": "==", "is not": "!="}
_CONSTANTS: dict[str, object] = {
    "TRUE": True,
    "FALSE": False,
    "NULL": None,
    "UNDEFINED": UNDEFINED,
    "EMPTY": EMPTY,
}
_NOT_A_LITERAL = object()


@dataclass(frozen=True, slots=True)
class _Operand:
    evaluate: Evaluator
    name: str | None = None
    literal: object = _NOT_A_LITERAL

    @property
    def is_literal(self) -> bool:
        return self.literal is not _NOT_A_LITERAL


def _constant(value: object) -> _Operand:
    return _Operand(lambda document: value, literal=value)


def _resolver(name: str) -> Evaluator:
    parts = tuple(name.split("."))

    def resolve(document: Mapping[str, Any]) -> Any:
        value: Any = document
        for part in parts:
            try:
                value = value[part]
            except (KeyError, TypeError, IndexError):
                # Missing keys and lookups into non-mappings (None, strings)
                # both mean "not there".
                return UNDEFINED
        return value

    return resolve


class _Compiler:
    """Turns a lark tree into closures, collecting names and comparisons."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.comparisons: list[Comparison] = []

    def expression(self, node: Tree | Token) -> Evaluator:
        return self.operand(node).evaluate

    def operand(self, node: Tree | Token) -> _Operand:
        if isinstance(node, Token):
            return self.token(node)
        kind = node.data
        if kind == "and_":
            left, right = self.expression(node.children[0]), self.expression(node.children[2])
            return _Operand(lambda document: bool(left(document)) and bool(right(document)))
        if kind == "or_":
            left, right = self.expression(node.children[0]), self.expression(node.children[2])
            return _Operand(lambda document: bool(left(document)) or bool(right(document)))
        if kind == "not_":
            inner = self.expression(node.children[1])
            return _Operand(lambda document: not inner(document))
        if kind == "compare":
            spelling = " ".join(token.value.lower() for token in node.children[1].children)
            return self.compare(
                self.operand(node.children[0]),
                _OPERATOR_SPELLINGS.get(spelling, spelling),
                self.operand(node.children[2]),
            )
        if kind == "contains":
            return self.contains(self.operand(node.children[0]), self.operand(node.children[2]))
        if kind == "matches":
            return self.matches(self.operand(node.children[0]), node.children[2])
        if kind == "set_":
            return self.set_literal([self.operand(child) for child in node.children])
        raise AssertionError(f"grammar rule without a compiler: {kind}")

    def token(self, token: Token) -> _Operand:
        if token.type == "STRING":
            return _constant(token.value[1:-1])
        if token.type == "NUMBER":
            return _constant(float(token.value))
        if token.type == "NAME":
            self.names.add(token.value)
            return _Operand(_resolver(token.value), name=token.value)
        return _constant(_CONSTANTS[token.type])

    def compare(self, left: _Operand, op: str, right: _Operand) -> _Operand:
        self.record(left, op, right)
        left_value, right_value = left.evaluate, right.evaluate
        if op == "==":
            return _Operand(lambda document: left_value(document) == right_value(document))
        if op == "!=":
            return _Operand(lambda document: not left_value(document) == right_value(document))
        ordering = _ORDERINGS[op]

        def ordered(document: Mapping[str, Any]) -> bool:
            a, b = left_value(document), right_value(document)
            if isinstance(a, _Sentinel) or isinstance(b, _Sentinel):
                return False
            return ordering(a, b)

        return _Operand(ordered)

    def contains(self, container: _Operand, item: _Operand) -> _Operand:
        if isinstance(container.literal, frozenset):
            self.record(item, "contains", container)
        else:
            self.record(container, "contains", item)
        container_value, item_value = container.evaluate, item.evaluate

        def contains(document: Mapping[str, Any]) -> bool:
            haystack = container_value(document)
            # pypred: containers that do not support `in` (numbers, None) just fail.
            if not hasattr(haystack, "__contains__"):
                return False
            return item_value(document) in haystack

        return _Operand(contains)

    def matches(self, subject: _Operand, pattern_token: Token) -> _Operand:
        pattern_text = pattern_token.value
        if pattern_token.type == "STRING":
            pattern_text = pattern_text[1:-1]
        try:
            pattern = re.compile(pattern_text)
        except re.error as error:
            raise ConditionSyntaxError(
                f"invalid regular expression {pattern_text!r}: {error}", pattern_token.column
            ) from None
        self.record(subject, "matches", _constant(pattern_text))
        subject_value = subject.evaluate

        def matches(document: Mapping[str, Any]) -> bool:
            value = subject_value(document)
            return isinstance(value, str) and pattern.search(value) is not None

        return _Operand(matches)

    def set_literal(self, items: list[_Operand]) -> _Operand:
        if all(item.is_literal for item in items):
            return _constant(frozenset(item.literal for item in items))
        # Names inside a set resolve against the document, as in pypred.
        evaluators = tuple(item.evaluate for item in items)
        return _Operand(lambda document: frozenset(value(document) for value in evaluators))

    def record(self, left: _Operand, op: str, right: _Operand) -> None:
        if left.name is not None and right.is_literal:
            self.comparisons.append(Comparison(left.name, op, right.literal))
        elif right.name is not None and left.is_literal and op in _MIRRORED:
            self.comparisons.append(Comparison(right.name, _MIRRORED[op], left.literal))
