"""Scores for the `generative_response_*` assertions (testing.md §2).

Without an `llm_judge` the score is the cosine similarity of two texts under an offline
embedding model ("embedding judge"). voicecalm ships no embedding model yet, so unless one is
given the judge refuses to score and the assertion fails instead of passing silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

NO_EMBEDDING_MODEL = "no embedding model available for generative_response_* assertions"
NO_LLM_CLIENT = "llm_judge needs an LLM client, which voicecalm does not have yet"


class JudgeUnavailable(Exception):
    """The judge cannot score at all (no model); the assertion fails with this message."""


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class Judge(Protocol):
    label: str

    def relevance(self, question: str, answer: str) -> float: ...

    def groundedness(self, answer: str, ground_truth: str) -> float: ...


class EmbeddingJudge:
    label = "embedding judge"

    def __init__(self, embedder: Embedder | None) -> None:
        self.embedder = embedder

    def relevance(self, question: str, answer: str) -> float:
        return self._similarity(answer, question)

    def groundedness(self, answer: str, ground_truth: str) -> float:
        return self._similarity(answer, ground_truth)

    def _similarity(self, first: str, second: str) -> float:
        if self.embedder is None:
            raise JudgeUnavailable(NO_EMBEDDING_MODEL)
        one, two = self.embedder.embed([first, second])
        return cosine(one, two)


class LlmJudge:
    """The `llm_judge` of `conftest.yml`; it needs an LLM client to score anything."""

    label = "llm judge"

    def relevance(self, question: str, answer: str) -> float:
        raise JudgeUnavailable(NO_LLM_CLIENT)

    def groundedness(self, answer: str, ground_truth: str) -> float:
        raise JudgeUnavailable(NO_LLM_CLIENT)


def cosine(one: Sequence[float], two: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in one)) * math.sqrt(sum(y * y for y in two))
    return sum(x * y for x, y in zip(one, two, strict=True)) / norm if norm else 0.0
