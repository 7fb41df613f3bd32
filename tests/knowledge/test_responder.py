"""The knowledge responder: index + answerer, extractive (no LLM) and LLM-grounded with fallback.

The LLM is played by an OpenAI-compatible server on loopback (tests/understanding's ModelServer);
a closed port stands for a model that is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.model_server import ModelServer
from voicecalm.knowledge.answer import (
    NO_ANSWER,
    ExtractiveAnswerer,
    LlmAnswerer,
    SpokenSentences,
)
from voicecalm.knowledge.index import split_sentences
from voicecalm.knowledge.responder import (
    KnowledgeResponder,
    create_knowledge_responder,
    is_follow_up,
)
from voicecalm.models.embedder import LocalEmbedder
from voicecalm.project import load_project
from voicecalm.testing.action_server import free_port
from voicecalm.understanding.llm import LlmSettings

EXAMPLE = Path(__file__).resolve().parents[2]

FEES = """# Fees

## Overdraft

An overdraft fee of $25 is charged per item that takes the account below zero, at most 3 per day.
There is no fee if the account is overdrawn by $10 or less at the end of the day.

## Checks

Stopping payment on a check costs $30. A cashier's check costs $10.
"""

HOURS = """# Opening hours

Customer service agents answer the phone Monday to Friday from 8 am to 8 pm.
The fraud line 1-800-555-0199 is open 24 hours a day, 7 days a week.
"""


@pytest.fixture(scope="module")
def project_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bank")
    (root / "docs").mkdir()
    (root / "docs" / "fees.md").write_text(FEES)
    (root / "docs" / "hours.md").write_text(HOURS)
    return root


def settings_for(port: int, timeout: float = 2.0):
    async def source() -> LlmSettings:
        return LlmSettings(model="openai/fake", api_base=f"http://127.0.0.1:{port}/v1", api_key="not-a-key", timeout=timeout)

    return source


def responder(root: Path, answerer=None) -> KnowledgeResponder:
    embedder = LocalEmbedder.shared()
    return KnowledgeResponder(root, embedder=embedder, answerer=answerer)


async def test_answerable_question_gets_an_extractive_answer_with_sources(project_root: Path) -> None:
    answer = await responder(project_root).respond("how much is the overdraft fee?")
    assert answer.text is not None and "$25" in answer.text
    assert answer.method == "extractive"
    assert answer.sources[0]["source"] == "fees.md"
    assert answer.sources[0]["heading"] == "Fees > Overdraft"
    assert answer.sources[0]["score"] >= 0.40


async def test_unanswerable_question_gets_no_answer(project_root: Path) -> None:
    answer = await responder(project_root).respond("do you offer pet insurance?")
    assert answer.text is None and not answer.relevant


async def test_llm_answer_is_grounded_in_the_passages_and_the_conversation(project_root: Path, fake_model: ModelServer) -> None:
    fake_model.completions.append("Answer: An overdraft costs **$25** per item.")
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    history = [("user", "hi"), ("bot", "Hello, how can I help?")]
    answer = await responder(project_root, llm).respond("how much is the overdraft fee?", history)
    assert answer.text == "An overdraft costs $25 per item."
    assert answer.method == "llm" and answer.sources[0]["source"] == "fees.md"
    prompt = fake_model.prompts[-1]
    assert "An overdraft fee of $25 is charged per item" in prompt
    assert NO_ANSWER in prompt and "Caller: hi" in prompt and "Question: how much is the overdraft fee?" in prompt


async def test_llm_no_answer_means_no_answer(project_root: Path, fake_model: ModelServer) -> None:
    fake_model.completions.append("NO_ANSWER")
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    answer = await responder(project_root, llm).respond("how much is the overdraft fee for students?")
    assert answer.text is None and len(fake_model.prompts) == 1


async def test_below_the_threshold_the_model_is_not_asked(project_root: Path, fake_model: ModelServer) -> None:
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    answer = await responder(project_root, llm).respond("do you offer pet insurance?")
    assert answer.text is None and fake_model.prompts == []


async def test_a_model_that_is_down_falls_back_to_the_extractive_answer(project_root: Path) -> None:
    closed = free_port()  # nothing listens there
    llm = LlmAnswerer(settings_for(closed, timeout=1.0), ExtractiveAnswerer(LocalEmbedder.shared()))
    answer = await responder(project_root, llm).respond("how much is the overdraft fee?")
    extractive = await responder(project_root).respond("how much is the overdraft fee?")
    assert answer.method == "extractive" and answer.text == extractive.text and "$25" in answer.text


async def test_a_model_error_or_timeout_falls_back(project_root: Path, fake_model: ModelServer) -> None:
    fake_model.status = 500
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    assert (await responder(project_root, llm).respond("how much is the overdraft fee?")).method == "extractive"
    fake_model.status, fake_model.delay = 200, 2.0
    fake_model.completions.append("Too late.")
    slow = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()), timeout=0.3)
    answer = await responder(project_root, slow).respond("how much is the overdraft fee?")
    assert answer.method == "extractive" and "$25" in (answer.text or "")


async def test_a_short_follow_up_is_searched_with_the_previous_question(project_root: Path) -> None:
    history = [("user", "how much does a cashier's check cost?"), ("bot", "A cashier's check costs $10.")]
    alone = await responder(project_root).respond("what about stopping one?")
    assert alone.text is None  # scores 0.24 on its own
    query, passages = await responder(project_root).search("what about stopping one?", history)
    assert query == "how much does a cashier's check cost? what about stopping one?"
    assert passages[0].heading == "Fees > Checks"
    answer = await responder(project_root).respond("what about stopping one?", history)
    assert answer.text is not None and "$30" in answer.text
    assert is_follow_up("and the fraud line?") and not is_follow_up("how much does a cashier's check cost?")
    # A question that is not a follow-up is never mixed with the one before.
    assert (await responder(project_root).respond("do you offer pet insurance?", history)).text is None


FEE_ANSWER = "An overdraft costs $25 per item. It is charged once per day. You can ask us to waive the first one."


async def test_a_streamed_answer_is_given_sentence_by_sentence_while_the_model_writes(
    project_root: Path, fake_model: ModelServer
) -> None:
    fake_model.completions.append(FEE_ANSWER)
    fake_model.piece_delay = 0.02
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    parts: list[tuple[str | None, int]] = []
    answer = await responder(project_root, llm).respond(
        "how much is the overdraft fee?", on_part=lambda part: parts.append((part.text, FEE_ANSWER in fake_model.streams_written))
    )
    assert [text for text, _ in parts] == split_sentences(FEE_ANSWER)
    assert parts[0][1] is False, "the first sentence came while the model was still writing"
    assert answer.text == FEE_ANSWER and answer.method == "llm"


async def test_a_streamed_answer_stops_the_model_at_the_sentence_limit(project_root: Path, fake_model: ModelServer) -> None:
    written = FEE_ANSWER + " More." * 40  # two seconds more of writing
    fake_model.completions.append(written)
    fake_model.piece_delay = 0.05
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    answer = await responder(project_root, llm).respond("how much is the overdraft fee?")
    assert answer.text == FEE_ANSWER
    # The request was closed: the server's stream ends without writing the rest.
    cut: list[str] = []
    for _ in range(150):
        cut = [text for text in fake_model.streams_cut if text.startswith(FEE_ANSWER)]
        if cut:
            break
        await asyncio.sleep(0.02)
    assert cut and len(cut[0]) < len(written)
    assert written not in fake_model.streams_written


async def test_a_stream_that_stalls_after_a_sentence_ends_there(project_root: Path, fake_model: ModelServer) -> None:
    fake_model.completions.append(FEE_ANSWER)
    fake_model.stall_after = 9  # "An overdraft costs $25 per item. It is charged" ... silence
    llm = LlmAnswerer(settings_for(fake_model.port, timeout=1.0), ExtractiveAnswerer(LocalEmbedder.shared()))
    parts: list[str | None] = []
    answer = await responder(project_root, llm).respond("how much is the overdraft fee?", on_part=lambda p: parts.append(p.text))
    assert answer.text == "An overdraft costs $25 per item." and answer.method == "llm"
    assert parts == [answer.text], "nothing is said twice, nothing falls back to the documents"


async def test_a_stream_that_stalls_before_a_sentence_falls_back(project_root: Path, fake_model: ModelServer) -> None:
    fake_model.completions.append(FEE_ANSWER)
    fake_model.stall_after = 3
    llm = LlmAnswerer(settings_for(fake_model.port, timeout=1.0), ExtractiveAnswerer(LocalEmbedder.shared()))
    parts: list[str | None] = []
    answer = await responder(project_root, llm).respond("how much is the overdraft fee?", on_part=lambda p: parts.append(p.text))
    assert answer.method == "extractive" and "$25" in (answer.text or "")
    assert parts == [answer.text]


async def test_a_streamed_no_answer_gives_no_part(project_root: Path, fake_model: ModelServer) -> None:
    fake_model.completions.append("NO_ANSWER")
    llm = LlmAnswerer(settings_for(fake_model.port), ExtractiveAnswerer(LocalEmbedder.shared()))
    parts: list[object] = []
    answer = await responder(project_root, llm).respond("how much is the overdraft fee for students?", on_part=parts.append)
    assert answer.text is None and parts == []


def test_spoken_sentences_from_pieces() -> None:
    sentences = SpokenSentences(max_sentences=3, max_chars=60)
    given = [s for piece in ["Answer: It costs **$3", "0**. Two", " dollars", " more. Then", " a very long third sentence that is over the limit."] for s in sentences.feed(piece)]
    assert given == ["It costs $30.", "Two dollars more."]
    assert sentences.finish() == [] and sentences.done and sentences.text == "It costs $30. Two dollars more."
    stopped = SpokenSentences()
    assert stopped.feed("One. NO_ANSWER. Two. ") == ["One."] and stopped.done


def spoken(whole: str) -> str | None:
    sentences = SpokenSentences()
    sentences.feed(whole)
    sentences.finish()
    return sentences.text


def test_a_whole_answer_is_cleaned_for_speech() -> None:
    assert spoken("NO_ANSWER") is None
    assert spoken("  no answer. ") is None
    assert spoken("") is None
    assert spoken('"It costs $30." ') == "It costs $30."
    assert spoken("One. Two. Three. Four.") == "One. Two. Three."


def test_the_example_assistant_gets_a_responder() -> None:
    project = load_project(EXAMPLE)
    deterministic = create_knowledge_responder(project, explicit_llm_only=True)
    assert deterministic is not None and isinstance(deterministic.answerer, ExtractiveAnswerer)
    assert deterministic.docs_dir == EXAMPLE / "docs"
    # At run time the command generator's model (here the embedded one) writes the answers.
    assert isinstance(create_knowledge_responder(project).answerer, LlmAnswerer)
