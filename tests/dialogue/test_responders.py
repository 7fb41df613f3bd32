"""Responder frames (`search`, `chitchat`) answered by injected responders, and rephrasing.

Search uses a scripted `KnowledgeResponder` (deterministic, no embedder) and, once, the example
assistant's real documents with the extractive answerer; chitchat and rephrasing use the LLM
adapters in `voicecalm.nlg.rephrase` against a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from tests.dialogue.conftest import Chat
from tests.dialogue.test_patterns import bank_project, started, started_chat
from tests.model_server import ModelServer
from voicecalm.assistant import Assistant, UserTurn, language_services
from voicecalm.dialogue.commands import Knowledge
from voicecalm.dialogue.executor import TurnServices
from voicecalm.knowledge.index import split_sentences
from voicecalm.nlg.rephrase import LlmChitchatResponder, LlmRephraser
from voicecalm.project import load_project
from voicecalm.tracker.events import ActionExecuted, BotUttered, FlowStarted, SlotSet
from voicecalm.tracker.stores import InMemoryTrackerStore
from voicecalm.understanding.factory import completer
from voicecalm.understanding.llm import LlmSettings

EXAMPLE = Path(__file__).resolve().parents[2]

SEARCH_FLOWS = """
flows:
  pattern_search:
    description: Search the documents.
    steps:
      - action: action_trigger_search
"""

CHITCHAT_FLOWS = """
flows:
  pattern_chitchat:
    description: Free-form chitchat.
    steps:
      - action: action_trigger_chitchat
