"""The per-turn GBNF grammar is valid for llama.cpp and names exactly what may be written."""

from __future__ import annotations

from pathlib import Path

from llama_cpp import LlamaGrammar

from voicecalm.project import load_project
from voicecalm.understanding.grammar import command_grammar

REPOSITORY = Path(__file__).parents[2]


def test_grammar_for_the_example_assistant_is_valid_gbnf() -> None:
    project = load_project(REPOSITORY)
    flows = [flow for flow in project.user_flows if flow.guard is not False]
    grammar = command_grammar(flows, [], project, offtopic=True, handoff=True)
    LlamaGrammar.from_string(grammar, verbose=False)  # raises on a grammar llama.cpp rejects
    assert '"transfer_money"' in grammar and '"authenticate_user"' not in grammar.split("flow ::=")[1].split("\n")[0]
    assert '("checking" | "savings" | "null")' in grammar, "categorical values are spelled out"
    assert '"human handoff"' in grammar and '"offtopic reply"' in grammar


def test_grammar_without_offtopic_and_handoff() -> None:
    project = load_project(REPOSITORY)
    flows = [project.flows["find_branch"]]
    grammar = command_grammar(flows, [], project, offtopic=False, handoff=False)
    LlamaGrammar.from_string(grammar, verbose=False)
    assert "offtopic reply" not in grammar and "human handoff" not in grammar
    assert '"branch_city "' in grammar
