"""Scores for the `generative_response_*` assertions (testing.md §2).

- Embedding judge (no `llm_judge`): the cosine similarity of the bot's text with the user's
  message (relevance) or with `ground_truth` (groundedness), under the offline embedding model.
- LLM judge (`llm_judge: {llm, embeddings}` in conftest.yml), scoring as Rasa does. Relevance:
  the model writes the questions the answer would answer, and the score is their mean similarity
  to the user's message. Groundedness: the model marks each statement of the answer as supported
  by the ground truth or not, and the score is the share supported.

A judge that cannot score (no model, a model error, a reply it cannot read) raises
`JudgeUnavailable`: the assertion fails with that message rather than passing silently.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from voicecalm.models.embedder import Embedder

# Questions asked of the LLM judge per answer; their similarities are averaged.
JUDGE_QUESTIONS = 3

RELEVANCE_PROMPT = """Write {count} different questions that the answer below answers well, one per line, and nothing else.

Answer: {answer}

Questions:"""

GROUNDEDNESS_PROMPT = """Check an answer against a reference text. Split the answer into its factual statements. Write one line per statement, starting with SUPPORTED: when the reference states or implies it, or UNSUPPORTED: when it does not, followed by the statement. Write nothing else.

Reference: {ground_truth}

Answer: {answer}

Statements:"""

_VERDICT = re.compile(r"^\W*(SUPPORTED|UNSUPPORTED)\b", re.IGNORECASE | re.MULTILINE)


class JudgeUnavailable(Exception):
    """The judge cannot score; the assertion fails with this message."""


class Judge(Protocol):
    label: str

    async def relevance(self, question: str, answer: str) -> float: ...

    async def groundedness(self, answer: str, ground_truth: str) -> float: ...


async def _vectors(embedder: Embedder, texts: list[str]) -> np.ndarray:
    try:
        vectors = np.asarray(await embedder.embed(texts), dtype=np.float32)
    except Exception as error:  # a model that cannot load or answer: the assertion says so
        raise JudgeUnavailable(f"the embedding model failed: {error}") from error
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class EmbeddingJudge:
    label = "embedding judge"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    async def relevance(self, question: str, answer: str) -> float:
        return await self._similarity(answer, question)

    async def groundedness(self, answer: str, ground_truth: str) -> float:
        return await self._similarity(answer, ground_truth)

    async def _similarity(self, first: str, second: str) -> float:
        one, two = await _vectors(self.embedder, [first, second])
        return float(one @ two)


class LlmJudge:
    label = "llm judge"

    def __init__(self, complete: Callable[[str], Awaitable[str]], embedder: Embedder) -> None:
        self.complete = complete
        self.embedder = embedder

    async def relevance(self, question: str, answer: str) -> float:
        reply = await self._ask(RELEVANCE_PROMPT.format(count=JUDGE_QUESTIONS, answer=answer))
        asked = [line.strip().lstrip("-*0123456789.) ").strip() for line in reply.splitlines()]
        asked = [line for line in asked if line][:JUDGE_QUESTIONS]
        if not asked:
            raise JudgeUnavailable("the judge model wrote no questions")
        vectors = await _vectors(self.embedder, [question, *asked])
        return float(np.mean(vectors[1:] @ vectors[0]))

    async def groundedness(self, answer: str, ground_truth: str) -> float:
        reply = await self._ask(GROUNDEDNESS_PROMPT.format(ground_truth=ground_truth, answer=answer))
        verdicts = [verdict.upper() for verdict in _VERDICT.findall(reply)]
        if not verdicts:
            raise JudgeUnavailable(f"the judge model gave no verdicts: {reply[:80]!r}")
        return verdicts.count("SUPPORTED") / len(verdicts)

    async def _ask(self, prompt: str) -> str:
        try:
            return await self.complete(prompt)
        except Exception as error:  # LlmError and its causes: the assertion fails with the reason
            raise JudgeUnavailable(f"the judge model failed: {error}") from error
