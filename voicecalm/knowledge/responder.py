"""The knowledge responder: the document index plus an answerer, behind one `respond` call.

The dialogue core sees it through `voicecalm.dialogue.responders.KnowledgeResponder`: when a
`search` frame is on top of the stack, the executor calls `respond(question, history)` with the
latest user message and the messages before it, then sends `answer.text` (with `answer.sources`
in the message metadata) or, when there is no answer, `pattern_cannot_handle`. In a streaming
turn (voice) it passes `on_part` and sends each sentence as it comes instead.

`create_knowledge_responder(project)` builds it when the project lists `EnterpriseSearchPolicy`
and has a documents folder (`docs/`, or the policy's `vector_store.source`). The answerer:

- `use_generative_llm: false` on the policy: always the extractive answer (no model);
- else the policy's own `llm:` when given;
- else (unless `explicit_llm_only`, used by the e2e runner to stay deterministic) the command
  generator's model, which is the embedded local model when no `llm:` is configured;
- else the extractive answer.

The index is loaded (or built and cached) on first use, or ahead of time by `warm_up()`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voicecalm.knowledge.answer import (
    DEFAULT_THRESHOLD,
    Answer,
    Answerer,
    ExtractiveAnswerer,
    History,
    LlmAnswerer,
    PartSink,
)
from voicecalm.knowledge.index import KnowledgeIndex, Passage, Progress
from voicecalm.models.embedder import Embedder, LocalEmbedder
from voicecalm.project import Project

logger = logging.getLogger(__name__)

POLICY_NAME = "EnterpriseSearchPolicy"
# Answers are spoken: a few sentences at most.
ANSWER_MAX_TOKENS = 160

# A short question that leans on the one before it ("and abroad?", "what about for students?").
_FOLLOW_UP = re.compile(
    r"^(?:and|also|but|what about|how about|and what about|what if)\b|\b(?:it|its|that|this|those|these|they|them|there)\b",
    re.IGNORECASE,
)
FOLLOW_UP_MAX_WORDS = 8


def is_follow_up(question: str) -> bool:
    return len(question.split()) <= FOLLOW_UP_MAX_WORDS and _FOLLOW_UP.search(question.strip()) is not None


class KnowledgeResponder:
    """Searches the project's documents and answers from the best passages."""

    def __init__(
        self,
        project_root: Path,
        *,
        answerer: Answerer | None = None,
        embedder: Embedder | None = None,
        docs_dir: Path | None = None,
        cache_dir: Path | None = None,
        k: int = 3,
        threshold: float = DEFAULT_THRESHOLD,
        index: KnowledgeIndex | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.project_root = Path(project_root)
        self._embedder = embedder
        self.answerer = answerer
        self.docs_dir = docs_dir
        self.cache_dir = cache_dir
        self.k = k
        self.threshold = threshold
        self.progress = progress
        self._index = index
        self._loading = asyncio.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = LocalEmbedder.shared()
        return self._embedder

    def _answerer(self) -> Answerer:
        if self.answerer is None:
            self.answerer = ExtractiveAnswerer(self.embedder, threshold=self.threshold)
        return self.answerer

    async def index(self) -> KnowledgeIndex:
        """The document index, loaded or built on first use (once, whoever asks first)."""
        if self._index is None:
            async with self._loading:
                if self._index is None:
                    self._index = await KnowledgeIndex.load_or_build(
                        self.project_root,
                        self.embedder,
                        docs_dir=self.docs_dir,
                        cache_dir=self.cache_dir,
                        progress=self.progress,
                    )
        return self._index

    async def warm_up(self) -> None:
        """Load or build the index now; a failure is logged (the first search tries again)."""
        try:
            await self.index()
        except Exception:
            logger.exception("the document index could not be loaded; questions will try again")

    async def search(self, question: str, history: History = ()) -> tuple[str, list[Passage]]:
        """(the query used, its passages). A short follow-up that finds nothing relevant alone is
        searched again together with the user's previous message."""
        index = await self.index()
        passages = await index.search(question, self.k)
        relevant = bool(passages) and passages[0].score >= self.threshold
        previous = next((text for speaker, text in reversed(tuple(history)) if speaker == "user"), None)
        if not relevant and previous and is_follow_up(question):
            query = f"{previous} {question}"
            contextual = await index.search(query, self.k)
            if contextual and (not passages or contextual[0].score > passages[0].score):
                return query, contextual
        return question, passages

    async def respond(self, question: str, history: History = (), on_part: PartSink | None = None) -> Answer:
        """The answer; with `on_part`, also handed over in parts as each is known (a model's
        answer sentence by sentence, for voice)."""
        query, passages = await self.search(question, history)
        answer = await self._answerer().answer(query, passages, history, on_part)
        if answer.text is None:
            logger.info("no relevant answer in the documents (best score %.2f) for %r", answer.score, question)
        return answer


def search_policy(project: Project) -> Mapping[str, Any] | None:
    return next((p.model_dump() for p in project.config.policies if p.name == POLICY_NAME), None)


def docs_folder(project: Project, policy: Mapping[str, Any]) -> Path:
    source = (policy.get("vector_store") or {}).get("source")
    return project.root / (source or "docs")


def create_knowledge_responder(project: Project, *, explicit_llm_only: bool = False) -> KnowledgeResponder | None:
    """The responder for a project with `EnterpriseSearchPolicy` and a documents folder, else None.
    Raises `ValueError` when the policy's `llm:` is malformed."""
    from voicecalm.understanding.factory import llm_settings_source

    policy = search_policy(project)
    if policy is None:
        return None
    docs = docs_folder(project, policy)
    if not docs.is_dir():
        logger.warning("%s is configured but %s does not exist: questions get no answer", POLICY_NAME, docs)
        return None
    embedder = LocalEmbedder.shared()  # cheap: the model loads on first use
    answerer: Answerer = ExtractiveAnswerer(embedder)
    if policy.get("use_generative_llm", True) is not False:
        settings = llm_settings_source(
            project, policy.get("llm"), explicit_only=explicit_llm_only, max_tokens=ANSWER_MAX_TOKENS, temperature=0.0
        )
        if settings is not None:
            answerer = LlmAnswerer(settings, answerer)
    return KnowledgeResponder(project.root, answerer=answerer, embedder=embedder, docs_dir=docs)
