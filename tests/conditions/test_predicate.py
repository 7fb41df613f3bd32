import logging
import pickle
from typing import Any

import pytest

from voicecalm.conditions import (
    EMPTY,
    UNDEFINED,
    Comparison,
    ConditionSyntaxError,
    parse_predicate,
)

SLOTS: dict[str, Any] = {
    "amount": 1500,
    "price": 9.99,
    "account_type": "savings",
    "tier": "gold",
    "confirm": True,
    "declined": False,
    "logged_in": False,
    "unset": None,
    "blank": "",
    "no_items": [],
    "no_mapping": {},
    "numeric_text": "1500",
    "true_text": "true",
    "items": ["apple", "pear"],
    "address": {"city": "Berlin", "zip": "10115"},
    "name": "Ada Lovelace",
    "zero": 0,
    "one": 1,
}
DOCUMENT = {"slots": SLOTS, "context": {"collect": "amount", "flow_id": "transfer_money"}}


def holds(condition: str, document: Any = DOCUMENT) -> bool:
    return parse_predicate(condition).evaluate(document)


def truth_table(cases: list[tuple[str, bool]]) -> Any:
    return pytest.mark.parametrize(("condition", "expected"), cases, ids=[c for c, _ in cases])


@truth_table(
    [
        ('slots.account_type = "savings"', True),
        ('slots.account_type == "savings"', True),
        ('slots.account_type is "savings"', True),
        ("slots.account_type = 'checking'", False),
        ('slots.account_type != "checking"', True),
        ('slots.account_type is not "checking"', True),
        ('slots.account_type != "savings"', False),
        ('slots.account_type is not "savings"', False),
        ('"savings" = slots.account_type', True),
        ("slots.amount = 1500", True),
        ("slots.amount = 1500.0", True),
        ("slots.price = 9.99", True),
        ("slots.amount != 1500", False),
        ("slots.tier = slots.tier", True),
        ("slots.tier = slots.account_type", False),
    ]
)
def test_equality(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.amount > 1000", True),
        ("slots.amount > 1500", False),
        ("slots.amount >= 1500", True),
        ("slots.amount < 1500", False),
        ("slots.amount <= 1500", True),
        ("slots.amount < 2000.5", True),
        ("slots.price > 9.5", True),
        ("-1 < slots.zero", True),
        ("slots.amount > -3", True),
        ("1000 < slots.amount", True),
        ("2000 <= slots.amount", False),
        ('slots.tier > "apple"', True),
        ('slots.tier < "apple"', False),
        # Ordering against undefined or empty is false, whatever the other side.
        ("slots.missing > 1", False),
        ("slots.missing < 1", False),
        ("slots.amount > undefined", False),
        ("slots.amount < empty", False),
        ("empty <= slots.amount", False),
    ]
)
def test_ordering(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        # Numbers are floats and slot values are taken as they are: a numeric
        # string never equals a number, and ordering them is an error (false).
        ("slots.numeric_text = 1500", False),
        ('slots.numeric_text = "1500"', True),
        ("slots.numeric_text > 1000", False),
        ("slots.numeric_text < 1000", False),
        ("not slots.numeric_text > 1000", False),
        # None cannot be ordered: the whole condition is false, even under `not`.
        ("slots.unset > 0", False),
        ("not (slots.unset > 0)", False),
        ("slots.unset < 0 or true", False),
    ]
)
def test_ordering_across_types_is_an_error(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.confirm is true", True),
        ("slots.confirm is True", True),
        ("slots.confirm = TRUE", True),
        ("slots.confirm is false", False),
        ("slots.declined is false", True),
        ("slots.declined is not False", False),
        # A boolean literal is not the word: "true" is just a string.
        ("slots.true_text is true", False),
        ('slots.true_text = "true"', True),
        ('slots.confirm = "true"', False),
        # Python equality, as in pypred: 1 == True and 0 == False.
        ("slots.one = true", True),
        ("slots.zero = false", True),
    ]
)
def test_boolean_literals(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.unset is null", True),
        ("slots.unset = NULL", True),
        ("slots.unset is not null", False),
        ("slots.tier is null", False),
        ("slots.tier is not null", True),
        # A missing name is undefined, which is not null.
        ("slots.missing is null", False),
        ("slots.missing is not null", True),
        ("slots.missing is undefined", True),
        ("slots.missing = Undefined", True),
        ("slots.missing is not undefined", False),
        ("slots.unset is undefined", False),
        ("slots.tier is undefined", False),
        # empty equals anything of length zero, and undefined, but not None.
        ("slots.blank is empty", True),
        ("slots.no_items is empty", True),
        ("slots.no_mapping is empty", True),
        ("slots.missing is empty", True),
        ("slots.missing is not empty", False),
        ("slots.unset is empty", False),
        ("slots.unset is not empty", True),
        ("slots.tier is empty", False),
        ("slots.items is not empty", True),
        ("slots.zero is empty", False),
        ("empty = slots.blank", True),
        ("undefined = empty", True),
        ("empty is undefined", True),
        ("undefined is not undefined", False),
    ]
)
def test_null_undefined_and_empty(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ('slots.items contains "apple"', True),
        ('slots.items contains "APPLE"', False),
        ('slots.items contains "app"', False),
        ('slots.name contains "Love"', True),
        ('slots.name contains "love"', False),
        ('slots.address contains "city"', True),
        ('slots.address contains "Berlin"', False),
        ("slots.items contains slots.tier", False),
        ("slots.name contains slots.address.city", False),
        # Values without membership just fail.
        ('slots.unset contains "a"', False),
        ('slots.missing contains "a"', False),
        ("slots.amount contains 1", False),
        ('empty contains "a"', False),
        # Set literals, on the left.
        ("{'gold' 'platinum'} contains slots.tier", True),
        ('{"silver" "platinum"} contains slots.tier', False),
        ("{} contains slots.tier", False),
        ("{'gold'} contains slots.missing", False),
        ("{1 2} contains slots.one", True),
        ("{1 2} contains slots.zero", False),
        ("{true} contains slots.confirm", True),
        ("{null} contains slots.unset", True),
        ("{slots.tier 'silver'} contains 'gold'", True),
        ("not {'gold' 'platinum'} contains slots.tier", False),
        ("'savings account' contains slots.account_type", True),
        # Substring test of a non-string needle is an error: false.
        ("slots.name contains 5", False),
        ("slots.name contains slots.missing", False),
    ]
)
def test_contains(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ('slots.name matches "^Ada"', True),
        ('slots.name matches "Love"', True),
        ('slots.name matches "^Love"', False),
        ('slots.name matches "ada"', False),
        ('slots.name matches "(?i)ada"', True),
        ("slots.address.zip matches '^[0-9]{5}$'", True),
        ("slots.tier matches gold", True),
        ('slots.amount matches "1"', False),
        ('slots.unset matches ".*"', False),
        ('slots.missing matches ".*"', False),
        ('slots.items matches "apple"', False),
        ('not slots.name matches "^Bob"', True),
    ]
)
def test_matches(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.confirm", True),
        ("slots.declined", False),
        ("not slots.logged_in", True),
        ("not slots.confirm", False),
        ("not not slots.confirm", True),
        ("slots.tier", True),
        ("slots.blank", False),
        ("slots.unset", False),
        ("slots.missing", False),
        ("not slots.missing", True),
        ("slots.items", True),
        ("slots.no_items", False),
        ("slots.zero", False),
        ("slots.address", True),
        ("'text'", True),
        ("''", False),
        ("0", False),
        ("2.5", True),
        ("true", True),
        ("False", False),
        ("null", False),
        ("undefined", False),
        ("empty", False),
        ("{}", False),
        ("{'a'}", True),
        ("(slots.confirm)", True),
    ]
)
def test_bare_operands_use_truthiness(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.confirm and slots.tier", True),
        ("slots.confirm and slots.declined", False),
        ("slots.declined or slots.confirm", True),
        ("slots.declined or slots.unset", False),
        # `and` and `or` share one level and group to the right:
        # false and (x or true) is false, while (false and x) or true is true.
        ("slots.declined and slots.declined or slots.confirm", False),
        ("(slots.declined and slots.declined) or slots.confirm", True),
        ("slots.confirm or slots.declined and slots.declined", True),
        ("slots.declined or slots.confirm and slots.declined", False),
        # `not` binds tighter than and/or but looser than comparisons.
        ("not slots.declined and slots.confirm", True),
        ("not slots.confirm and slots.declined", False),
        ("not (slots.confirm and slots.declined)", True),
        ('not slots.tier = "gold"', False),
        ('not slots.tier = "silver"', True),
        # Parenthesised expressions are operands of comparisons too.
        ("(slots.confirm and slots.tier) = true", True),
        ("(slots.declined or slots.unset) is false", True),
    ]
)
def test_logic_and_precedence(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.confirm AND slots.tier", True),
        ("slots.declined Or slots.confirm", True),
        ("NOT slots.declined", True),
        ("slots.confirm IS TRUE", True),
        ("slots.confirm Is Not False", True),
        ("slots.items CONTAINS 'pear'", True),
        ("slots.name Matches '^Ada'", True),
        ("slots.unset IS NULL", True),
        ("slots.missing is UNDEFINED", True),
        ("slots.blank is Empty", True),
    ]
)
def test_keywords_are_case_insensitive(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.android", False),
        ("slots.notify is null", False),
        ("slots.order_is_nice is undefined", True),
        ("slots.contains_pin is undefined", True),
        ("slots.true_text", True),
    ]
)
def test_keywords_inside_names_stay_names(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ("slots.address.city = 'Berlin'", True),
        ("slots.address.country is undefined", True),
        ("slots.tier.length is undefined", True),
        ("slots.unset.field is undefined", True),
        ("slots.items.0 is undefined", True),
        ("context.collect = 'amount'", True),
        ('context.flow_id == "transfer_money"', True),
        ("context.collect is not null", True),
        ("context.missing is not null", True),
        # An unquoted word is a name, not a string.
        ("slots.account_type = savings", False),
        ("slots.account_type != savings", True),
        ("savings is undefined", True),
        ("slots is not undefined", True),
    ]
)
def test_names_resolve_into_the_document(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


def test_slots_only_document() -> None:
    document = {"slots": {"tier": "gold"}}
    assert holds("slots.tier = 'gold'", document)
    assert holds("context.collect is undefined", document)
    assert not holds("context.collect is null", document)


@truth_table(
    [
        ("slots.confirm # ignore everything after the hash", True),
        ("slots.declined # or true", False),
        ("slots.tier = 'gold' # and false", True),
        ("slots.tier = '#gold'", False),
        ('slots.tier != "# not a comment"', True),
        ("slots.confirm and\nslots.tier # comment\n", True),
    ]
)
def test_comments(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ('"double" = "double"', True),
        ("'single' = \"single\"", True),
        ("'it\"s' = 'it\"s'", True),
        ("'a b  c' contains ' b '", True),
        ("-1.5 < -1", True),
        ("10 = 10.0", True),
        ("007 = 7", True),
        ("'10' = 10", False),
    ]
)
def test_literals(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@truth_table(
    [
        ('slots.amount > 1000 and slots.account_type = "savings"', True),
        ('slots.amount > 2000 and slots.account_type = "savings"', False),
        ("not slots.logged_in", True),
        ("context.collect is not null", True),
        ("slots.confirm is True", True),
        ("{'gold' 'platinum'} contains slots.tier", True),
        ("slots.unset is null or slots.tier = 'gold'", True),
    ]
)
def test_rasa_style_examples(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


@pytest.mark.parametrize("value", [True, False])
def test_boolean_source_is_a_constant(value: bool) -> None:
    predicate = parse_predicate(value)
    assert predicate.source is value
    assert predicate.evaluate(DOCUMENT) is value
    assert predicate.evaluate({}) is value
    assert predicate.names == frozenset()
    assert predicate.comparisons == ()


def test_parse_is_cached() -> None:
    assert parse_predicate("slots.tier = 'gold'") is parse_predicate("slots.tier = 'gold'")


def test_non_string_source_is_rejected() -> None:
    with pytest.raises(TypeError):
        parse_predicate(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("condition", "message", "column"),
    [
        ("", "unexpected end of condition", 1),
        ("   ", "unexpected end of condition", 1),
        ("# only a comment", "unexpected end of condition", 17),
        ("slots.x and", "unexpected end of condition", 12),
        ("slots.x and   ", "unexpected end of condition", 12),
        ("(slots.x", "unexpected end of condition", 9),
        ("slots.x = )", "unexpected token ')'", 11),
        ("slots.x = 1)", "unexpected token ')'", 12),
        ("slots.x ^ 2", "unexpected character '^'", 9),
        ("slots.x = 'open", "unexpected character \"'\"", 11),
        ("slots.x = and", "unexpected token 'and'", 11),
        ("slots.x and and", "unexpected token 'and'", 13),
        ("slots.x slots.y", "unexpected token 'slots.y'", 9),
        ("slots.x = 100abc", "unexpected token 'abc'", 14),
        ("slots.x is not not null", "unexpected token 'not'", 16),
        ("slots.x = 1 = 2", "unexpected token '='", 13),
        ("slots.x contains {'a'}", "unexpected token '{'", 18),
        ("slots.x contains undefined", "unexpected token 'undefined'", 18),
        ("slots.x contains empty", "unexpected token 'empty'", 18),
        ("slots.x contains (slots.y)", "unexpected token '('", 18),
        ("slots.x matches 5", "unexpected token '5'", 17),
        ("{undefined} contains slots.x", "unexpected token 'undefined'", 2),
        ("{{context.x}}", "unexpected token '{'", 2),
        ("slots.x\nand = 1", "unexpected token '='", 5),
    ],
)
def test_syntax_errors(condition: str, message: str, column: int) -> None:
    with pytest.raises(ConditionSyntaxError) as raised:
        parse_predicate(condition)
    assert raised.value.message == message
    assert raised.value.column == column
    assert str(raised.value) == f"{message} (column {column})"
    assert isinstance(raised.value, ValueError)


def test_invalid_regex_is_a_syntax_error() -> None:
    with pytest.raises(ConditionSyntaxError) as raised:
        parse_predicate('slots.x matches "(unclosed"')
    assert raised.value.message.startswith("invalid regular expression '(unclosed'")
    assert raised.value.column == 17


def test_syntax_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ConditionSyntaxError("unexpected token ')'", 4)))
    assert (error.message, error.column) == ("unexpected token ')'", 4)


