"""The document index with the real local embedder: build, cache, rebuild, search, no-answer gate."""

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from voicecalm.knowledge import DEFAULT_THRESHOLD, ExtractiveAnswerer, KnowledgeIndex
from voicecalm.knowledge.answer import is_relevant
from voicecalm.models.embedder import LocalEmbedder

EXAMPLE = Path(__file__).resolve().parents[2]  # the example assistant: docs/ with six FAQ files


class CountingEmbedder:
    """The real embedder, counting the texts it embeds."""

    def __init__(self) -> None:
        self.inner = LocalEmbedder.shared()
        self.texts = 0

    @property
    def name(self) -> str:
        return self.inner.name

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return await self.inner.embed(texts)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder.shared()


@pytest.fixture(scope="module")
def example_index(embedder, tmp_path_factory) -> KnowledgeIndex:
    # Built once for the module, on its own event loop (the tests' loops are per function).
    return asyncio.run(KnowledgeIndex.load_or_build(EXAMPLE, embedder, cache_dir=tmp_path_factory.mktemp("knowledge")))


async def test_embedder_rows_are_normalised_and_meaningful(embedder):
    vectors = await embedder.embed(["I lost my debit card", "My bank card is missing", "The weather is sunny"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert (await embedder.embed([])).shape == (0, 384)


async def test_build_then_cache_then_rebuild_on_change(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hours.md").write_text("# Hours\n\nThe branch opens at 9 am on weekdays.\n")
    (docs / "fees.txt").write_text("A cashier's check costs $10.\n")
    counting = CountingEmbedder()

    built = await KnowledgeIndex.load_or_build(tmp_path, counting, progress=lambda done, total: None)
    assert built.rebuilt and len(built) == 2 and counting.texts == 2
    assert (tmp_path / ".voicecalm" / "knowledge" / "chunks.json").is_file()

    again = await KnowledgeIndex.load_or_build(tmp_path, counting)
    assert not again.rebuilt and counting.texts == 2  # nothing embedded: from the cache
    assert again.fingerprint == built.fingerprint
    assert [p.source for p in await again.search("when do you open?", k=1)] == ["hours.md"]

    (docs / "fees.txt").write_text("A cashier's check costs $12.\n")
    changed = await KnowledgeIndex.load_or_build(tmp_path, counting)
    assert changed.rebuilt and changed.fingerprint != built.fingerprint
    assert "$12" in (await changed.search("price of a cashier's check", k=1))[0].text


async def test_a_damaged_cache_is_rebuilt(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text about savings accounts.\n")
    await KnowledgeIndex.load_or_build(tmp_path)
    (tmp_path / ".voicecalm" / "knowledge" / "index.faiss").write_bytes(b"garbage")
    index = await KnowledgeIndex.load_or_build(tmp_path)
    assert index.rebuilt and len(index) == 1


async def test_no_docs_folder_gives_an_empty_index(tmp_path: Path):
    index = await KnowledgeIndex.load_or_build(tmp_path)
    assert len(index) == 0 and await index.search("anything") == []


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("somebody took my card, how do I stop it being used?", "card_security.md"),
        ("what do you charge to send money to a bank in another country?", "international_transfers.md"),
        ("is the Riverside office open on the weekend?", "opening_hours.md"),
        ("how much interest does the high yield account earn?", "savings_and_interest.md"),
        ("how much can I go overdrawn?", "overdraft.md"),
        ("is there a fee for paper statements?", "fees.md"),
    ],
)
async def test_search_finds_the_right_document(example_index, question, source):
    passages = await example_index.search(question, k=3)
    assert passages[0].source == source
    assert passages[0].score >= DEFAULT_THRESHOLD
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert len({(p.source, p.heading, p.text) for p in passages}) == 3


@pytest.mark.parametrize(
    "question",
    ["what's the weather like tomorrow?", "can you recommend a pizza place?", "who won the football game last night?"],
)
async def test_unanswerable_questions_fall_below_the_threshold(example_index, embedder, question):
    passages = await example_index.search(question, k=3)
    assert passages[0].score < DEFAULT_THRESHOLD
    assert not is_relevant(passages, DEFAULT_THRESHOLD)
    answer = await ExtractiveAnswerer(embedder).answer(question, passages)
    assert answer.text is None and not answer.relevant


async def test_extractive_answer_is_short_and_from_the_best_passage(example_index, embedder):
    question = "how long does a standard replacement card take to arrive?"
    passages = await example_index.search(question, k=3)
    answer = await ExtractiveAnswerer(embedder).answer(question, passages, history=[("user", "I lost my card")])
    assert answer.relevant and answer.score == passages[0].score
    assert "7 business days" in answer.text
    assert len(answer.text) <= 260
    sentences = [s for s in answer.text.replace("!", ".").split(". ") if s]
    assert 1 <= len(sentences) <= 2
    assert answer.text.endswith(".")
    assert answer.passages and answer.passages[0] == passages[0]
    # every sentence comes from the passages the answer rests on
    body = " ".join(p.text for p in answer.passages)
    assert all(s.rstrip(".") in body for s in sentences)
