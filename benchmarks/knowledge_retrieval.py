"""Knowledge retrieval on the example assistant's docs/: hit@1, hit@3, the no-answer gate, latency.

The questions are written for the six FAQ documents in paraphrase (few share more than a word or
two with the text), each labelled with the document that answers it (two where both do), plus
questions the documents cannot answer. Prints:
- hit@1 / hit@3: the right document is the source of the best / one of the best three passages;
- the no-answer gate at `DEFAULT_THRESHOLD`: answerable questions kept, unanswerable refused,
  and the threshold that would be best on this set;
- latency: index build (chunk + embed all chunks), query embedding, FAISS search, extractive answer;
- with `--llm N`: the first N answerable questions answered by the example assistant's model (the
  embedded one unless config.yml names another), streamed: time to the first sentence (when a
  voice call starts speaking) and to the whole answer, with `--llm-timeout` instead of the
  model's own timeout so that slow answers are measured rather than cut off.
Writes JSON to benchmarks/results/knowledge_retrieval.json.

    .venv/bin/python benchmarks/knowledge_retrieval.py [--repeat 3] [--llm 10 --llm-timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from voicecalm.knowledge import DEFAULT_THRESHOLD, ExtractiveAnswerer, KnowledgeIndex
from voicecalm.knowledge.answer import LlmAnswerer
from voicecalm.knowledge.responder import ANSWER_MAX_TOKENS
from voicecalm.models.embedder import LocalEmbedder
from voicecalm.project import load_project
from voicecalm.understanding.factory import llm_settings_source
from voicecalm.understanding.llm import LlmSettings

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "knowledge_retrieval.json"

CARD, FEES, INTL, HOURS, OVER, SAVE = (
    "card_security.md",
    "fees.md",
    "international_transfers.md",
    "opening_hours.md",
    "overdraft.md",
    "savings_and_interest.md",
)

ANSWERABLE: list[tuple[str, tuple[str, ...]]] = [
    ("I think someone stole my wallet with my bank card in it, what do I do?", (CARD,)),
    ("Can I undo a card block if I find my card again?", (CARD,)),
    ("Am I responsible for purchases a thief made with my debit card?", (CARD,)),
    ("How long until a new card arrives in the mail?", (CARD, FEES)),
    ("Will my replacement card keep the same PIN?", (CARD,)),
    ("Someone phoned asking for my PIN, is that really the bank?", (CARD,)),
    ("What happens if I get my phone banking code wrong a few times?", (CARD,)),
    ("Can I switch off contactless payments on my card?", (CARD,)),
    ("A shop charged me the wrong amount and won't fix it, how do I contest it?", (CARD,)),
    ("How much is the monthly charge on a regular checking account?", (FEES,)),
    ("Do I pay anything to take cash out of another bank's machine?", (FEES,)),
    ("What does it cost to stop a cheque?", (FEES,)),
    ("Is there a charge for getting my statements on paper?", (FEES,)),
    ("How much money can I send to my saved payees in one day?", (FEES,)),
    ("Can I add someone new to pay over the phone?", (FEES,)),
    ("I was charged a fee I don't think I owe, what can I do?", (FEES,)),
    ("How much is a same-day wire within the US?", (FEES,)),
    ("What does it cost to wire money to another country?", (INTL,)),
    ("What details do I need to send money to a bank in Germany?", (INTL,)),
    ("How long does a payment abroad take to get there?", (INTL,)),
    ("What is your SWIFT code so my employer overseas can pay me?", (INTL,)),
    ("I made a mistake on a wire I just sent, can I call it back?", (INTL,)),
    ("Which exchange rate do you use when I send foreign payments?", (INTL,)),
    ("Can the virtual assistant send an international wire for me?", (INTL,)),
    ("Are your call centre staff available on Sundays?", (HOURS,)),
    ("When is the Riverside location open?", (HOURS,)),
    ("Which branch has safe deposit boxes?", (HOURS,)),
    ("What number do I ring when I'm overseas?", (HOURS,)),
    ("If I deposit a check with my phone in the evening, when can I use the money?", (HOURS,)),
    ("Is the Lakewood branch open on Saturdays?", (HOURS,)),
    ("How big an overdraft can I get on my checking account?", (OVER,)),
    ("If I go just slightly below zero, will I be charged?", (OVER, FEES)),
    ("Can I refuse overdraft coverage for card purchases?", (OVER,)),
    ("Do you charge interest while I'm overdrawn?", (OVER,)),
    ("I can't get my account out of the red, is there any help?", (OVER,)),
    ("Can my savings top up my checking automatically when it runs short?", (OVER,)),
    ("What rate does the high yield savings account pay?", (SAVE,)),
    ("How often is interest paid into my savings?", (SAVE,)),
    ("Is there a penalty for taking money out of a CD early?", (SAVE,)),
    ("Will I get a tax form for the interest I earned?", (SAVE,)),
    ("How many withdrawals can I make from savings each month without paying?", (SAVE,)),
    ("Is my money insured by the government?", (SAVE,)),
]

UNANSWERABLE: list[str] = [
    "What's the weather going to be like tomorrow?",
    "Can you recommend a good pizza place nearby?",
    "Do you offer car loans and what are the rates?",
    "Can I buy bitcoin through my account?",
    "How do I open a business account for my company?",
    "Who won the football game last night?",
    "What is the capital of Australia?",
    "How do I change my last name on my account after getting married?",
    "Can you help me write a poem about the sea?",
    "What are your mortgage interest rates?",
    "How do I invest in index funds with you?",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def best_threshold(answerable: list[float], unanswerable: list[float]) -> tuple[float, float]:
    """The threshold (on a 0.01 grid) with the best accuracy over all questions, and that accuracy;
    ties go to the middle of the best range."""
    grid = [round(t, 2) for t in np.arange(0.10, 0.80, 0.01)]
    scored = [(sum(s >= t for s in answerable) + sum(s < t for s in unanswerable), t) for t in grid]
    top = max(score for score, _ in scored)
    best = [t for score, t in scored if score == top]
    return best[len(best) // 2], top / (len(answerable) + len(unanswerable))


async def llm_answers(index: KnowledgeIndex, embedder: LocalEmbedder, count: int, timeout: float) -> dict:
    project = load_project(REPOSITORY)
    source = llm_settings_source(project, max_tokens=ANSWER_MAX_TOKENS, temperature=0.0)
    if source is None:
        raise SystemExit("the example assistant has no model for document answers")

    async def settings() -> LlmSettings:
        return replace(await source(), timeout=timeout)

    answerer = LlmAnswerer(settings, ExtractiveAnswerer(embedder))
    await settings()  # starts the model (and assembles it on first use); not counted
    rows = []
    for question, _ in ANSWERABLE[:count]:
        passages = await index.search(question, 3)
        begin = time.perf_counter()
        first: list[float] = []

        def on_part(_: object) -> None:
            if not first:
                first.append(time.perf_counter() - begin)

        answer = await answerer.answer(question, passages, on_part=on_part)
        total = time.perf_counter() - begin
        rows.append({"question": question, "method": answer.method, "answer": answer.text,
                     "first_sentence_s": round(first[0], 3) if first else None, "total_s": round(total, 3)})
    firsts = [r["first_sentence_s"] for r in rows if r["method"] == "llm" and r["first_sentence_s"] is not None]
    totals = [r["total_s"] for r in rows if r["method"] == "llm"]
    return {
        "model": (await settings()).model,
        "questions": len(rows),
        "answered_by_model": len(totals),
        "no_answer": sum(r["answer"] is None for r in rows),
        "first_sentence_s": {"p50": round(percentile(firsts, 50), 3), "p90": round(percentile(firsts, 90), 3)} if firsts else None,
        "whole_answer_s": {"p50": round(percentile(totals, 50), 3), "p90": round(percentile(totals, 90), 3)} if totals else None,
        "load_average": os.getloadavg()[0],
        "answers": rows,
    }


async def main(repeat: int, llm: int, llm_timeout: float) -> dict:
    embedder = LocalEmbedder.shared()
    begin = time.perf_counter()
    await asyncio.to_thread(embedder.load)
    load_s = time.perf_counter() - begin

    with tempfile.TemporaryDirectory() as cache:
        begin = time.perf_counter()
        index = await KnowledgeIndex.load_or_build(REPOSITORY, embedder, cache_dir=Path(cache))
        build_s = time.perf_counter() - begin
        begin = time.perf_counter()
        cached = await KnowledgeIndex.load_or_build(REPOSITORY, embedder, cache_dir=Path(cache))
        cached_s = time.perf_counter() - begin
        assert not cached.rebuilt

    answerer = ExtractiveAnswerer(embedder)
    questions = [q for q, _ in ANSWERABLE] + UNANSWERABLE
    embed_ms: list[float] = []
    search_ms: list[float] = []
    answer_ms: list[float] = []
    rows = []
    for question in questions:
        for _ in range(repeat):
            begin = time.perf_counter()
            vector = (await embedder.embed([question]))[0]
            embed_ms.append((time.perf_counter() - begin) * 1000)
            begin = time.perf_counter()
            passages = index.search_vector(vector, k=3)
            search_ms.append((time.perf_counter() - begin) * 1000)
        begin = time.perf_counter()
        answer = await answerer.answer(question, passages)
        answer_ms.append((time.perf_counter() - begin) * 1000)
        rows.append((question, passages, answer))

    results = []
    hit1 = hit3 = 0
    for (question, passages, answer), labels in zip(rows, [labels for _, labels in ANSWERABLE] + [()] * len(UNANSWERABLE)):
        sources = [p.source for p in passages]
        entry = {
            "question": question,
            "expected": list(labels),
            "top3": [{"source": p.source, "heading": p.heading, "score": round(p.score, 4)} for p in passages],
            "answer": answer.text,
        }
        if labels:
            entry["hit@1"] = sources[:1] != [] and sources[0] in labels
            entry["hit@3"] = any(s in labels for s in sources[:3])
            hit1 += entry["hit@1"]
            hit3 += entry["hit@3"]
        results.append(entry)

    answerable_scores = [r["top3"][0]["score"] for r in results[: len(ANSWERABLE)]]
    unanswerable_scores = [r["top3"][0]["score"] for r in results[len(ANSWERABLE) :]]
    kept = sum(s >= DEFAULT_THRESHOLD for s in answerable_scores)
    refused = sum(s < DEFAULT_THRESHOLD for s in unanswerable_scores)
    best, best_accuracy = best_threshold(answerable_scores, unanswerable_scores)
    summary = {
        "embedder": embedder.name,
        "documents": len(index.sources),
        "chunks": len(index),
        "answerable_questions": len(ANSWERABLE),
        "unanswerable_questions": len(UNANSWERABLE),
        "hit@1": round(hit1 / len(ANSWERABLE), 4),
        "hit@3": round(hit3 / len(ANSWERABLE), 4),
        "threshold": DEFAULT_THRESHOLD,
        "answerable_kept": round(kept / len(ANSWERABLE), 4),
        "no_answer_accuracy": round(refused / len(UNANSWERABLE), 4),
        "overall_gate_accuracy": round((kept + refused) / len(questions), 4),
        "best_threshold_on_this_set": best,
        "best_gate_accuracy": round(best_accuracy, 4),
        "top1_score_answerable": {"min": min(answerable_scores), "median": statistics.median(answerable_scores)},
        "top1_score_unanswerable": {"max": max(unanswerable_scores), "median": statistics.median(unanswerable_scores)},
        "model_load_s": round(load_s, 3),
        "index_build_s": round(build_s, 3),
        "index_from_cache_s": round(cached_s, 3),
        "query_embed_ms": {"p50": round(percentile(embed_ms, 50), 2), "p95": round(percentile(embed_ms, 95), 2)},
        "faiss_search_ms": {"p50": round(percentile(search_ms, 50), 3), "p95": round(percentile(search_ms, 95), 3)},
        "extractive_answer_ms": {"p50": round(percentile(answer_ms, 50), 2), "p95": round(percentile(answer_ms, 95), 2)},
    }
    data = {"summary": summary, "questions": results}
    if llm:
        data["llm_answers"] = await llm_answers(index, embedder, llm, llm_timeout)
    return data


def report(data: dict) -> None:
    s = data["summary"]
    print(f"{s['embedder']}: {s['chunks']} chunks from {s['documents']} documents")
    for r in data["questions"]:
        if r["expected"] and not r["hit@1"]:
            print(f"  miss@1: {r['question']!r} -> {r['top3'][0]['source']} ({r['top3'][0]['score']}), expected {r['expected']}")
    print(f"hit@1 {s['hit@1']:.3f}   hit@3 {s['hit@3']:.3f}   ({s['answerable_questions']} answerable questions)")
    print(
        f"threshold {s['threshold']}: answerable kept {s['answerable_kept']:.3f}, unanswerable refused "
        f"{s['no_answer_accuracy']:.3f} ({s['unanswerable_questions']} questions); best on this set {s['best_threshold_on_this_set']} "
        f"({s['best_gate_accuracy']:.3f})"
    )
    print(f"top-1 score: answerable min {s['top1_score_answerable']['min']:.3f} median {s['top1_score_answerable']['median']:.3f}; "
          f"unanswerable max {s['top1_score_unanswerable']['max']:.3f} median {s['top1_score_unanswerable']['median']:.3f}")
    print(
        f"model load {s['model_load_s']} s, index build {s['index_build_s']} s, from cache {s['index_from_cache_s']} s; "
        f"query embed p50 {s['query_embed_ms']['p50']} ms p95 {s['query_embed_ms']['p95']} ms; "
        f"FAISS search p50 {s['faiss_search_ms']['p50']} ms; extractive answer p50 {s['extractive_answer_ms']['p50']} ms"
    )
    if (llm := data.get("llm_answers")) is not None:
        print(
            f"LLM answers ({llm['model']}, load {llm['load_average']:.1f}): {llm['answered_by_model']}/{llm['questions']} by the model "
            f"({llm['no_answer']} said there is no answer); first sentence {llm['first_sentence_s']}; whole answer {llm['whole_answer_s']}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="query embeddings timed per question")
    parser.add_argument("--verbose", action="store_true", help="print every question's answer")
    parser.add_argument("--llm", type=int, default=0, help="answer this many questions with the assistant's model")
    parser.add_argument("--llm-timeout", type=float, default=60.0, help="seconds the model may take to start answering")
    args = parser.parse_args()
    data = asyncio.run(main(args.repeat, args.llm, args.llm_timeout))
    report(data)
    if args.verbose:
        for r in data["questions"]:
            print(f"- {r['question']}\n  [{r['top3'][0]['source']} {r['top3'][0]['score']}] {r['answer']}")
        for r in data.get("llm_answers", {}).get("answers", []):
            print(f"- {r['question']}\n  [{r['method']} {r['first_sentence_s']} / {r['total_s']} s] {r['answer']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(REPOSITORY)}")
