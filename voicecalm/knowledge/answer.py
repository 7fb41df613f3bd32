"""From passages to an answer a voice assistant can speak.

Every answerer takes the same inputs: the question, the passages a search found (best first) and
the conversation so far as (speaker, text) pairs, and returns an `Answer`. Both answerers share
one relevance gate: if the best passage scores below `threshold` there is no relevant answer, and
no model is asked. `ExtractiveAnswerer` needs no LLM: it answers with the one or two sentences of
the best passages that are most similar to the question, kept short enough to speak.
`LlmAnswerer` asks a language model for a short spoken answer grounded only in the passages (or
`NO_ANSWER`), streamed sentence by sentence, and falls back to the extractive answer when the
model fails or times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from voicecalm.knowledge.index import Passage, finished_sentences, split_sentences
from voicecalm.models.embedder import Embedder
from voicecalm.understanding.llm import LlmSettings, stream

logger = logging.getLogger(__name__)

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
    method: str = "extractive"  # or "llm"

    @property
    def relevant(self) -> bool:
        return self.text is not None

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Where the answer comes from, best first: file (relative to docs/), heading, score."""
        return [{"source": p.source, "heading": p.heading, "score": round(p.score, 3)} for p in self.passages]


PartSink = Callable[[Answer], None]


class Answerer(Protocol):
    async def answer(
        self, question: str, passages: Sequence[Passage], history: History = (), on_part: PartSink | None = None
    ) -> Answer:
        """The answer. With `on_part`, its text is also handed over in parts (each an `Answer`
        with the same passages) as soon as each part is known; the parts make up the whole."""
        ...


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

    async def answer(
        self, question: str, passages: Sequence[Passage], history: History = (), on_part: PartSink | None = None
    ) -> Answer:
        answer = await self._answer(question, tuple(passages))
        if on_part is not None and answer.text is not None:
            on_part(answer)  # all of it is known at once: one part
        return answer

    async def _answer(self, question: str, passages: tuple[Passage, ...]) -> Answer:
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


# --- the LLM-grounded answer -------------------------------------------------------------------

NO_ANSWER = "NO_ANSWER"

ANSWER_PROMPT = """You answer callers' questions for a customer-service voice assistant, using ONLY the documents below.

Documents:
{documents}
{conversation}
Question: {question}

Rules:
- Answer in one or two short sentences that sound natural when spoken aloud: no lists, no markdown, no URLs.
- Use only facts stated in the documents. Never guess, and never add facts that are not there.
- If the documents do not answer the question, reply with exactly {no_answer} and nothing else.

Answer:"""

SettingsSource = Callable[[], Awaitable[LlmSettings]]


def _answer_prompt(question: str, passages: Sequence[Passage], history: History) -> str:
    documents = "\n\n".join(
        f"[{number}] {p.heading or p.source}\n{p.text}" for number, p in enumerate(passages, start=1)
    )
    conversation = ""
    if history:
        lines = "\n".join(f"{'Caller' if speaker == 'user' else 'Assistant'}: {text}" for speaker, text in history)
        conversation = f"\nConversation so far:\n{lines}\n"
    return ANSWER_PROMPT.format(documents=documents, conversation=conversation, question=question, no_answer=NO_ANSWER)


class SpokenSentences:
    """The model's answer, written piece by piece, turned into speakable sentences as soon as each
    one is complete: at most `max_sentences`, at most `max_chars` (the first sentence always).
    `NO_ANSWER` anywhere ends the answer; said before any sentence, it means no answer."""

    def __init__(self, max_sentences: int = 3, max_chars: int = 400) -> None:
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.sentences: list[str] = []
        self.done = False
        self._pending = ""

    @property
    def text(self) -> str | None:
        return " ".join(self.sentences) or None

    def feed(self, piece: str) -> list[str]:
        """The sentences `piece` completes (the last one may go on in the next piece)."""
        if self.done:
            return []
        finished, self._pending = finished_sentences(self._pending + piece)
        return self._take(finished)

    def finish(self) -> list[str]:
        """The rest, once the model has stopped writing."""
        if self.done:
            return []
        rest, self._pending = self._pending, ""
        return self._take(split_sentences(rest) or [rest])

    def _take(self, parts: list[str]) -> list[str]:
        taken = []
        for part in parts:
            if NO_ANSWER in part or re.fullmatch(r"\W*no[ _]answer\W*", part, flags=re.IGNORECASE):
                self.done = True
                break
            sentence = self._clean(part, first=not self.sentences)
            if not sentence:
                continue
            if self.sentences and len(self.text or "") + 1 + len(sentence) > self.max_chars:
                self.done = True
                break
            self.sentences.append(sentence)
            taken.append(sentence)
            if len(self.sentences) >= self.max_sentences:
                self.done = True
                break
        return taken

    @staticmethod
    def _clean(sentence: str, *, first: bool) -> str:
        if first:
            sentence = re.sub(r"^\s*(?:answer|assistant)\s*:\s*", "", sentence, flags=re.IGNORECASE)
        sentence = re.sub(r"[*_`#]+", "", sentence)  # markdown emphasis and headings are not spoken
        return re.sub(r"\s+", " ", sentence).strip().strip('"').strip()


class LlmAnswerer:
    """An answer written by a language model from the top passages and the recent conversation.

    The relevance gate comes first (below `threshold`: no answer, no model call). The answer is
    streamed: with `on_part`, each sentence is handed over as soon as the model has written it,
    so a voice channel starts speaking while the model goes on. The model's `NO_ANSWER` means no
    answer. An error or a timeout before the first sentence falls back to `fallback` (the
    extractive answer), so a slow or absent model never leaves the caller without the documents'
    answer; one after it ends the answer with the sentences already given.
    """

    def __init__(
        self,
        settings: SettingsSource,
        fallback: Answerer,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        max_passages: int = 3,
        max_history: int = 4,
        timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.fallback = fallback
        self.threshold = threshold
        self.max_passages = max_passages
        self.max_history = max_history
        self.timeout = timeout  # until the first sentence, model start-up included; None: the model's own

    async def answer(
        self, question: str, passages: Sequence[Passage], history: History = (), on_part: PartSink | None = None
    ) -> Answer:
        passages = tuple(passages)
        if not is_relevant(passages, self.threshold):
            return Answer(text=None, passages=passages, score=passages[0].score if passages else 0.0)
        used = passages[: self.max_passages]
        prompt = _answer_prompt(question, used, tuple(history)[-self.max_history :] if self.max_history else ())
        sentences = SpokenSentences()

        def given(new: list[str]) -> None:
            for sentence in new:
                if on_part is not None:
                    on_part(Answer(text=sentence, passages=used, score=passages[0].score, method="llm"))

        try:
            async with asyncio.timeout(self.timeout) as first_sentence:
                async with contextlib.aclosing(stream(await self.settings(), prompt)) as pieces:
                    async for piece in pieces:
                        given(sentences.feed(piece))
                        if sentences.sentences:
                            first_sentence.reschedule(None)
                        if sentences.done:
                            break
                given(sentences.finish())
        except Exception as error:  # LlmError, a timeout, a model that cannot start: all the same here
            if not sentences.sentences:
                logger.warning("the language model could not answer (%s); answering from the documents directly", error)
                return await self.fallback.answer(question, passages, history, on_part)
            logger.warning("the language model stopped (%s); the answer ends after %d sentence(s)", error, len(sentences.sentences))
        return Answer(text=sentences.text, passages=used, score=passages[0].score, method="llm")