@pytest.mark.parametrize(
    "condition",
    ["slots.unset > 1", "slots.name contains 1", "{slots.items} contains 'a'"],
)
def test_evaluation_errors_are_false_and_logged(
    condition: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="voicecalm.conditions"):
        assert parse_predicate(condition).evaluate(DOCUMENT) is False
    assert [record.name for record in caplog.records] == ["voicecalm.conditions"]
    assert condition in caplog.records[0].getMessage()


@pytest.mark.parametrize("document", [{}, {"slots": None}, {"slots": "text"}, {"slots": []}])
def test_odd_documents_do_not_raise(document: Any) -> None:
    assert holds("slots.x is undefined", document)
    assert not holds("slots.x = 1", document)


def test_names_are_collected() -> None:
    predicate = parse_predicate(
        "(slots.a > 1 or not context.collect) and {slots.b 'x'} contains slots.c "
        "and slots.d matches other_word and bare_word"
    )
    assert predicate.names == frozenset(
        {"slots.a", "context.collect", "slots.b", "slots.c", "slots.d", "bare_word"}
    )


@pytest.mark.parametrize(
    ("condition", "comparisons"),
    [
        ('slots.tier = "gold"', [Comparison("slots.tier", "==", "gold")]),
        ("slots.tier is 'gold'", [Comparison("slots.tier", "==", "gold")]),
        ("'gold' == slots.tier", [Comparison("slots.tier", "==", "gold")]),
        ("slots.tier is not 'gold'", [Comparison("slots.tier", "!=", "gold")]),
        ("slots.amount >= 10", [Comparison("slots.amount", ">=", 10.0)]),
        ("10 > slots.amount", [Comparison("slots.amount", "<", 10.0)]),
        ("10 <= slots.amount", [Comparison("slots.amount", ">=", 10.0)]),
        ("slots.confirm is True", [Comparison("slots.confirm", "==", True)]),
        ("context.collect is not null", [Comparison("context.collect", "!=", None)]),
        ("slots.x is undefined", [Comparison("slots.x", "==", UNDEFINED)]),
        ("slots.x != empty", [Comparison("slots.x", "!=", EMPTY)]),
        ("slots.items contains 'a'", [Comparison("slots.items", "contains", "a")]),
        (
            "{'gold' 'platinum'} contains slots.tier",
            [Comparison("slots.tier", "contains", frozenset({"gold", "platinum"}))],
        ),
        ("{1 'a'} contains slots.x", [Comparison("slots.x", "contains", frozenset({1.0, "a"}))]),
        ("slots.name matches '^A'", [Comparison("slots.name", "matches", "^A")]),
        (
            'slots.amount > 1000 and slots.account_type = "savings"',
            [
                Comparison("slots.amount", ">", 1000.0),
                Comparison("slots.account_type", "==", "savings"),
            ],
        ),
        (
            "not (slots.a = 1 or slots.b < 2)",
            [Comparison("slots.a", "==", 1.0), Comparison("slots.b", "<", 2.0)],
        ),
        # Nothing to report: name against name, a bare name, a non-literal set,
        # a string literal holding the name, literal against literal.
        ("slots.a = slots.b", []),
        ("slots.a = savings", []),
        ("slots.flag", []),
        ("{slots.a 'b'} contains slots.c", []),
        ("'abc' contains slots.x", []),
        ("1 = 1", []),
        ("(slots.a) = 1", [Comparison("slots.a", "==", 1.0)]),
    ],
)
def test_comparisons_are_extracted(condition: str, comparisons: list[Comparison]) -> None:
    assert parse_predicate(condition).comparisons == tuple(comparisons)


def test_sentinels_are_hashable_and_falsy() -> None:
    assert not UNDEFINED and not EMPTY
    assert len({UNDEFINED, EMPTY}) == 1  # equal to each other, like pypred
    assert UNDEFINED != None  # noqa: E711
    assert EMPTY == "" and EMPTY == [] and EMPTY != None  # noqa: E711