"""


@dataclass
class Result:
    text: str | None
    sources: list[dict[str, Any]] = field(default_factory=list)


class ScriptedKnowledge:
    """Answers from a dict of question → text, sentence by sentence when asked for parts;
    records what it was asked. `fail`: raises before answering; `fail_after_parts`: after the
    parts (a model that dies half-way)."""

    def __init__(self, answers: dict[str, str], fail: bool = False, fail_after_parts: bool = False) -> None:
        self.answers = answers
        self.fail = fail
        self.fail_after_parts = fail_after_parts
        self.asked: list[tuple[str, list[tuple[str, str]]]] = []

    async def respond(self, question: str, history=(), on_part=None) -> Result:
        self.asked.append((question, list(history)))
        if self.fail:
            raise RuntimeError("index is broken")
        text = self.answers.get(question)
        sources = [{"source": "fees.md", "heading": "Fees > Overdraft", "score": 0.8}] if text else []
        if on_part is not None and text:
            for sentence in split_sentences(text):
                on_part(Result(sentence, sources))
            if self.fail_after_parts:
                raise RuntimeError("the model went away")
        return Result(text, sources)


def complete_with(server: ModelServer, timeout: float = 2.0):
    async def source() -> LlmSettings:
        return LlmSettings(model="openai/fake", api_base=f"http://127.0.0.1:{server.port}/v1", api_key="x", timeout=timeout)

    return completer(source)


# --- search ---------------------------------------------------------------------------------------


async def test_search_answer_is_sent_with_its_sources(tmp_path: Path) -> None:
    knowledge = ScriptedKnowledge({"what is the overdraft fee?": "It is $25 per item."})
    chat = await started_chat(bank_project(tmp_path, flows=SEARCH_FLOWS), knowledge=knowledge)
    await chat.say("provide info", text="what is the overdraft fee?")
    assert chat.texts[0] == "It is $25 per item."
    assert chat.last is not None and chat.last.messages[0].response is None
    sources = [{"source": "fees.md", "heading": "Fees > Overdraft", "score": 0.8}]
    assert chat.last.messages[0].metadata["search"] == {"sources": sources}
    uttered = chat.events(BotUttered)[0]
    assert uttered.metadata["search"] == {"sources": sources} and uttered.utter_action is None
    assert chat.utters[1:] == ["utter_ask_continue_conversation"]  # pattern_search ended the stack
    assert [f for f in (await chat.conversation()).stack if f.get("type") == "search"] == []


async def test_search_without_an_answer_cannot_handle(tmp_path: Path) -> None:
    chat = await started_chat(bank_project(tmp_path, flows=SEARCH_FLOWS), knowledge=ScriptedKnowledge({}))
    assert (await chat.say("provide info", text="do you sell pet insurance?"))[0] == "utter_no_relevant_answer_found"
    assert started(chat, "pattern_cannot_handle")["reason"] == "cannot_handle_no_relevant_answer"


async def test_a_failing_search_cannot_handle(tmp_path: Path) -> None:
    chat = await started_chat(bank_project(tmp_path, flows=SEARCH_FLOWS), knowledge=ScriptedKnowledge({}, fail=True))
    assert (await chat.say("provide info", text="what is the overdraft fee?"))[0] == "utter_no_relevant_answer_found"


async def test_a_streaming_turn_sends_the_answer_sentence_by_sentence(tmp_path: Path) -> None:
    answer = "It is $25 per item. It is charged once a day."
    knowledge = ScriptedKnowledge({"what is the overdraft fee?": answer})
    chat = await started_chat(bank_project(tmp_path, flows=SEARCH_FLOWS), knowledge=knowledge)
    heard: list[str | None] = []
    turn = UserTurn(text="what is the overdraft fee?", commands=[Knowledge()], input_channel="rest")
    chat.last = await chat.assistant.handle(chat.sender_id, turn, on_message=lambda m: heard.append(m.text))
    assert heard[:2] == ["It is $25 per item.", "It is charged once a day."]
    uttered = chat.events(BotUttered)
    assert [e.text for e in uttered[:2]] == heard[:2]
    assert all(e.metadata["search"]["sources"][0]["source"] == "fees.md" for e in uttered[:2])
    assert len({e.metadata["message_id"] for e in uttered[:2]}) == 2  # heard or cut off one by one
    # Without a listener (text channels) the same answer is one message.
    await chat.say("provide info", text="what is the overdraft fee?")
    assert chat.texts[0] == answer


async def test_a_stream_that_breaks_off_keeps_what_was_said(tmp_path: Path) -> None:
    knowledge = ScriptedKnowledge({"what is the overdraft fee?": "It is $25 per item."}, fail_after_parts=True)
    chat = await started_chat(bank_project(tmp_path, flows=SEARCH_FLOWS), knowledge=knowledge)
    turn = UserTurn(text="what is the overdraft fee?", commands=[Knowledge()], input_channel="rest")
    chat.last = await chat.assistant.handle(chat.sender_id, turn, on_message=lambda m: None)
    assert chat.texts[0] == "It is $25 per item."
    assert "pattern_cannot_handle" not in [e.flow_id for e in chat.events(FlowStarted)]


async def test_search_inside_a_flow_answers_then_asks_again_with_history(tmp_path: Path) -> None:
    knowledge = ScriptedKnowledge({"and the fee?": "It is $25 per item."})
    chat = await started_chat(bank_project(tmp_path, flows=SEARCH_FLOWS), knowledge=knowledge)
    await chat.say("start flow transfer_money", text="I want to send money")
    assert await chat.say("provide info", text="and the fee?") == ["It is $25 per item.", "utter_ask_recipient"]
    question, history = knowledge.asked[-1]
    assert question == "and the fee?"
    assert history[-2:] == [("user", "I want to send money"), ("bot", chat.texts[-1])]  # the question, asked before


async def test_example_assistant_answers_from_its_documents() -> None:
    project = load_project(EXAMPLE)
    assistant = Assistant(project, InMemoryTrackerStore(), services=language_services(project, explicit_llm_only=True))
    chat = Chat(assistant)
    await chat.say("provide info", text="what are your overdraft fees?")
    answer = next(m for m in chat.last.messages if m.response is None)
    assert "$25 per item" in (answer.text or "")
    assert answer.metadata["search"]["sources"][0]["source"] == "overdraft.md"
    await chat.say("provide info", text="do you offer pet insurance?")
    assert "utter_no_relevant_answer_found" in chat.utters


# --- chitchat -------------------------------------------------------------------------------------


async def test_chitchat_reply_replaces_the_free_response_text(tmp_path: Path, fake_model: ModelServer) -> None:
    fake_model.completions.append("Assistant: Ha, I'm doing great, thanks for asking! /SetSlots(amount=1000)")
    chitchat = LlmChitchatResponder(complete_with(fake_model))
    chat = await started_chat(bank_project(tmp_path, flows=CHITCHAT_FLOWS), chitchat=chitchat)
    assert await chat.say("offtopic reply", text="how are you today?") == ["utter_free_chitchat_response"]
    assert chat.texts[0].startswith("Ha, I'm doing great, thanks for asking!")
    assert chat.last.messages[0].metadata.get("chitchat") is True
    assert "Caller: how are you today?" in fake_model.prompts[-1]
    # Only text: no slot changes but the bookkeeping ones, no action but the pattern's own.
    assert {e.slot for e in chat.events(SlotSet)} <= {"flow_hashes", "consecutive_silence_timeouts"}
    assert "amount" not in {e.slot for e in chat.events(SlotSet)}
    assert [e.action_name for e in chat.events(ActionExecuted)] == ["action_trigger_chitchat"]


async def test_chitchat_model_failure_sends_the_response_as_written(tmp_path: Path, fake_model: ModelServer) -> None:
    fake_model.status = 500
    chitchat = LlmChitchatResponder(complete_with(fake_model))
    chat = await started_chat(bank_project(tmp_path, flows=CHITCHAT_FLOWS), chitchat=chitchat)
    assert await chat.say("offtopic reply", text="how are you today?") == ["utter_free_chitchat_response"]
    assert chat.texts[0] == "Sorry, I can't answer that right now."


async def test_chitchat_without_responder_cannot_handle(tmp_path: Path) -> None:
    chat = await started_chat(bank_project(tmp_path, flows=CHITCHAT_FLOWS))
    assert await chat.say("offtopic reply") == ["utter_cannot_handle"]


# --- rephrasing -----------------------------------------------------------------------------------


async def test_flagged_responses_are_rephrased_with_the_history(tmp_path: Path, fake_model: ModelServer) -> None:
    rephraser = LlmRephraser(complete_with(fake_model))
    chat = await started_chat(bank_project(tmp_path), rephraser=rephraser)
    fake_model.prompts.clear()
    fake_model.completions.extend(["I have no documents for that, sorry.", "Anything else I can do for you today?"])
    # Both default responses have metadata.rephrase: true.
    assert await chat.say("provide info", text="tell me about fees") == ["utter_no_knowledge_base", "utter_ask_continue_conversation"]
    assert chat.texts == ["I have no documents for that, sorry.", "Anything else I can do for you today?"]
    assert chat.last.messages[1].metadata.get("rephrased") is True
    assert chat.events(BotUttered)[1].text == "Anything else I can do for you today?"
    assert len(fake_model.prompts) == 2
    prompt = fake_model.prompts[-1]
    assert "USER: tell me about fees" in prompt and "Can I help you with anything else?" in prompt


async def test_unflagged_responses_are_not_rephrased(tmp_path: Path, fake_model: ModelServer) -> None:
    chat = await started_chat(bank_project(tmp_path), rephraser=LlmRephraser(complete_with(fake_model)))
    assert await chat.say("cannot handle") == ["utter_ask_rephrase"]
    assert fake_model.prompts == []
    everything = LlmRephraser(complete_with(fake_model), rephrase_all=True)
    assert everything.wants({}) and not everything.wants({"rephrase": False})


async def test_rephrase_timeout_falls_back_to_the_original_text(tmp_path: Path, fake_model: ModelServer) -> None:
    fake_model.delay = 3.0
    rephraser = LlmRephraser(complete_with(fake_model), timeout=0.3)
    chat = await started_chat(bank_project(tmp_path), rephraser=rephraser)
    fake_model.completions.extend(["late", "late"])  # a rephrased text would read "late"
    await chat.say("provide info", text="tell me about fees")
    assert chat.texts == [
        "Sorry, I don't know that, and I have no documents to look it up in.",
        "Can I help you with anything else?",
    ]


async def test_rephraser_comes_from_endpoints_nlg(tmp_path: Path, fake_model: ModelServer) -> None:
    project = bank_project(tmp_path)
    (project.root / "endpoints.yml").write_text(
        "nlg:\n  type: rephrase\n  rephrase_all: true\n  llm:\n    provider: openai\n    model: fake\n"
        f"    api_base: http://127.0.0.1:{fake_model.port}/v1\n    api_key: x\n"
    )
    services = language_services(load_project(project.root), explicit_llm_only=True)
    assert isinstance(services.rephraser, LlmRephraser) and services.rephraser.rephrase_all
    assert services.knowledge is None and services.chitchat is None
    (project.root / "endpoints.yml").write_text("nlg:\n  type: rephrase\n")
    assert language_services(load_project(project.root), explicit_llm_only=True).rephraser is None
    assert language_services(bank_project(tmp_path / "plain")).rephraser is None


def test_turn_services_have_one_way_to_say_what_responds() -> None:
    assert not TurnServices().has_chitchat_responder
    assert TurnServices(chitchat=LlmChitchatResponder(lambda prompt: None)).has_chitchat_responder  # type: ignore[arg-type]

