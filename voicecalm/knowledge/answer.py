"""From passages to an answer a voice assistant can speak.

Every answerer takes the same inputs: the question, the passages a search found (best first) and
the conversation so far as (speaker, text) pairs, and returns an `Answer`. `ExtractiveAnswerer`
needs no LLM: if the best passage scores below `threshold` there is no relevant answer; else it
answers with the one or two sentences of the best passages that are most similar to the question,
kept short enough to speak. An LLM-grounded answerer (later, with the command generator's LLM
access) implements the same `Answerer` protocol and can keep the same relevance gate.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voicecalm.knowledge.index import Passage, split_sentences
from voicecalm.models.embedder import Embedder

# Calibrated with benchmarks/knowledge_retrieval.py on the example assistant's docs (42 answerable,
# 11 unanswerable questions, all-MiniLM-L6-v2, chunk-or-line scoring): every threshold from 0.35 to
# 0.45 keeps 39/42 answerable questions and refuses 10/11 unanswerable ones; 0.30-0.32 would keep
# 41-42 but answer 2-3 unanswerable ones. A wrong answer spoken with confidence costs more than
# "I could not find that", so the middle of the refusing plateau. Recalibrate per embedder.
DEFAULT_THRESHOLD = 0.40
# Sentences are only taken from passages scoring within this margin of the best one.
PASSAGE_MARGIN = 0.08

History = Sequence[tuple[str, str]]  # ("user" | "bot", text), oldest first


@dataclass(frozen=True, slots=True)
class Answer:
    text: str | None  # None: the documents hold no relevant answer
    passages: tuple[Passage, ...]  # what the answer rests on, best first
    score: float  # the best passage's score

    @property
    def relevant(self) -> bool:
        return self.text is not None


class Answerer(Protocol):
    async def answer(self, question: str, passages: Sequence[Passage], history: History = ()) -> Answer: ...


def is_relevant(passages: Sequence[Passage], threshold: float) -> bool:
    return bool(passages) and passages[0].score >= threshold


def _candidates(passages: Sequence[Passage]) -> list[tuple[int, int, str]]:
    """(passage index, position, sentence) of the passages' sentences; list items and table rows
    (one per line in a chunk) count as sentences."""
    out = []
    for p, passage in enumerate(passages):
        position = 0
        for line in passage.text.splitlines():
            for sentence in split_sentences(line):
                sentence = sentence.strip()
                if len(re.findall(r"\w+", sentence)) >= 3:
                    out.append((p, position, sentence))
                    position += 1
    return out


def _spoken(sentence: str) -> str:
    sentence = sentence.strip()
    return sentence if sentence[-1:] in ".!?" else sentence + "."


class ExtractiveAnswerer:
    """The no-LLM answer: at most `max_sentences` sentences of the best passages, chosen by
    similarity to the question, in document order, at most `max_chars` long (the best sentence
    alone if two are too long; a longer best sentence is still given whole)."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        max_sentences: int = 2,
        max_chars: int = 260,
        margin: float = PASSAGE_MARGIN,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.margin = margin
        # Documents' sentences come back again and again: their vectors are kept (LRU).
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = 4096

    async def _embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for text, vector in zip(missing, await self.embedder.embed(missing)):
                self._vectors[text] = vector
        rows = []
        for text in texts:
            self._vectors.move_to_end(text)
            rows.append(self._vectors[text])
        while len(self._vectors) > self._cache_size:
            self._vectors.popitem(last=False)
        return np.stack(rows)

    async def answer(self, question: str, passages: Sequence[Passage], history: History = ()) -> Answer:
        passages = tuple(passages)
        if not is_relevant(passages, self.threshold):
            return Answer(text=None, passages=passages, score=passages[0].score if passages else 0.0)
        best = passages[0].score
        used = tuple(p for p in passages if p.score >= best - self.margin)
        candidates = _candidates(used)
        if not candidates:
            return Answer(text=_spoken(used[0].text), passages=used, score=best)
        vectors = await self._embed([question, *(sentence for _, _, sentence in candidates)])
        similarity = vectors[1:] @ vectors[0]
        # Sentences of the best passage are preferred a little: it matched the question as a whole.
        similarity = similarity + np.array([0.05 if p == 0 else 0.0 for p, _, _ in candidates], dtype=np.float32)
        ranked = [candidates[i] for i in np.argsort(-similarity)]
        chosen = [ranked[0]]
        for candidate in ranked[1 : self.max_sentences]:
            if sum(len(s) for _, _, s in chosen) + len(candidate[2]) + 1 <= self.max_chars:
                chosen.append(candidate)
        chosen.sort(key=lambda c: (c[0], c[1]))
        text = " ".join(_spoken(sentence) for _, _, sentence in chosen)
        return Answer(text=text, passages=used, score=best)
