"""Flow condition language: parse once with `parse_predicate`, then `evaluate`."""

from voicecalm.conditions.predicate import (
    EMPTY,
    UNDEFINED,
    Comparison,
    ConditionSyntaxError,
    Predicate,
    parse_predicate,
)

__all__ = [
    "EMPTY",
    "UNDEFINED",
    "Comparison",
    "ConditionSyntaxError",
    "Predicate",
    "parse_predicate",
]
